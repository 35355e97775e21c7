"""The desired model of a hypervisor host of the fleet (``kind: Host``). Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.model.common import Source
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class Capacity(Record):
    """Limits on what the VMs placed on a host may add up to; None: no limit.

    ``vcpus``: the sum of their vCPUs; ``memory``: the sum of their memory, in bytes;
    ``vms``: how many VMs."""

    vcpus: int | None = None
    memory: int | None = None
    vms: int | None = None


@dataclass(frozen=True, eq=False, repr=False)
class HostSpec(Record):
    """``name``: the host's reconciler knows itself by it (config ``host``). ``uri``: the
    libvirt URI that reaches it from elsewhere (fleet plans, migration); ``migrate_uri``: where
    QEMU sends a live migration's data (None: the host name of ``uri``). ``labels``: sorted
    (key, value) pairs that a VM's ``hostSelector`` matches. ``cordon``: a selector never
    picks it."""

    name: str
    uri: str
    labels: tuple[tuple[str, str], ...] = ()
    capacity: Capacity = Capacity()
    cordon: bool = False
    migrate_uri: str | None = None  # where a live migration's data goes (tcp://ADDRESS)

    def matches(self, selector: tuple[tuple[str, str], ...]) -> bool:
        """Whether every (key, value) of ``selector`` is one of this host's labels."""
        own = dict(self.labels)
        return all(own.get(key) == value for key, value in selector)


@dataclass(frozen=True, eq=False, repr=False)
class DesiredHost(Record):
    spec: HostSpec
    source: Source


@dataclass(frozen=True, eq=False, repr=False)
class Destination(Record):
    """What a move needs to know of the host a VM moves to, read over its Host's URI just
    before planning the move. ``error``: why it could not be read (then nothing else is
    known). ``free_memory``: bytes the host can give a new guest (None: not known).
    ``pools``: active pool -> bytes available. ``volumes``: (pool, volume) names that exist.
    ``domains``: name -> the reconciler instance whose mark it carries ("" for a domain made
    by hand). ``networks``: active networks. ``cpu``: whether the host's CPU can run each
    running VM's CPU model, by VM (False: libvirt said incompatible; absent: not checked)."""

    host: str
    uri: str
    error: str = ""
    uuid: str | None = None  # libvirt's host UUID: which machine the URI reaches
    free_memory: int | None = None
    pools: tuple[tuple[str, int], ...] = ()
    volumes: frozenset[tuple[str, str]] = frozenset()
    # Of those, (pool, volume, capacity in bytes, format, in use by a domain there) of each
    # that a move would write: a copy left by an interrupted move is written over, anything
    # else is in the way.
    found: tuple[tuple[str, str, int, str, bool], ...] = ()
    # Of the domains asked about, (name, the host it last moved from, when the move began: UTC,
    # ISO 8601, the (pool, volume) it took) of each whose persistent definition records a move
    # (``<moves>``, written with the domain itself): how the host a move left knows its own
    # copy (``core.moves.leftover``).
    moved: tuple[tuple[str, str, str, tuple[tuple[str, str], ...]], ...] = ()
    domains: tuple[tuple[str, str], ...] = ()
    # (name, UUID) of those domains: the very domain a cold move defined there before it was
    # interrupted has the UUID of the one here.
    uuids: tuple[tuple[str, str], ...] = ()
    networks: frozenset[str] = frozenset()
    cpu: tuple[tuple[str, bool], ...] = ()
