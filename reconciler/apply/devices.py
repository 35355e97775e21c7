"""The running VM's side of an update: hot-plug and unplug the devices the steps name, set the
live vCPUs and balloon target, and read back what the guest did.

libvirt gives a guest a few seconds to release an unplugged device and then returns; a device
still present afterwards waits for the guest (or a restart). A balloon target is only a request:
the guest's balloon driver takes it up, or not (libvirt reports it in <currentMemory>).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.errors import ReconcilerError
from reconciler.core.model.vm import DesiredVM, Disk, LiveHold, LiveVM, Nic
from reconciler.core.plan import Action, Effect, Op
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import devices as devicexml
from reconciler.core.xml.common import Element

BALLOON_NOT_TAKEN = "memory: the guest has not taken up the balloon target (no balloon driver?)"


def hotplug(hv: Libvirt, action: Action, config_root: Element, live_root: Element) -> list[str]:
    """Attach the disks and NICs of the live attach steps, detach those of the live detach
    steps; returns what the guest has not released."""
    name = action.name
    pending = []
    targets = devicexml.disk_targets(config_root)
    live_volumes = devicexml.disk_targets(live_root)
    for step in action.writing(Op.ATTACH_DISK):
        disk = step.new
        assert isinstance(disk, Disk)
        volume = disk.volume(name)
        if step.effect == Effect.LIVE and volume not in live_volumes and volume in targets:
            hv.attach_live(name, devicexml.disk_xml(name, disk, targets[volume]))
    detached: list[tuple[str, str]] = []  # (what, how to find it in the live XML)
    for step in action.writing(Op.DETACH_DISK):
        disk = step.old
        assert isinstance(disk, Disk)
        volume = disk.volume(name)
        path = f"devices/disk[@device='disk']/source[@volume='{volume}']"
        element = live_root.find(path)
        if step.effect != Effect.LIVE or element is None:
            continue
        try:
            hv.detach_live(name, xmlcommon.to_xml(element.getparent()))
            detached.append((f"disk {disk.name}", path))
        except ReconcilerError as exc:
            pending.append(f"disk {disk.name} not unplugged: {exc}")
    live_nics = [(e, n) for e in live_root.iterfind("devices/interface")
                 if (n := devicexml.read_nic(e)) is not None]
    live_macs: set[str | None] = {n.mac for _, n in live_nics}
    used: set[str] = set()
    for step in action.writing(Op.ATTACH_NIC):
        assert isinstance(step.new, Nic)
        if step.effect == Effect.LIVE:
            hv.attach_live(name, _nic_from_config(config_root, step.new, live_macs | used, used))
    for step in action.writing(Op.DETACH_NIC):
        nic = step.old
        assert isinstance(nic, Nic)
        found = next((e for e, n in live_nics if n.mac == nic.mac), None)
        if step.effect != Effect.LIVE or found is None:
            continue
        try:
            hv.detach_live(name, xmlcommon.to_xml(found))
            detached.append((f"nic {nic.mac}", f"devices/interface/mac[@address='{nic.mac}']"))
        except ReconcilerError as exc:
            pending.append(f"nic {nic.mac} not unplugged: {exc}")
    if detached:
        after = xmlcommon.parse(hv.domain_xml(name, inactive=False))
        pending += [f"{what} not unplugged: the guest has not released it"
                    for what, path in detached if after.find(path) is not None]
    return pending


def _nic_from_config(config_root: Element, nic: Nic, taken: set[str | None],
                     used: set[str]) -> str:
    """The NIC to hot-plug, as the persistent config has it: with the MAC libvirt gave it there
    (without one, the live NIC would get another MAC than the VM has after its next start)."""
    for element in config_root.iterfind("devices/interface"):
        found = devicexml.read_nic(element)
        if found is None or not found.mac or found.mac in taken:
            continue
        if found.mac == nic.mac if nic.mac else devicexml.same_nic(found, nic):
            used.add(found.mac)
            plug = copy.deepcopy(element)
            for address in plug.findall("address"):
                plug.remove(address)  # libvirt picks a free slot on the running VM
            return xmlcommon.to_xml(plug)
    return devicexml.nic_xml(nic)


def eject_seed(hv: Libvirt, name: str, live_root: Element) -> list[str]:
    """A SATA CD-ROM cannot be unplugged live: its medium is taken out instead."""
    ejected = devicexml.seed_ejected_xml(live_root, name)
    if ejected is None:
        return []
    try:
        hv.eject_live(name, ejected)
    except ReconcilerError as exc:
        return [f"cloudInit seed not ejected from the running VM: {_short(exc)}"]
    return []


@dataclass
class LiveChange:
    """The live vCPU and memory change of one VM, until its balloon target is settled: what the
    hold on the running domain will record (``held``, ``seen``), the reasons so far, and the
    balloon target the guest was asked to take up (None: none asked)."""

    name: str
    old: LiveHold | None
    held: dict[Op, int | None]
    seen: dict[Op, int | None]
    reasons: dict[Op, str]  # by field (vcpus, memory): this run's, and those still held
    balloon: int | None = None
    touched: set[Op] = field(default_factory=set)  # the fields this run set
    requested: float = 0.0  # when the balloon target was set (the executor's clock)


def live_resources(hv: Libvirt, action: Action, have: LiveVM,
                   clock: Callable[[], float]) -> LiveChange:
    """Set the live vCPUs and balloon target as the live steps say, without waiting for the
    guest: ``settle`` then watches every VM's balloon at once, and ``finish`` records what the
    guest did not take up on the running domain (so it is not retried forever)."""
    assert isinstance(action.desired, DesiredVM)
    spec, name = action.desired.spec, action.name
    old = have.hold
    # What an earlier run recorded, and this run neither changes nor retries, still holds.
    held: dict[Op, int | None] = {
        Op.SET_VCPUS: old.vcpus if old and old.vcpus == spec.vcpus else None,
        Op.SET_MEMORY: old.memory if old and old.memory == spec.memory else None,
    }
    seen: dict[Op, int | None] = {
        Op.SET_VCPUS: old.seen_vcpus if held[Op.SET_VCPUS] is not None and old else None,
        Op.SET_MEMORY: old.seen_memory if held[Op.SET_MEMORY] is not None and old else None,
    }
    change = LiveChange(name, old, held, seen, {})
    touched = change.touched
    for step in action.steps:
        if step.op not in (Op.SET_VCPUS, Op.SET_MEMORY) or step.effect != Effect.LIVE:
            continue
        assert isinstance(step.new, int)
        touched.add(step.op)
        held[step.op] = None
        try:
            if step.op == Op.SET_VCPUS:
                hv.set_vcpus_live(name, step.new)
            else:
                hv.set_memory_live(name, step.new)
                change.balloon, change.requested = step.new, clock()
        except ReconcilerError as exc:
            held[step.op], seen[step.op] = step.new, live_value(hv, name, step.op)
            if step.op == Op.SET_VCPUS:
                change.reasons[step.op] = (f"vcpus {have.live_vcpus} -> {step.new} not "
                                           f"applied live ({_short(exc)})")
            else:
                change.reasons[step.op] = f"memory not applied live ({_short(exc)})"
    for kind, reason in _reasons(old).items():  # still held, not retried: its reason stays
        if kind not in touched and held[kind] is not None:
            change.reasons.setdefault(kind, reason)
    return change


def settle(hv: Libvirt, changes: list[LiveChange], clock: Callable[[], float],
           wait: float) -> None:
    """Watch the balloons of all ``changes`` at once, until ``wait`` seconds after the first was
    set: one settle window for every VM of a run, open while the others are still being
    changed, not one per VM. Marks each change the guest did not take up (its ``held`` memory
    and ``seen`` value) so that ``finish`` records it."""
    waiting = {c.name: c for c in changes if c.balloon is not None}
    deadline = min((c.requested for c in waiting.values()), default=clock()) + wait
    while waiting:
        for name, change in list(waiting.items()):
            if live_value(hv, name, Op.SET_MEMORY) == change.balloon:
                del waiting[name]
        if not waiting or clock() >= deadline:
            break
        time.sleep(0.2)
    for change in waiting.values():
        change.held[Op.SET_MEMORY] = change.balloon
        change.seen[Op.SET_MEMORY] = live_value(hv, change.name, Op.SET_MEMORY)
        change.reasons[Op.SET_MEMORY] = BALLOON_NOT_TAKEN


def finish(hv: Libvirt, change: LiveChange) -> list[str]:
    """Record on the running domain what it did not take up (or clear an old record); the
    reasons, which the VM's result gives as pending restart."""
    held, seen, reasons = change.held, change.seen, change.reasons
    vcpus, memory = reasons.get(Op.SET_VCPUS, ""), reasons.get(Op.SET_MEMORY, "")
    if held[Op.SET_VCPUS] is not None or held[Op.SET_MEMORY] is not None:
        hold = LiveHold(held[Op.SET_VCPUS], held[Op.SET_MEMORY],
                        "; ".join(r for r in (vcpus, memory) if r),
                        seen[Op.SET_VCPUS], seen[Op.SET_MEMORY], vcpus, memory)
        if hold != change.old:
            hv.set_hold(change.name, hold)
    elif change.old is not None:
        hv.set_hold(change.name, None)
    return [reasons[f] for f in (Op.SET_VCPUS, Op.SET_MEMORY)
            if f in change.touched and reasons.get(f)]


def _reasons(hold: LiveHold | None) -> dict[Op, str]:
    """The reason recorded for each held value (a hold of an older version has one reason
    for all)."""
    if hold is None:
        return {}
    out = {}
    for op, value, own in ((Op.SET_VCPUS, hold.vcpus, hold.vcpus_reason),
                           (Op.SET_MEMORY, hold.memory, hold.memory_reason)):
        if value is not None and (own or hold.reason):
            out[op] = own or hold.reason
    return out


def live_value(hv: Libvirt, name: str, op: Op) -> int | None:
    """The running VM's vCPU count or memory (bytes), as libvirt reports it now."""
    root = xmlcommon.parse(hv.domain_xml(name, inactive=False))
    if op == Op.SET_MEMORY:
        return xmlcommon.memory_bytes(root.find("currentMemory")) or None
    vcpu = root.find("vcpu")
    return int(vcpu.get("current", vcpu.text)) if vcpu is not None else None


def _short(exc: Exception) -> str:
    return str(exc).split(": ", 1)[-1]
