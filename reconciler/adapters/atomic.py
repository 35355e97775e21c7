"""Files replaced whole: readers see the old file or the new one, never a part."""

from __future__ import annotations

import os
from pathlib import Path


def write(path: Path, data: bytes, *, sync: bool = False, keep_existing: bool = False) -> None:
    """Write ``data`` to a temporary file (mode 0600) beside ``path``, then move it into place.
    ``sync``: on disk before it replaces the old file. ``keep_existing``: linked instead of
    renamed, so a file already at ``path`` stays and FileExistsError is raised."""
    import tempfile  # a slow import, and most runs write nothing

    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            if sync:
                file.flush()
                os.fsync(file.fileno())
        if keep_existing:
            os.link(temporary, path)
        else:
            os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)  # gone already after a rename
