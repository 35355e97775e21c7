"""Reading every domain at once (plan, apply, the daemon), and one domain for export.

The reads give ``RawDomain`` values; ``reconciler.core.observe`` turns them into ``LiveVM``s.
Between the two sit what makes a plan of 1,000 domains cheap: worker threads for the calls, a
cache of parsed domains keyed by a digest of their XML, and volume sizes read only where needed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import libvirt

from reconciler.adapters.assemble import Fetched, observation, sizes_wanted
from reconciler.adapters.cache import Cache
from reconciler.adapters.libvirt.connection import Connection, translated
from reconciler.adapters.libvirt.states import reason_word, state_word
from reconciler.adapters.libvirt.storage import Listed, capacities, pool_volumes, volume_sizes
from reconciler.core import observe
from reconciler.core.errors import NotFoundError
from reconciler.core.model.vm import DomainDefinition, LiveVM
from reconciler.core.observe import (
    Observation,
    RawDomain,
    VolumeKey,
)

_READERS = 4  # concurrent calls on one connection; libvirtd serves 5 of a client at once
_BATCH = 16  # domains (or volumes) one reader task fetches
_T = TypeVar("_T")
_R = TypeVar("_R")
_R_co = TypeVar("_R_co", covariant=True)
StateReason = tuple[int, int]  # virDomainState, and its reason


class _Pending(Protocol[_R_co]):
    def result(self) -> _R_co: ...


class _Readers(Protocol):
    """What the reads need of ``concurrent.futures.ThreadPoolExecutor`` (or of ``_InThread``)."""

    def submit(self, fn: Callable[..., _R], /, *args: Any) -> _Pending[_R]: ...

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]: ...


class _Done(Generic[_R]):
    def __init__(self, value: _R) -> None:
        self._value = value

    def result(self) -> _R:
        return self._value


class _InThread:
    """``_Readers`` in the calling thread: a host whose domains fit in one batch is read
    without starting reader threads (their one batch would be read by one thread anyway), nor
    importing ``concurrent.futures`` (and the logging it imports): part of a small host's
    start-up time. Errors are raised where the call is made, not at ``result()``."""

    def submit(self, fn: Callable[..., _R], /, *args: Any) -> _Done[_R]:
        return _Done(fn(*args))

    def map(self, fn: Callable[[_T], _R], items: Iterable[_T]) -> Iterator[_R]:
        return map(fn, items)


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
        with _readers(len(domains)) as workers:
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
        flags in one listing each; on a host of more than one batch of domains (``_BATCH``), a
        few worker threads fetch the XML (and then the volume sizes) while this thread parses
        what has arrived; a smaller host is read in this thread.

        ``expected``: the sizes the manifests give their disks' volumes. A stopped managed
        domain's volume whose recorded size (the last one applied) is the expected one is not
        asked for its capacity (one libvirt call per volume; libvirt has no bulk call): nothing
        would change it. Its existence is still checked (one listing per pool). Without
        ``expected`` every capacity is read, as the daemon's resync does.

        ``memo``: parsed domains by a digest of their XML (see ``reconciler.adapters.cache``)."""
        parsed: list[Fetched] = []
        wanted: set[VolumeKey] = set()
        batch: list[tuple[VolumeKey, Any]] = []
        sized: list[_Pending[list[tuple[VolumeKey, int]]]] = []
        listed: Listed = {}
        known_sizes: dict[VolumeKey, int] = {}
        with translated("listing domains"):
            domains = self._domain_states()
            flags = Flags(self.conn)
        with _readers(len(domains)) as workers:
            for fetched in workers.map(lambda b: _fetch_domains(b, flags), _batches(domains)):
                for raw in fetched:
                    item = Fetched.of(raw, memo)
                    for key, size in sizes_wanted(item, expected):
                        if key in wanted:
                            continue
                        wanted.add(key)
                        vol = pool_volumes(self.conn, listed, key[0]).get(key[1])
                        if vol is None:
                            continue
                        if size is not None:
                            known_sizes[key] = size
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
        return observation(parsed, sizes, memo)

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
def _readers(domains: int) -> Iterator[_Readers]:
    """Worker threads for read calls (libvirt-python lets go of the GIL while it waits) for a
    host of more than one batch of ``domains``, else the calling thread (``_InThread``). On an
    error, what has not started yet is dropped."""
    if domains <= _BATCH:
        yield _InThread()
        return
    from concurrent.futures import ThreadPoolExecutor

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
