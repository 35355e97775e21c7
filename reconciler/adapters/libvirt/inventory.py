"""Reading every domain at once (plan, apply, the daemon), and one domain for export.

The reads give ``RawDomain`` values; ``reconciler.core.observe`` turns them into ``LiveVM``s.
Between the two sit what makes a plan of 1,000 domains cheap: worker threads for the calls, a
cache of parsed domains keyed by a digest of their XML, and volume sizes read only where needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

import libvirt

from reconciler.adapters import cache
from reconciler.adapters.cache import Cache
from reconciler.adapters.libvirt.connection import Connection, translated
from reconciler.adapters.libvirt.states import reason_word, state_word
from reconciler.adapters.libvirt.storage import Listed, capacities, pool_volumes, volume_sizes
from reconciler.core import observe
from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import NotFoundError
from reconciler.core.model.vm import DomainDefinition, LiveVM, volume_name
from reconciler.core.observe import (
    DomainRefs,
    DomainTrees,
    Observation,
    RawDomain,
    VolumeKey,
)

_READERS = 4  # concurrent calls on one connection; libvirtd serves 5 of a client at once
_BATCH = 16  # domains (or volumes) one reader task fetches
_T = TypeVar("_T")
StateReason = tuple[int, int]  # virDomainState, and its reason


class Flags:
    """The names of the domains with autostart, without a persistent definition (transient),
    and with a managed-save image: one listing each, whatever the number of domains."""

    def __init__(self, conn: Any) -> None:
        def names(flag: int) -> frozenset[str]:
            return frozenset(d.name() for d in conn.listAllDomains(flag))

        self.autostart = names(libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)
        self.transient = names(libvirt.VIR_CONNECT_LIST_DOMAINS_TRANSIENT)
        self.managed_save = names(libvirt.VIR_CONNECT_LIST_DOMAINS_MANAGEDSAVE)


class Inventory(Connection):
    def read_raw_domains(self) -> tuple[RawDomain, ...]:
        """Every domain as read (see ``read_live`` for the calls it takes)."""
        with translated("listing domains"):
            domains = self._domain_states()
            flags = Flags(self.conn)
        with _readers() as workers:
            return tuple(raw for batch in workers.map(
                lambda batch: _fetch_domains(batch, flags), _batches(domains)) for raw in batch)

    def read_live(self, expected: Mapping[VolumeKey, int] | None = None,
                  memo: Cache | None = None) -> tuple[LiveVM, ...]:
        """Every domain as the live model (see ``read_observed``)."""
        return self.read_observed(expected, memo).vms

    def read_observed(self, expected: Mapping[VolumeKey, int] | None = None,
                      memo: Cache | None = None) -> Observation:
        """Every domain, its persistent definition and its running values, in one pass; for
        each domain name a digest of what was read of it (XML, state and flags, volume sizes),
        for the plan's fingerprint; and which domains use which volumes and files.

        The states and reasons come in one call, the autostart, transient and managed-save
        flags in one listing each; a few worker threads fetch the XML (and then the volume
        sizes) while this thread parses what has arrived.

        ``expected``: the sizes the manifests give their disks' volumes. A stopped managed
        domain's volume whose recorded size (the last one applied) is the expected one is not
        asked for its capacity (one libvirt call per volume; libvirt has no bulk call): nothing
        would change it. Its existence is still checked (one listing per pool). Without
        ``expected`` every capacity is read, as the daemon's resync does.

        ``memo``: parsed domains by a digest of their XML (see ``reconciler.adapters.cache``)."""
        parsed: list[_Fetched] = []
        wanted: set[VolumeKey] = set()
        batch: list[tuple[VolumeKey, Any]] = []
        sized: list[Future[list[tuple[VolumeKey, int]]]] = []
        listed: Listed = {}
        known_sizes: dict[VolumeKey, int] = {}
        with _readers() as workers:
            with translated("listing domains"):
                listing = workers.submit(Flags, self.conn)  # meanwhile, the states
                domains = self._domain_states()
                flags = listing.result()
            for fetched in workers.map(lambda b: _fetch_domains(b, flags), _batches(domains)):
                for raw in fetched:
                    item = _Fetched.of(raw, memo)
                    mark = item.refs.mark
                    # Sizes of a managed domain's volumes, and of an unmanaged one's named like
                    # its disks would be (an adoption compares them with the manifest).
                    own = "" if mark else f"{raw.name}-"
                    seed = seed_volume(raw.name)
                    known = (_known_sizes(raw.name, mark.applied, expected)
                             if mark and raw.live_xml is None and expected else {})
                    for key in item.refs.volumes:
                        if key[1].startswith(own) and key not in wanted:
                            wanted.add(key)
                            vol = pool_volumes(self.conn, listed, key[0]).get(key[1])
                            if vol is None:
                                continue
                            if key in known:
                                known_sizes[key] = known[key]
                            elif (expected is not None and key[1] == seed
                                  and key in item.refs.cdroms):
                                known_sizes[key] = 0  # a seed: only its existence is diffed
                            else:
                                batch.append((key, vol))
                    if len(batch) >= _BATCH:
                        sized.append(workers.submit(capacities, batch))
                        batch = []
                    parsed.append(item)
            if batch:
                sized.append(workers.submit(capacities, batch))
            sizes = dict(pair for future in sized for pair in future.result())
            sizes.update(known_sizes)
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

    def _domain_states(self) -> list[tuple[Any, StateReason | None]]:
        """Every domain with its state and reason, from one bulk call; ``None`` (ask each
        domain) where the driver has no bulk statistics."""
        try:
            stats = self.conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
            return [(dom, (int(values["state.state"]), int(values.get("state.reason", 0))))
                    for dom, values in stats]
        except (libvirt.libvirtError, KeyError, TypeError, ValueError):
            return [(dom, None) for dom in self.conn.listAllDomains(0)]

    def read_raw_domain(self, name: str) -> RawDomain:
        """One domain as read (NotFoundError if there is none)."""
        with translated(f"reading domain {name}"):
            dom = self._dom(name)
            current, reason = dom.state()
            autostart, persistent = bool(dom.autostart()), bool(dom.isPersistent())
            managed_save = bool(dom.hasManagedSaveImage(0))
            return _raw_domain(dom, name, (current, reason), autostart=autostart,
                               persistent=persistent, managed_save=managed_save)

    def read_definition(self, name: str) -> DomainDefinition:
        """One domain's persistent XML, state, autostart and its volume disks' capacities."""
        raw = self.read_raw_domain(name)
        keys = set(observe.volume_keys(observe.parse_domain(raw).inactive))
        return observe.definition(raw, volume_sizes(self.conn, keys))

    def live_values(self, names: set[str]) -> dict[str, tuple[int, int, int]]:
        """(state, live vCPUs, live memory KiB) of the running domains among ``names``: one cheap
        call each, to notice drift that raises no libvirt event (setvcpus --live)."""
        out = {}
        with translated("polling running domains"):
            for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                if dom.name() in names:
                    try:
                        state, _max, memory, vcpus, _cpu = dom.info()
                    except libvirt.libvirtError:
                        continue
                    out[dom.name()] = (state, vcpus, memory)
        return out


@contextlib.contextmanager
def _readers() -> Iterator[ThreadPoolExecutor]:
    """Worker threads for read calls (libvirt-python lets go of the GIL while it waits). On an
    error, what has not started yet is dropped."""
    workers = ThreadPoolExecutor(_READERS, thread_name_prefix="libvirt-read")
    try:
        yield workers
    finally:
        workers.shutdown(wait=True, cancel_futures=True)


def _batches(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]


def _raw_domain(dom: Any, name: str, state: StateReason, *, autostart: bool, persistent: bool,
                managed_save: bool) -> RawDomain:
    """Read the XML (the live one only when the domain runs) into a RawDomain."""
    word = state_word(state[0])
    running = word in observe.RUNNING_STATES
    return RawDomain(
        name=name, uuid=_uuid(dom.UUID()), id=dom.ID() if running else None,
        state=word, reason=reason_word(*state), persistent=persistent,
        managed_save=managed_save, autostart=autostart,
        inactive_xml=dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE),
        live_xml=dom.XMLDesc(0) if running else None)


def _uuid(raw: bytes) -> str:
    """The text form of a domain's 16-byte UUID (what UUIDString gives, at half its cost)."""
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _fetch_domains(batch: list[tuple[Any, StateReason | None]], flags: Flags) -> list[RawDomain]:
    """Each domain's state, persistent XML and, when it runs, live XML; not those undefined
    meanwhile."""
    out = []
    for dom, state in batch:
        name = dom.name()
        try:
            with translated(f"reading domain {name}"):
                if state is None:
                    current, reason = dom.state()
                    state = (current, reason)
                out.append(_raw_domain(
                    dom, name, state, autostart=name in flags.autostart,
                    persistent=name not in flags.transient,
                    managed_save=name in flags.managed_save))
        except NotFoundError:
            continue
    return out


class _Fetched:
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
    def of(cls, raw: RawDomain, memo: Cache | None) -> _Fetched:
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


def _known_sizes(vm: str, applied: Mapping[str, object],
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
