"""The desired model of a hypervisor host of the fleet (``kind: Host``). Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.model.common import Source


@dataclass(frozen=True)
class Capacity:
    """Limits on what the VMs placed on a host may add up to; None: no limit.

    ``vcpus``: the sum of their vCPUs; ``memory``: the sum of their memory, in bytes;
    ``vms``: how many VMs."""

    vcpus: int | None = None
    memory: int | None = None
    vms: int | None = None


@dataclass(frozen=True)
class HostSpec:
    """``name``: the host's reconciler knows itself by it (config ``host``). ``uri``: the
    libvirt URI that reaches it from elsewhere (fleet plans, migration). ``labels``: sorted
    (key, value) pairs that a VM's ``hostSelector`` matches. ``cordon``: a selector never
    picks it."""

    name: str
    uri: str
    labels: tuple[tuple[str, str], ...] = ()
    capacity: Capacity = Capacity()
    cordon: bool = False

    def matches(self, selector: tuple[tuple[str, str], ...]) -> bool:
        """Whether every (key, value) of ``selector`` is one of this host's labels."""
        own = dict(self.labels)
        return all(own.get(key) == value for key, value in selector)


@dataclass(frozen=True)
class DesiredHost:
    spec: HostSpec
    source: Source
