"""From files on disk to the desired model: loading (with source positions) and validation."""
