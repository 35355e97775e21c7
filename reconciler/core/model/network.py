"""The desired and live models of a network. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.model.common import Mark, Source
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class IPv4(Record):
    address: str
    prefix: int
    dhcp_start: str | None = None
    dhcp_end: str | None = None


@dataclass(frozen=True, eq=False, repr=False)
class NetworkSpec(Record):
    name: str
    bridge: str | None = None  # None: libvirt picks one, never diffed
    forward: str = "none"
    autostart: bool = True
    ipv4: IPv4 | None = None


@dataclass(frozen=True, eq=False, repr=False)
class DesiredNetwork(Record):
    spec: NetworkSpec
    source: Source
    spec_hash: str


@dataclass(frozen=True, eq=False, repr=False)
class LiveNetwork(Record):
    name: str
    active: bool
    config: NetworkSpec
    mark: Mark | None  # None: not created by this tool (or another instance's)
    # The UUIDs of the ports guests are connected by, sorted (a tuple: its repr, part of the
    # plan's fingerprint, must not depend on the process's hash seed); None: not known.
    ports: tuple[str, ...] | None = None
    # What the active network runs with (its live XML); None: inactive, or not read.
    running: NetworkSpec | None = None


