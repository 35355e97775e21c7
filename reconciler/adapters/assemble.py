"""The domains as read, assembled into an ``Observation``, and the networks and pools as read,
into their live models, each with the parse cache: the part of reading a host that needs no
libvirt, shared by the libvirt adapter (``libvirt.inventory``), the snapshot host
(``adapters.snapshot``) and ``pipeline.read_state``, so that a plan from a snapshot is the plan
the host would give: the same volume sizes asked for, the same digests of what was read."""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TypeVar

from reconciler.adapters import cache
from reconciler.adapters.cache import Cache
from reconciler.core import observe
from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.network import LiveNetwork
from reconciler.core.model.pool import LivePool
from reconciler.core.model.vm import LiveVM, volume_name
from reconciler.core.observe import (
    DomainRefs,
    DomainTrees,
    Observation,
    RawDomain,
    RawNetwork,
    RawPool,
    VolumeKey,
)


class Fetched:
    """One domain as read, and what the first pass needs from its XML (its mark and the volumes
    its disks name), parsed or from the cache.

    The cache keeps, by a digest of the XML: those ``DomainRefs``, and the LiveVM last built
    from it with the key of what else went into it (``RawDomain.facts()``, the volume sizes)."""

    def __init__(self, raw: RawDomain, digest: bytes, refs: DomainRefs | None,
                 built: tuple[Hashable, LiveVM, str] | None = None) -> None:
        self.raw, self.digest, self.built = raw, digest, built
        self.seen = ""  # a digest of what was read (set by live_vm)
        self.trees: DomainTrees | None = None
        self.refs = refs if refs is not None else observe.domain_refs(self.parse())

    @classmethod
    def of(cls, raw: RawDomain, memo: Cache | None) -> Fetched:
        key = (cache.digest(raw.inactive_xml.encode(), (raw.live_xml or "").encode())
               if memo else b"")
        entry = memo.get("domain", key) if memo else None
        if isinstance(entry, tuple) and len(entry) == 2 and isinstance(entry[0], DomainRefs):
            return cls(raw, key, *entry)
        item = cls(raw, key, None)
        if memo:
            memo.put("domain", key, (item.refs, None))
        return item

    def parse(self) -> DomainTrees:
        if self.trees is None:
            self.trees = observe.parse_domain(self.raw)
        return self.trees

    def live_vm(self, sizes: Mapping[VolumeKey, int], memo: Cache | None) -> LiveVM:
        # Everything else the LiveVM holds comes from the XML.
        key = (self.raw.facts(), tuple(sizes.get(k) for k in self.refs.volumes))
        if self.built is not None and self.built[0] == key:
            self.seen = self.built[2]  # computed with the model, kept with it
            return self.built[1]
        xml = self.digest or cache.digest(self.raw.inactive_xml.encode(),
                                          (self.raw.live_xml or "").encode())
        raw = self.raw  # the state's reason is left out: a pause and resume changes no plan
        read = (raw.id, raw.state, raw.persistent, raw.managed_save, raw.autostart, key[1])
        self.seen = cache.digest(xml, repr(read).encode()).hex()
        vm = observe.live_vm(self.raw, sizes, trees=self.parse(), mark=self.refs.mark)
        if memo:
            memo.put("domain", self.digest, (self.refs, (key, vm, self.seen)))
        return vm




def known_sizes(vm: str, applied: Mapping[str, object],
                 expected: Mapping[VolumeKey, int]) -> dict[VolumeKey, int]:
    """The volumes of a stopped managed domain whose size needs no reading: the size last
    applied (recorded in its metadata) is the one the manifest asks for."""
    out: dict[VolumeKey, int] = {}
    disks = applied.get("disks")
    for disk in disks if isinstance(disks, list) else []:
        if not isinstance(disk, dict):
            continue
        key = (str(disk.get("pool")), volume_name(vm, str(disk.get("name"))))
        size = disk.get("size")
        if isinstance(size, int) and expected.get(key) == size:
            out[key] = size
    return out


def sizes_wanted(item: Fetched, expected: Mapping[VolumeKey, int] | None,
                 ) -> list[tuple[VolumeKey, int | None]]:
    """The volumes whose capacity (bytes) a domain's model needs, each with its size when it
    needs no reading (None: read it). That is every volume of a managed domain, and an
    unmanaged one's named like its disks would be (an adoption compares them with the
    manifest). A stopped managed domain's volume whose last applied size is ``expected`` (the
    manifest's) keeps it; a seed's size is never diffed (0) when ``expected`` is given."""
    raw, mark = item.raw, item.refs.mark
    own = "" if mark else f"{raw.name}-"
    seed = seed_volume(raw.name)
    known = (known_sizes(raw.name, mark.applied, expected)
             if mark and raw.live_xml is None and expected else {})
    out: list[tuple[VolumeKey, int | None]] = []
    for key in item.refs.volumes:
        if not key[1].startswith(own):
            continue
        if key in known:
            out.append((key, known[key]))
        elif expected is not None and key[1] == seed and key in item.refs.cdroms:
            out.append((key, 0))  # a seed: only its existence is diffed
        else:
            out.append((key, None))
    return out


def observation(parsed: Iterable[Fetched], sizes: Mapping[VolumeKey, int],
                memo: Cache | None) -> Observation:
    """The live models of the domains read (in the order read), what was read of each, and
    who uses which volume and file. ``sizes``: capacity in bytes by (pool, volume)."""
    parsed = list(parsed)
    vms = tuple(item.live_vm(sizes, memo) for item in parsed)
    users: dict[VolumeKey, list[str]] = {}
    file_users: dict[str, list[str]] = {}
    for item in parsed:
        for key in item.refs.volumes:
            users.setdefault(key, []).append(item.raw.name)
        for path in item.refs.files:
            file_users.setdefault(path, []).append(item.raw.name)
    return Observation(vms, {item.raw.name: item.seen for item in parsed},
                       {k: tuple(v) for k, v in users.items()},
                       {k: tuple(v) for k, v in file_users.items()})


def live_networks(raws: Iterable[RawNetwork], memo: Cache | None) -> tuple[LiveNetwork, ...]:
    """The live model of each network (``observe.live_network``); with ``memo``, XML read
    before is not parsed again (see ``_parsed``). Its ports are not part of the key: libvirt
    gives a port a new UUID whenever a guest connects."""
    return tuple(observe.live_network(raw, _parsed(
        memo, ("network", raw.xml, raw.live_xml, raw.autostart), raw, observe.network_xml))
        for raw in raws)


def live_pools(raws: Iterable[RawPool], memo: Cache | None) -> tuple[LivePool, ...]:
    """The live model of each storage pool (``observe.live_pool``); with ``memo``, XML read
    before is not parsed again (see ``_parsed``). Its sizes are not part of the key: a pool's
    XML carries its capacity, allocation and free space, which change whenever a guest writes
    to a thin volume, and ``observe.pool_xml`` reads none of them."""
    return tuple(observe.live_pool(raw, _parsed(
        memo, ("pool", _SIZES.sub("", raw.xml), raw.autostart) if memo else (), raw,
        observe.pool_xml)) for raw in raws)


# A pool's size elements (``<capacity unit='bytes'>1024</capacity>``): an XML text node holds no
# "<", so this matches those elements only, never text inside another one.
_SIZES = re.compile(r"<(capacity|allocation|available)\b[^>]*>[^<]*</\1>")


_R = TypeVar("_R")
_P = TypeVar("_P")


def _parsed(memo: Cache | None, read: tuple[object, ...], raw: _R,
            parse: Callable[[_R], _P]) -> _P:
    """``parse(raw)``, which depends only on ``read`` (the XML and the flags it is read with);
    with ``memo``, kept in the cache by a digest of ``read``: the steady state parses no XML
    (and does not even load the parser)."""
    if not memo:
        return parse(raw)
    key = ("xml", cache.digest(repr(read).encode()))
    hit = memo.get("domain", key)
    if isinstance(hit, tuple) and len(hit) == 1:
        return hit[0]  # type: ignore[no-any-return]
    value = parse(raw)
    memo.put("domain", key, (value,))
    return value
