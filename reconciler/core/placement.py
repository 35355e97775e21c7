"""Where each VM of a fleet runs: ``spec.host`` pins it, ``spec.hostSelector`` picks one of the
matching Hosts, the same way on every host and in CI, with no coordination and no state kept.
Pure.

The pick is rendezvous hashing (highest random weight, Thaler and Ravishankar 1998): each
matching host scores ``sha256(host NUL vm)``, and the VM goes to the best-scoring host that has
room. A host added to the fleet takes only the VMs for which it scores best (about 1/N of
them); without capacity limits every other VM keeps its host (with them, the room a VM
leaves may be taken by one that ranks that host higher). Cordoning a host moves its VMs.
Capacity is taken in a fixed order (pinned VMs first, then selected ones, each by name), so
every host computes the same placement from the same commit."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from reconciler.core.model.host import DesiredHost, HostSpec
from reconciler.core.model.vm import DesiredVM
from reconciler.core.record import Record
from reconciler.core.units import format_bytes

PINNED = "pinned"  # spec.host
SELECTED = "selected"  # spec.hostSelector


@dataclass(frozen=True, eq=False, repr=False)
class Placed(Record):
    """Where one VM runs. ``host``: the Host's name, or None when no host may run it
    (``reason`` says why). ``how``: ``PINNED`` or ``SELECTED``."""

    vm: str
    host: str | None
    how: str
    reason: str = ""


@dataclass
class _Room:
    host: HostSpec
    vcpus: int = 0
    memory: int = 0  # bytes
    vms: int = 0
    full: list[str] = field(default_factory=list)

    def short_of(self, vm: DesiredVM) -> str | None:
        """What the host's capacity lacks for ``vm``, or None when it fits."""
        cap = self.host.capacity
        if cap.vms is not None and self.vms + 1 > cap.vms:
            return f"{self.host.name} holds its {cap.vms} VMs"
        if cap.vcpus is not None and self.vcpus + vm.spec.vcpus > cap.vcpus:
            return f"{self.host.name} has {cap.vcpus - self.vcpus} of {vm.spec.vcpus} vCPUs left"
        if cap.memory is not None and self.memory + vm.spec.memory > cap.memory:
            left = format_bytes(max(cap.memory - self.memory, 0))
            return (f"{self.host.name} has {left} of {format_bytes(vm.spec.memory)} "
                    "memory left")
        return None

    def take(self, vm: DesiredVM) -> None:
        self.vcpus += vm.spec.vcpus
        self.memory += vm.spec.memory
        self.vms += 1


def score(host: str, vm: str) -> int:
    """The rendezvous weight of ``vm`` on ``host``: the first 8 bytes of sha256, big-endian."""
    return int.from_bytes(hashlib.sha256(f"{host}\0{vm}".encode()).digest()[:8], "big")


def place(vms: Iterable[DesiredVM], hosts: Sequence[DesiredHost]) -> dict[str, Placed]:
    """VM name -> where it runs, for VMs with ``host`` or ``host_selector`` (validation has
    checked that the host exists, or that the selector matches one). Empty when the fleet has
    no Host. Pure."""
    if not hosts:
        return {}
    rooms = {h.spec.name: _Room(h.spec) for h in hosts}
    wanted = sorted(vms, key=lambda v: (v.host is None, v.spec.name))
    out: dict[str, Placed] = {}
    matching: dict[tuple[tuple[str, str], ...], list[_Room]] = {}  # selector -> its hosts
    for vm in wanted:
        name = vm.spec.name
        if vm.host is not None:
            room = rooms.get(vm.host)
            if room is None:
                out[name] = Placed(name, None, PINNED, f"no Host named {vm.host!r}")
                continue
            short = room.short_of(vm)
            if short is not None:
                out[name] = Placed(name, None, PINNED, f"over capacity: {short}")
                continue
            room.take(vm)
            out[name] = Placed(name, vm.host, PINNED)
        elif vm.host_selector:
            selector = vm.host_selector
            if selector not in matching:  # the same few selectors, for thousands of VMs
                matching[selector] = [r for r in rooms.values() if r.host.matches(selector)]
            out[name] = _select(vm, matching[selector])
    return out


def _select(vm: DesiredVM, matching: list[_Room]) -> Placed:
    """Where ``vm`` goes among ``matching`` (the hosts its selector matches)."""
    name = vm.spec.name
    open_ = [r for r in matching if not r.host.cordon]
    labels = ",".join(f"{k}={v}" for k, v in vm.host_selector)
    if not open_:
        why = (f"every Host with {labels} is cordoned" if matching
               else f"no Host has the labels {labels}")
        return Placed(name, None, SELECTED, why)
    shorts = []
    for room in sorted(open_, key=lambda r: score(r.host.name, name), reverse=True):
        short = room.short_of(vm)
        if short is None:
            room.take(vm)
            return Placed(name, room.host.name, SELECTED)
        shorts.append(short)
    return Placed(name, None, SELECTED, "no room: " + "; ".join(shorts))
