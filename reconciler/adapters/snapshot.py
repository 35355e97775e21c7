"""Host snapshots: everything a plan reads from a host, in one file, for plans in CI.

``reconciler snapshot`` writes one (``libvirt.snapshot.take``); ``reconciler plan --snapshot
FILE`` plans against it through ``SnapshotHost``, with no libvirt connection and without
libvirt-python installed (this module imports no libvirt). The file holds the raw reads the
libvirt adapter makes (domain XML and state, networks, pools, volumes, host facts), and the plan
is computed from them by the same code as on the host (``adapters.assemble``), so it is the
plan the host would give at the moment the snapshot was taken.

The format is JSON (gzip-compressed when the file name ends in ``.gz``)::

    {"apiVersion": "reconciler/v1", "kind": "HostSnapshot", "uri": ..., "hostname": ...,
     "taken": "2026-11-30T17:50:00Z", "reconciler": "<version>",
     "domains": [RawDomain fields], "networks": [RawNetwork fields], "pools": [RawPool fields],
     "volumes": [RawVolume fields: every volume of every active pool],
     "host": {"freeMemory": bytes | null, "interfaces": [names] | null, "maxVcpus": n | null,
              "routes": [[interface, CIDR]], "realPaths": {path: real path} | null}}
"""

from __future__ import annotations

import gzip
import io
import json
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.adapters.assemble import Fetched, observation, sizes_wanted
from reconciler.adapters.cache import Cache
from reconciler.core import observe
from reconciler.core.errors import PermanentError
from reconciler.core.model.host import Destination
from reconciler.core.model.vm import VolumeInfo
from reconciler.core.observe import (
    Observation,
    RawDomain,
    RawNetwork,
    RawPool,
    RawVolume,
    VolumeKey,
)
from reconciler.core.record import Record

API_VERSION, KIND = "reconciler/v1", "HostSnapshot"
MAX_BYTES = 1 << 30  # a snapshot larger than this (uncompressed) is refused: 1 GiB


@dataclass(frozen=True, eq=False, repr=False)
class HostFacts(Record):
    """What a plan with changes reads of the host besides its objects. ``free_memory`` in
    bytes; ``routes``: (interface, CIDR); ``real_paths``: path -> the path with its symbolic
    links resolved on the host (None: not known, the snapshot was taken remotely)."""

    free_memory: int | None = None
    interfaces: tuple[str, ...] | None = None
    max_vcpus: int | None = None
    routes: tuple[tuple[str, str], ...] = ()
    real_paths: Mapping[str, str] | None = None


@dataclass(frozen=True, eq=False, repr=False)
class Snapshot(Record):
    """One host as read at ``taken`` (UTC, ISO 8601), over ``uri``."""

    uri: str
    hostname: str
    taken: str
    version: str
    domains: tuple[RawDomain, ...]
    networks: tuple[RawNetwork, ...]
    pools: tuple[RawPool, ...]
    volumes: tuple[RawVolume, ...]
    host: HostFacts


def to_json(snap: Snapshot) -> dict[str, Any]:
    """The snapshot as JSON-ready data (see the module's docstring for the shape)."""
    host = snap.host
    return {
        "apiVersion": API_VERSION, "kind": KIND, "uri": snap.uri, "hostname": snap.hostname,
        "taken": snap.taken, "reconciler": snap.version,
        "domains": [d._asdict() for d in snap.domains],
        "networks": [n._asdict() for n in snap.networks],
        "pools": [p._asdict() for p in snap.pools],
        "volumes": [v._asdict() for v in snap.volumes],
        "host": {"freeMemory": host.free_memory,
                 "interfaces": list(host.interfaces) if host.interfaces is not None else None,
                 "maxVcpus": host.max_vcpus, "routes": [list(r) for r in host.routes],
                 "realPaths": dict(host.real_paths) if host.real_paths is not None else None},
    }


def write(snap: Snapshot, path: Path) -> None:
    """Write the snapshot to ``path`` (gzip when it ends in ``.gz``), through a temporary file
    renamed into place, so a reader never sees half a snapshot."""
    data = json.dumps(to_json(snap), separators=(",", ":")).encode()
    if path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read(path: Path) -> Snapshot:
    """Load a snapshot file. Raises PermanentError naming the file and what is wrong with it
    (missing, not a regular file, too large, not JSON, not a snapshot, a field of the wrong
    type)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO must not hang
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise PermanentError(f"{path}: not a regular file")
            data = f.read(MAX_BYTES + 1)
        if path.suffix == ".gz":
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as unzipped:
                data = unzipped.read(MAX_BYTES + 1)
    except (OSError, EOFError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PermanentError(f"{path}: cannot read the snapshot: {reason}") from exc
    if len(data) > MAX_BYTES:
        raise PermanentError(f"{path}: larger than {MAX_BYTES} bytes; not a snapshot")
    try:
        doc = json.loads(data)
    except ValueError as exc:
        raise PermanentError(f"{path}: not a snapshot (not JSON: {exc})") from exc
    try:
        return _parse(doc)
    except (KeyError, TypeError, ValueError) as exc:
        raise PermanentError(f"{path}: not a usable snapshot ({exc}); take it again with "
                             "`reconciler snapshot`") from exc


def _parse(doc: Any) -> Snapshot:
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ValueError(f"kind is not {KIND}")
    if doc.get("apiVersion") != API_VERSION:
        raise ValueError(f"apiVersion {doc.get('apiVersion')!r} is not {API_VERSION}")
    host = doc["host"]
    real = host.get("realPaths")
    return Snapshot(
        uri=_str(doc["uri"]), hostname=_str(doc.get("hostname", "")), taken=_str(doc["taken"]),
        version=_str(doc.get("reconciler", "")),
        domains=tuple(RawDomain(**_fields(RawDomain, d)) for d in doc["domains"]),
        networks=tuple(RawNetwork(**{**_fields(RawNetwork, n), "ports": _tuple(n.get("ports"))})
                       for n in doc["networks"]),
        pools=tuple(RawPool(**{**_fields(RawPool, p), "volumes": tuple(p.get("volumes", ()))})
                    for p in doc["pools"]),
        volumes=tuple(RawVolume(**_fields(RawVolume, v)) for v in doc["volumes"]),
        host=HostFacts(
            free_memory=_int(host.get("freeMemory")),
            interfaces=_tuple(host.get("interfaces")),
            max_vcpus=_int(host.get("maxVcpus")),
            routes=tuple((str(i), str(c)) for i, c in host.get("routes", [])),
            real_paths={str(k): str(v) for k, v in real.items()} if real is not None else None),
    )


def _fields(cls: type, data: Any) -> dict[str, Any]:
    """The fields of ``cls`` in ``data``, with their types checked (str, int, bool)."""
    if not isinstance(data, dict):
        raise TypeError(f"a {cls.__name__} entry is not a mapping")
    out = {}
    defaults: dict[str, object] = getattr(cls, "_field_defaults", {})
    for name in getattr(cls, "_fields", ()):  # a NamedTuple's (observe's raw values)
        if name not in data:
            if name not in defaults:
                raise KeyError(f"{cls.__name__}.{name}")
            continue
        value = data[name]
        # the annotation's text: "str", "int | None", "tuple[str, ...]" (a NamedTuple holds
        # it as a ForwardRef under `from __future__ import annotations`)
        hint = cls.__annotations__[name]
        declared = str(getattr(hint, "__forward_arg__", hint))
        if "tuple" in declared:
            ok = value is None or isinstance(value, list)
        else:
            kinds = [k for name, k in (("str", str), ("int", int), ("bool", bool))
                     if name in declared]
            ok = (value is None and "None" in declared) or isinstance(value, tuple(kinds))
        if not ok:
            raise TypeError(f"{cls.__name__}.{name} is {type(value).__name__}")
        out[name] = value
    return out


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{value!r} is not a string")
    return value


def _int(value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{value!r} is not a whole number")
    return value


def _tuple(value: Any) -> tuple[str, ...] | None:
    return None if value is None else tuple(str(v) for v in value)


class SnapshotHost:
    """A host as a snapshot recorded it: the read side of the libvirt adapter
    (``read_observed``, ``read_raw_pools``, ``read_raw_networks``, ``read_volumes`` and the host
    facts), with no connection. ``uri`` is the host's URI the snapshot was taken over,
    ``taken`` when, ``snapshot`` what it holds."""

    readonly = True

    def __init__(self, snap: Snapshot, path: Path) -> None:
        self.snapshot = snap
        self.uri = snap.uri  # the host's, as the plan names it
        self.taken: str | None = snap.taken
        self._capacity = {(v.pool, v.name): observe.volume_info(v).capacity
                          for v in snap.volumes}

    def close(self) -> None:
        """Nothing to close (the same call as on a connection)."""

    def read_observed(self, expected: Mapping[VolumeKey, int] | None = None,
                      memo: Cache | None = None) -> Observation:
        """Every domain of the snapshot, observed as ``Libvirt.read_observed`` would have at
        the moment it was taken (the same sizes asked for, the same digests)."""
        parsed = [Fetched.of(raw, memo) for raw in self.snapshot.domains]
        wanted: set[VolumeKey] = set()
        sizes: dict[VolumeKey, int] = {}
        for item in parsed:
            for key, size in sizes_wanted(item, expected):
                if key in wanted:
                    continue
                wanted.add(key)
                if key in self._capacity:  # the volume exists (its pool was active)
                    sizes[key] = self._capacity[key] if size is None else size
        return observation(parsed, sizes, memo)

    def read_raw_pools(self) -> tuple[RawPool, ...]:
        return self.snapshot.pools

    def read_raw_networks(self) -> tuple[RawNetwork, ...]:
        return self.snapshot.networks

    def read_volumes(self, pool: str) -> tuple[VolumeInfo, ...]:
        return tuple(observe.volume_info(v) for v in self.snapshot.volumes if v.pool == pool)

    def read_raw_volumes(self, pool: str) -> tuple[RawVolume, ...]:
        return tuple(v for v in self.snapshot.volumes if v.pool == pool)

    def hostname(self) -> str:
        return self.snapshot.hostname

    def host_uuid(self) -> str | None:
        return None  # not recorded: a plan from snapshots reads no other host over a URI

    def free_memory(self) -> int | None:
        return self.snapshot.host.free_memory

    def host_interfaces(self) -> tuple[str, ...] | None:
        return self.snapshot.host.interfaces

    def max_vcpus(self) -> int | None:
        return self.snapshot.host.max_vcpus

    def host_routes(self) -> tuple[tuple[str, str], ...]:
        return self.snapshot.host.routes

    def real_paths(self, paths: Iterable[str]) -> dict[str, str] | None:
        """The real paths the snapshot recorded; a path it did not record, below one it did,
        resolves through that one (a pool directory not made yet, below a storage root)."""
        known = self.snapshot.host.real_paths
        if known is None:
            return None
        bases = sorted(known, key=len, reverse=True)
        out = {}
        for path in paths:
            if path in known:
                out[path] = known[path]
                continue
            base = next((b for b in bases if path.startswith(b.rstrip("/") + "/")), None)
            out[path] = known[base].rstrip("/") + path[len(base.rstrip("/")):] if base else path
        return out


def destination_of(snap: Snapshot, host: str, uri: str, vms: Iterable[Any],
                   left: Iterable[str] = ()) -> Destination:
    """What a move of ``vms`` to ``host`` needs to know of it, as ``snap`` (that host's
    snapshot) recorded it, for a fleet plan made from snapshots (``left``: as
    ``peers.destination``'s). A snapshot cannot answer the CPU check (libvirt checks again
    when migrating)."""
    from lxml import etree

    from reconciler.core.moves import volumes as move_volumes
    from reconciler.core.xml.common import last_move, read_mark

    vms, left = tuple(vms), frozenset(left)
    names = {vm.name for vm in vms} | left
    wanted = {(pool, volume) for vm in vms for pool, volume, *_ in move_volumes(vm)}
    sources = [(s.get("pool"), s.get("volume"), s.get("file")) for dom in snap.domains
               for s in etree.fromstring(dom.inactive_xml.encode()).iterfind(
                   "devices/disk/source")]
    found = []
    for raw in snap.volumes:
        if (raw.pool, raw.name) in wanted:
            info = observe.volume_info(raw)
            used = any((p == raw.pool and v == raw.name) or (f and f == info.path)
                       for p, v, f in sources)
            found.append((raw.pool, raw.name, info.capacity, info.format or "raw", used))
    domains, uuids, moved = [], [], []
    for dom in snap.domains:
        if dom.name in names:
            root = etree.fromstring(dom.inactive_xml.encode())
            mark = read_mark(root)
            domains.append((dom.name, mark.instance if mark else ""))
            uuids.append((dom.name, dom.uuid))
            last = last_move(root) if dom.name in left and dom.persistent else None
            if last is not None:
                moved.append((dom.name, last[0], last[2], last[3]))
    return Destination(
        host, uri, free_memory=snap.host.free_memory,
        pools=tuple(sorted((p.name, p.available) for p in snap.pools if p.active)),
        volumes=frozenset((p.name, v) for p in snap.pools if p.active for v in p.volumes),
        domains=tuple(sorted(domains)), uuids=tuple(sorted(uuids)), moved=tuple(sorted(moved)),
        networks=frozenset(n.name for n in snap.networks if n.active),
        found=tuple(sorted(found)))
