"""A cache of pure results for `plan` and `apply`: each manifest file's checked documents, keyed by
a digest of its bytes (and the whole set's result when no file changed); each domain's parsed
XML, keyed by a digest of the XML (with the volume sizes, autostart flag and state read with it),
and each network's and pool's, keyed by a digest of the XML (a pool's without its sizes) and
flags (``assemble.live_networks``, ``live_pools``);
and a plan with nothing to do, keyed by digests of both sides (the steady state). A hit is
exactly what a fresh computation would give, so a stale entry cannot exist: a changed input is a
different key. Entries are also keyed by the code that computed them (the package's files). Each
table is one file, loaded at its first use and rewritten with only the entries that run used.

Where: ``$RECONCILER_CACHE_DIR``, else ``$XDG_CACHE_HOME/reconciler``, else
``~/.cache/reconciler``; ``RECONCILER_CACHE_DIR=`` (empty) turns it off.

Trust: unpickling runs code, so a cache file is loaded only when it carries a MAC made with a
random key kept outside the cache folder (``$XDG_STATE_HOME/reconciler/cache.key``, else
``~/.local/state/...``, mode 0600): a cache folder copied from elsewhere (a CI cache restore) or
written by another user is ignored. Neither the folder, the key nor a cache file is used through
a symbolic link or when another user owns it or may write it. Results holding cloud-init user
data are never written. A missing, foreign or corrupt file is the same as an empty one; failing
to write one is not an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import io
import os
import pickle
import stat
from collections.abc import Hashable, Iterator
from pathlib import Path

from reconciler.adapters import atomic

_PACKAGE = Path(__file__).resolve().parent
_MAGIC = b"reconciler-cache-2\n"
_MAC_SIZE = 32


def default_dir() -> Path | None:
    """The cache folder, or None when the cache is turned off."""
    configured = os.environ.get("RECONCILER_CACHE_DIR")
    if configured is not None:
        return Path(configured) if configured else None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "reconciler"


def key_file() -> Path:
    base = (os.environ.get("XDG_STATE_HOME")
            or os.path.join(os.path.expanduser("~"), ".local", "state"))
    return Path(base) / "reconciler" / "cache.key"


def table_file(folder: Path, table: str) -> Path:
    return folder / f"plan-cache-{table}.pickle"


def code_digest() -> str:
    """Which code computed the entries: the name, size and mtime of each file of the package."""
    h = hashlib.blake2b(digest_size=16)
    for name, info in sorted(_code_files(str(_PACKAGE), "")):
        h.update(f"{name}\0{info.st_size}\0{info.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _code_files(folder: str, prefix: str) -> Iterator[tuple[str, os.stat_result]]:
    """(path relative to the package, stat) of each ``.py`` and ``.json`` file below ``folder``
    (``os.scandir``: a third of ``Path.rglob``'s time, which each plan and apply pays)."""
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                if entry.name != "__pycache__":
                    yield from _code_files(entry.path, f"{prefix}{entry.name}/")
            elif entry.name.endswith((".py", ".json")):
                yield f"{prefix}{entry.name}", entry.stat()


def _private(info: os.stat_result) -> bool:
    """Owned by this user, and no one else may write it."""
    return info.st_uid == os.geteuid() and not info.st_mode & 0o022


def _private_folder(folder: Path) -> bool:
    """A real folder of this user's, not a link another user could point. Made if missing, but
    only inside a folder of this user's: root run with another user's HOME (sudo -E) must not
    leave root-owned folders in it."""
    try:
        if not folder.exists():
            ancestor = folder.parent
            while not ancestor.exists():
                ancestor = ancestor.parent
            if ancestor.stat().st_uid != os.geteuid():
                return False
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = os.lstat(folder)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and _private(info)


def _read_private(path: Path, *, secret: bool = False) -> bytes | None:
    """The file's bytes if this user owns it and no one else may write it (nor read it, for a
    ``secret``); never through a symbolic link."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(file.fileno())
        if not _private(info) or (secret and info.st_mode & 0o077):
            return None
        return file.read()


def _secret_key() -> bytes | None:
    """This user's cache key, made on first use; None if it cannot be trusted or made."""
    path = key_file()
    key = _read_private(path, secret=True)
    if key is not None:
        return key if len(key) == 32 else None
    if not _private_folder(path.parent):
        return None
    try:  # never seen half-written
        atomic.write(path, os.urandom(32), keep_existing=True)
    except FileExistsError:  # made meanwhile by another run
        pass
    except OSError:
        return None
    key = _read_private(path, secret=True)
    return key if key is not None and len(key) == 32 else None


def _mac(key: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(payload, key=key, digest_size=_MAC_SIZE).digest()


def pack(code: str, entries: dict[Hashable, object]) -> bytes:
    """A table's payload: the code that made it and its keys, then its entries (unpickled only
    when a key is found: a miss costs no more than the keys)."""
    return (pickle.dumps((code, tuple(entries)), protocol=pickle.HIGHEST_PROTOCOL)
            + pickle.dumps(entries, protocol=pickle.HIGHEST_PROTOCOL))


def unpack_keys(payload: bytes) -> tuple[str, tuple[Hashable, ...], int]:
    """The code and keys of a table's payload, and where its entries start."""
    stream = io.BytesIO(payload)
    code, keys = pickle.load(stream)
    return code, keys, stream.tell()


class Cache:
    """Tables of key -> value, each in its own file, loaded at its first use (a plan whose
    manifests are all unchanged never loads the per-file table)."""

    def __init__(self, folder: Path | None, *, memory: bool = False) -> None:
        """``folder``: where the tables are kept (None: nowhere). ``memory``: a cache held by a
        long-running process (the daemon) and never written; each ``save`` keeps what the last
        run used."""
        self._key = _secret_key() if folder is not None and _private_folder(folder) else None
        self.folder = folder if self._key is not None and not memory else None
        self.memory = memory
        self._code = code_digest() if self.folder else ""
        self._keys: dict[str, frozenset[Hashable]] = {}  # of each table as loaded
        self._packed: dict[str, bytes] = {}  # a table's entries not unpickled yet
        self._old: dict[str, dict[Hashable, object]] = {}  # as loaded
        self._new: dict[str, dict[Hashable, object]] = {}  # used or computed in this run
        self._changed: set[str] = set()

    def __bool__(self) -> bool:
        return self.folder is not None or self.memory

    def _table(self, table: str) -> frozenset[Hashable]:
        if table not in self._keys:
            self._keys[table] = self._load(table)
        self._new.setdefault(table, {})
        return self._keys[table]

    def _load(self, table: str) -> frozenset[Hashable]:
        """The table's keys; its entries wait in ``_packed``."""
        if self.folder is None or self._key is None:
            return frozenset()
        data = _read_private(table_file(self.folder, table))
        if data is None or not data.startswith(_MAGIC):
            return frozenset()
        mac, payload = data[len(_MAGIC):][:_MAC_SIZE], data[len(_MAGIC) + _MAC_SIZE:]
        if not hmac.compare_digest(mac, _mac(self._key, payload)):
            return frozenset()  # not written by this user's reconciler: never unpickled
        try:
            code, stored, start = unpack_keys(payload)
            keys = frozenset(stored)
        except Exception:  # from an older reconciler, or cut short
            return frozenset()
        if code != self._code:
            return frozenset()
        self._packed[table] = payload[start:]
        return keys

    def _entries(self, table: str) -> dict[Hashable, object]:
        if table not in self._old:
            try:
                entries = pickle.loads(self._packed.pop(table, b""))
            except Exception:  # cut short
                entries = {}
            self._old[table] = entries if isinstance(entries, dict) else {}
        return self._old[table]

    def get(self, table: str, key: Hashable) -> object | None:
        if not self or key not in self._table(table):
            return None
        value = self._entries(table).get(key)
        if value is not None:
            self._new[table][key] = value
        return value

    def put(self, table: str, key: Hashable, value: object) -> None:
        if self:
            self._table(table)
            self._new[table][key] = value
            self._changed.add(table)

    def save(self) -> None:
        """Write each table this run used, when it gained entries or some went unused: only
        the entries used in this run, atomically. A table not used is left as it is."""
        if self.memory:  # the next run starts from what this one used; tables it did not use
            self._old.update(self._new)  # stay as they are
            self._keys.update((table, frozenset(entries)) for table, entries in self._new.items())
            self._new = {}
            self._changed.clear()
            return
        if self.folder is None or self._key is None:
            return
        for table, entries in self._new.items():
            if table not in self._changed and len(entries) == len(self._keys[table]):
                continue
            payload = pack(self._code, entries)
            with contextlib.suppress(OSError):  # a read-only home, a full disk: computed again
                atomic.write(table_file(self.folder, table),
                             _MAGIC + _mac(self._key, payload) + payload)


def digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for part in parts:
        h.update(len(part).to_bytes(8, "little"))
        h.update(part)
    return h.digest()
