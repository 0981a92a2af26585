"""runtime-spec and image-spec types: parse and validate, no I/O."""
