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


def table_file(folder: Path, table: str) -> Path:
    return folder / f"plan-cache-{table}.pickle"


class Cache:
    """Tables of key -> value, each in its own file, loaded at its first use (a plan whose
    manifests are all unchanged never loads the per-file table)."""

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self._code = code_digest() if folder else ""
        self._old: dict[str, dict[Hashable, object]] = {}  # as loaded
        self._new: dict[str, dict[Hashable, object]] = {}  # used or computed in this run
        self._changed: set[str] = set()

    def _table(self, table: str) -> dict[Hashable, object]:
        if table not in self._old:
            self._old[table] = self._load(table)
            self._new[table] = {}
        return self._old[table]

    def _load(self, table: str) -> dict[Hashable, object]:
        assert self.folder is not None
        try:
            with table_file(self.folder, table).open("rb") as file:
                info = os.fstat(file.fileno())
                if info.st_uid != os.geteuid() or info.st_mode & 0o022:
                    return {}  # unpickling runs code: only a file no one else could have written
                code, entries = pickle.load(file)
        except Exception:  # missing, unreadable, corrupt, from another version: start empty
            return {}
        return entries if code == self._code and isinstance(entries, dict) else {}

    def get(self, table: str, key: Hashable) -> object | None:
        if self.folder is None:
            return None
        value = self._table(table).get(key)
        if value is not None:
            self._new[table][key] = value
        return value

    def put(self, table: str, key: Hashable, value: object) -> None:
        if self.folder is not None:
            self._table(table)
            self._new[table][key] = value
            self._changed.add(table)

    def save(self) -> None:
        """Write each table this run used, when it gained entries or some went unused: only
        the entries used in this run, atomically. A table not used is left as it is."""
        if self.folder is None:
            return
        for table, entries in self._new.items():
            if table not in self._changed and len(entries) == len(self._old[table]):
                continue
            import tempfile

            try:
                self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                fd, temporary = tempfile.mkstemp(dir=self.folder, prefix=".plan-cache-")
                try:
                    with os.fdopen(fd, "wb") as file:
                        pickle.dump((self._code, entries), file,
                                    protocol=pickle.HIGHEST_PROTOCOL)
                    os.replace(temporary, table_file(self.folder, table))
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
