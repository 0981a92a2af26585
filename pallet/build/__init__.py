"""The image builder: a pure Dockerfile front end (parsing, variable substitution,
.dockerignore matching) kept apart from the executor that runs it against the engine, so the
language can be tested without root, images or a daemon."""
