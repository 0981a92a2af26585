"""Services behind the API: containers, images, networks, volumes, events — and the
host facts /version and /info report. Metadata in SQLite, per-object locks."""
