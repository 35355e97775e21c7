"""Desired and live models of networks and storage pools. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.model import Mark, Source


@dataclass(frozen=True)
class IPv4:
    address: str
    prefix: int
    dhcp_start: str | None = None
    dhcp_end: str | None = None


@dataclass(frozen=True)
class NetworkSpec:
    name: str
    bridge: str | None = None  # None: libvirt picks one, never diffed
    forward: str = "none"
    autostart: bool = True
    ipv4: IPv4 | None = None


@dataclass(frozen=True)
class PoolSpec:
    name: str
    path: str
    autostart: bool = True
    type: str = "dir"


@dataclass(frozen=True)
class DesiredNetwork:
    spec: NetworkSpec
    source: Source
    spec_hash: str


@dataclass(frozen=True)
class DesiredPool:
    spec: PoolSpec
    source: Source
    spec_hash: str


@dataclass(frozen=True)
class LiveNetwork:
    name: str
    active: bool
    config: NetworkSpec
    mark: Mark | None  # None: not created by this tool (or another instance's)


@dataclass(frozen=True)
class LivePool:
    name: str
    active: bool
    config: PoolSpec
    owner: str | None  # the reconciler instance whose marker volume is in the pool
