"""Image metadata in SQLite (WAL): images, their layers, tags and repo digests.

The blobs (configs, compressed layers) live in the content store and the unpacked
layers in the layer store; this database says which image is made of what and which
names point at it. One transaction per change, so a crash leaves the old state or the
new one.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id TEXT PRIMARY KEY,           -- sha256:<hex> of the config blob
    created TEXT NOT NULL,
    size INTEGER NOT NULL,         -- bytes of the uncompressed layers
    top_chain TEXT NOT NULL,       -- chain id of the top layer ("" for no layers)
    last_tag_time TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS image_layers (
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    chain_id TEXT NOT NULL,
    diff_id TEXT NOT NULL,
    blob TEXT NOT NULL,            -- the layer as distributed (digest), "" if not kept
    media_type TEXT NOT NULL,
    blob_size INTEGER NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE INDEX IF NOT EXISTS image_layers_chain ON image_layers(chain_id);
CREATE TABLE IF NOT EXISTS tags (
    name TEXT PRIMARY KEY,         -- docker.io/library/busybox:latest
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
-- What a build made: each step's image names the image it was built on (the image
-- inspect shows as Parent) and the step's cache key, which the next build looks up.
CREATE TABLE IF NOT EXISTS image_parents (
    image_id TEXT PRIMARY KEY REFERENCES images(id) ON DELETE CASCADE,
    parent TEXT NOT NULL,
    cache_key TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS image_parents_parent ON image_parents(parent, cache_key);
CREATE TABLE IF NOT EXISTS repo_digests (
    name TEXT PRIMARY KEY,         -- docker.io/library/busybox@sha256:...
    image_id TEXT NOT NULL REFERENCES images(id) ON DELETE CASCADE
);
"""


@dataclass(frozen=True)
class ImageRow:
    id: str
    created: str
    size: int
    top_chain: str
    last_tag_time: str


@dataclass(frozen=True)
class LayerRow:
    chain_id: str
    diff_id: str
    blob: str
    media_type: str
    blob_size: int


class ImageDB:
    def __init__(self, path: str) -> None:
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.executescript(SCHEMA)

    @contextmanager
    def tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def _q(self, sql: str, *args: object) -> list[tuple[object, ...]]:
        with self._lock:
            return list(self._conn.execute(sql, args))

    def add_image(self, row: ImageRow, layers: list[LayerRow]) -> None:
        with self.tx() as c:
            c.execute("INSERT OR IGNORE INTO images VALUES (?,?,?,?,?)",
                      (row.id, row.created, row.size, row.top_chain, row.last_tag_time))
            for i, layer in enumerate(layers):
                c.execute("INSERT OR REPLACE INTO image_layers VALUES (?,?,?,?,?,?,?)",
                          (row.id, i, layer.chain_id, layer.diff_id, layer.blob,
                           layer.media_type, layer.blob_size))

    def image(self, image_id: str) -> ImageRow | None:
        rows = self._q("SELECT id, created, size, top_chain, last_tag_time FROM images "
                       "WHERE id = ?", image_id)
        return ImageRow(*rows[0]) if rows else None  # type: ignore[arg-type]

    def images(self) -> list[ImageRow]:
        return [ImageRow(*r) for r in self._q(  # type: ignore[arg-type]
            "SELECT id, created, size, top_chain, last_tag_time FROM images ORDER BY created")]

    def ids_with_prefix(self, prefix: str) -> list[str]:
        return [str(r[0]) for r in self._q("SELECT id FROM images WHERE id LIKE ?",
                                           prefix + "%")]

    def layers(self, image_id: str) -> list[LayerRow]:
        return [LayerRow(*r) for r in self._q(  # type: ignore[arg-type]
            "SELECT chain_id, diff_id, blob, media_type, blob_size FROM image_layers "
            "WHERE image_id = ? ORDER BY idx", image_id)]

    def tag(self, name: str, image_id: str, when: str) -> str | None:
        """Point ``name`` at ``image_id``; returns the image it pointed at before."""
        with self.tx() as c:
            old = c.execute("SELECT image_id FROM tags WHERE name = ?", (name,)).fetchone()
            c.execute("INSERT OR REPLACE INTO tags VALUES (?, ?)", (name, image_id))
            c.execute("UPDATE images SET last_tag_time = ? WHERE id = ?", (when, image_id))
        return str(old[0]) if old and old[0] != image_id else None

    def add_repo_digest(self, name: str, image_id: str) -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO repo_digests VALUES (?, ?)", (name, image_id))

    def untag(self, name: str) -> bool:
        with self.tx() as c:
            return c.execute("DELETE FROM tags WHERE name = ?", (name,)).rowcount > 0

    def remove_repo_digest(self, name: str) -> bool:
        with self.tx() as c:
            return c.execute("DELETE FROM repo_digests WHERE name = ?", (name,)).rowcount > 0

    def tag_target(self, name: str) -> str | None:
        rows = self._q("SELECT image_id FROM tags WHERE name = ?", name)
        return str(rows[0][0]) if rows else None

    def digest_target(self, name: str) -> str | None:
        rows = self._q("SELECT image_id FROM repo_digests WHERE name = ?", name)
        return str(rows[0][0]) if rows else None

    def tags_of(self, image_id: str) -> list[str]:
        return [str(r[0]) for r in self._q("SELECT name FROM tags WHERE image_id = ? "
                                           "ORDER BY name", image_id)]

    def digests_of(self, image_id: str) -> list[str]:
        return [str(r[0]) for r in self._q("SELECT name FROM repo_digests WHERE image_id = ? "
                                           "ORDER BY name", image_id)]

    def remove_image(self, image_id: str) -> list[str]:
        """Delete the image's rows; returns the chain ids no other image uses now."""
        with self.tx() as c:
            chains = [r[0] for r in c.execute(
                "SELECT chain_id FROM image_layers WHERE image_id = ?", (image_id,))]
            c.execute("DELETE FROM images WHERE id = ?", (image_id,))
            return [ch for ch in chains if not c.execute(
                "SELECT 1 FROM image_layers WHERE chain_id = ? LIMIT 1", (ch,)).fetchone()]

    def set_parent(self, image_id: str, parent: str, cache_key: str = "") -> None:
        with self.tx() as c:
            c.execute("INSERT OR REPLACE INTO image_parents VALUES (?, ?, ?)",
                      (image_id, parent, cache_key))

    def parent_of(self, image_id: str) -> str:
        rows = self._q("SELECT parent FROM image_parents WHERE image_id = ?", image_id)
        return str(rows[0][0]) if rows else ""

    def children_of(self, image_id: str) -> list[str]:
        return [str(r[0]) for r in self._q(
            "SELECT image_id FROM image_parents WHERE parent = ? ORDER BY image_id", image_id)]

    def parents(self) -> set[str]:
        """Every image some other image was built on."""
        return {str(r[0]) for r in self._q("SELECT DISTINCT parent FROM image_parents")}

    def steps(self) -> list[str]:
        """The images builds made as cached steps, newest first."""
        return [str(r[0]) for r in self._q(
            "SELECT p.image_id FROM image_parents p JOIN images i ON i.id = p.image_id "
            "WHERE p.cache_key != '' ORDER BY i.created DESC")]

    def forget_cache_key(self, image_id: str) -> None:
        with self.tx() as c:
            c.execute("UPDATE image_parents SET cache_key = '' WHERE image_id = ?",
                      (image_id,))

    def cached(self, parent: str, cache_key: str) -> str | None:
        """The image a build step with ``cache_key`` made on ``parent`` before."""
        rows = self._q("SELECT image_id FROM image_parents WHERE parent = ? AND cache_key = ? "
                       "LIMIT 1", parent, cache_key)
        return str(rows[0][0]) if rows else None

    def chains_in_use(self) -> set[str]:
        return {str(r[0]) for r in self._q("SELECT DISTINCT chain_id FROM image_layers")}

    def blobs_in_use(self) -> set[str]:
        used = {str(r[0]) for r in self._q("SELECT id FROM images")}
        used |= {str(r[0]) for r in self._q("SELECT blob FROM image_layers WHERE blob != ''")}
        return used

    def close(self) -> None:
        self._conn.close()
