"""The live state a plan is computed from: every domain, network and pool as observed, and the
host facts the plan resolves against. Frozen values, no I/O."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from reconciler.core.model.network import LiveNetwork
from reconciler.core.model.pool import LivePool
from reconciler.core.model.storage import StorageView
from reconciler.core.model.vm import LiveVM
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class LiveState(Record):
    vms: tuple[LiveVM, ...]
    networks: tuple[LiveNetwork, ...] = ()
    pools: tuple[LivePool, ...] = ()
    # Domain name -> a digest of what the adapter read of it, for the plan's fingerprint.
    read: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # Volumes, who uses them, and details of the pools the plan touches; None: storage was
    # not observed (plans computed from tables): nothing is resolved against it.
    storage: StorageView | None = field(default=None, compare=False, repr=False)
    # Path -> the path with its symbolic links resolved on the host (a local connection).
    real_paths: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)
    # The host's free memory in bytes (None: unknown): VMs to start must fit in it.
    free_memory: int | None = field(default=None, compare=False, repr=False)
    # The host's interfaces (bridges included) and its vCPU limit; None: not known.
    host_interfaces: tuple[str, ...] | None = field(default=None, compare=False, repr=False)
    max_vcpus: int | None = field(default=None, compare=False, repr=False)
    # The host's IPv4 routes as (interface, CIDR), read on a local connection only.
    host_routes: tuple[tuple[str, str], ...] = field(default=(), compare=False, repr=False)


def infra_text(live: LiveState) -> str:
    return repr(sorted(live.networks, key=lambda n: n.name)) + repr(
        sorted(live.pools, key=lambda p: p.name))


def owned_view(live: tuple[LiveVM, ...], instance: str) -> tuple[LiveVM, ...]:
    """Domains of another reconciler instance look unmanaged to this one (and are never adopted
    by it: ``owner`` names that instance). Pure."""
    return tuple(vm if vm.mark is None or vm.mark.instance == instance
                 else replace(vm, mark=None, owner=vm.mark.instance)
                 for vm in live)

