"""A cache of pure results for `plan` and `apply`: the validated manifest set, keyed by a digest of
every manifest file's bytes; each domain's parsed XML, keyed by a digest of the XML (and of the
volume sizes and autostart flag read with it). A hit is exactly what a fresh computation would
give, so a stale entry cannot exist: a changed input is a different key. Entries are also keyed by
the code that computed them (the package's files), and those not used in a run are dropped when
it is saved.

Where: ``$RECONCILER_CACHE_DIR``, else ``$XDG_CACHE_HOME/reconciler``, else
``~/.cache/reconciler``; ``RECONCILER_CACHE_DIR=`` (empty) turns it off. A missing, unreadable or
corrupt cache file is the same as an empty one; failing to write it is not an error.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections.abc import Hashable
from pathlib import Path

FILE = "plan-cache.pickle"
_PACKAGE = Path(__file__).resolve().parent


def default_dir() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    configured = os.environ.get("RECONCILER_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reconciler"


def code_digest() -> str:
    """Which code computed the entries: the name, size and mtime of each file of the package."""
    h = hashlib.blake2b(digest_size=16)
    for path in sorted(_PACKAGE.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            info = path.stat()
            h.update(f"{path.relative_to(_PACKAGE)}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


class Cache:
    """Tables of key -> value, loaded from and saved to one file."""

    def __init__(self, folder: Path | None) -> None:
        self.path = folder / FILE if folder else None
        self._code = code_digest() if folder else ""
        self._loaded: dict[str, dict[Hashable, object]] | None = None  # at the first get()
        self._new: dict[str, dict[Hashable, object]] = {}
        self._changed = False

    def _load(self) -> dict[str, dict[Hashable, object]]:
        if self.path is None:
            return {}
        try:
            with self.path.open("rb") as file:
                info = os.fstat(file.fileno())
                if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                    return {}  # unpickling runs code: only a file no one else could have written
                code, tables = pickle.load(file)
        except Exception:  # missing, unreadable, corrupt, from another version: start empty
            return {}
        return tables if code == self._code and isinstance(tables, dict) else {}

    @property
    def _old(self) -> dict[str, dict[Hashable, object]]:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def get(self, table: str, key: Hashable) -> object | None:
        if self.path is None:
            return None
        value = self._old.get(table, {}).get(key)
        if value is not None:
            self._new.setdefault(table, {})[key] = value
        return value

    def put(self, table: str, key: Hashable, value: object) -> None:
        if self.path is not None:
            self._new.setdefault(table, {})[key] = value
            self._changed = True

    def save(self) -> None:
        """Write the entries used in this run (when something changed), atomically."""
        if self.path is None:
            return
        used = sum(len(t) for t in self._new.values())
        if not self._changed and used == sum(len(t) for t in self._old.values()):
            return
        import tempfile

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, temporary = tempfile.mkstemp(dir=self.path.parent, prefix=".plan-cache-")
            try:
                with os.fdopen(fd, "wb") as file:
                    pickle.dump((self._code, self._new), file, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(temporary, self.path)
            except BaseException:
                os.unlink(temporary)
                raise
        except OSError:
            pass  # a read-only home, a full disk: the next run computes again


def digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()
