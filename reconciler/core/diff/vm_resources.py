"""A managed VM's steps, field by field: vCPUs and memory, disks, NICs, the cloud-init seed and
the devices the running VM lacks. Pure: no libvirt, no files, no clock.

Rules from libvirt and QEMU: vCPUs change live within the running maxVcpus
(``virDomainSetVcpusFlags``), memory within the running maxMemory (the balloon,
``virDomainSetMemoryFlags``); the maxima themselves only at the next start. A guest that does
not take up a balloon target keeps the memory QEMU booted it with.
"""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.model.common import DISK, NIC
from reconciler.core.model.vm import Disk, LiveVM, Nic, VMSpec
from reconciler.core.plan import Cause, Effect, Op, Part, Step, Target, vm_target
from reconciler.core.xml.devices import match_nics, next_target


def scalars(d: VMSpec, have: LiveVM, *, running: bool) -> list[Step]:
    """vcpus, memory and their maxima: the persistent config, then the running values."""
    cfg, hold = have.config, have.hold
    me = vm_target(d.name)
    out = []
    maxima = (
        (Op.SET_MAX_VCPUS, cfg.max_vcpus, have.live_max_vcpus, d.max_vcpus),
        (Op.SET_MAX_MEMORY, cfg.max_memory, have.live_max_memory, d.max_memory),
    )
    restart_needed: dict[Op, bool] = {}
    for op, config, live, desired in maxima:
        live_differs = running and live is not None and live != desired
        restart_needed[op] = live_differs
        if config != desired:
            effect = Effect.RESTART if live_differs else Effect.CONFIG
            out.append(Step(op, me, config, desired, effect))
        elif live_differs:
            out.append(Step(op, me, live, desired, Effect.PENDING))
    currents = (
        (Op.SET_VCPUS, cfg.vcpus, have.live_vcpus, d.vcpus, Op.SET_MAX_VCPUS,
         have.live_max_vcpus, hold.vcpus if hold else None, hold.seen_vcpus if hold else None),
        (Op.SET_MEMORY, cfg.memory, have.live_memory, d.memory, Op.SET_MAX_MEMORY,
         have.live_max_memory, hold.memory if hold else None,
         hold.seen_memory if hold else None),
    )
    for op, config, live, desired, limit, running_limit, held, seen in currents:
        if not running or live is None:
            if config != desired:
                out.append(Step(op, me, config, desired, Effect.CONFIG))
            continue
        if restart_needed[limit] and desired > (running_limit or 0):
            if config != desired or live != desired:
                # Once persisted, the value only waits for the restart: nothing left to write.
                effect = Effect.RESTART if config != desired else Effect.PENDING
                out.append(Step(op, me, live, desired, effect, Cause.ABOVE_RUNNING_MAX))
            continue
        if live == desired:
            if config != desired:
                out.append(Step(op, me, config, desired, Effect.CONFIG))
        elif held == desired and config == desired and seen in (None, live):
            # Not taken up, and the VM still runs with what it had then: waits for a restart.
            # (A live value that moved since - taken up late, changed by hand - is diffed again.)
            out.append(Step(op, me, live, desired, Effect.PENDING, Cause.NOT_TAKEN_UP,
                            hold.reason if hold else ""))
        else:
            out.append(Step(op, me, live, desired, Effect.LIVE))
    if have.numa:  # libvirt derives them from the cells: a change would never take
        out = [replace(s, effect=Effect.REFUSED, cause=Cause.NUMA_CELLS) for s in out]
    return out


def disks(d: VMSpec, vm: LiveVM, *, running: bool,
          creating: frozenset[str] = frozenset()) -> list[Step]:
    """Disks added (each with a target name free in both the persistent and the live
    definition: libvirt refuses a duplicated target), removed, grown, moved to another bus.
    ``creating``: disks whose volume an interrupted apply was to create (``vm_pending``): a
    missing one is created, not refused as lost, and a removed one's volume goes with it."""
    out = []
    have = {disk.name: disk for disk in vm.config.disks}
    used = set(vm.targets)
    hot = Effect.LIVE if running else Effect.CONFIG
    for disk in d.disks:
        old = have.pop(disk.name, None)
        target = vm_target(d.name, Part.DISK, disk.name)
        if old is None:
            out.append(Step(Op.ATTACH_DISK, target, None, disk, hot,
                            device=next_target(disk.bus, used)))
            continue
        if old.size < 0 and disk.name not in creating:
            out.append(Step(Op.RESTORE_VOLUME, target, old, disk, Effect.REFUSED))
            continue
        if (old.pool, old.format) != (disk.pool, disk.format):
            out.append(Step(Op.MOVE_VOLUME, target, old, disk, Effect.REFUSED))
        if old.size < 0:  # an interrupted apply defined the disk and did not make its volume
            out.append(Step(Op.CREATE_VOLUME, target, None, disk))
        elif disk.size < old.size:
            out.append(Step(Op.SHRINK_VOLUME, target, old.size, disk.size, Effect.REFUSED))
        elif disk.size > old.size:
            out.append(Step(Op.GROW_VOLUME, target, old.size, disk.size, hot))
        if old.bus != disk.bus:
            out.append(Step(Op.SET_DISK_BUS, target, old.bus, disk.bus,
                            Effect.RESTART if running else Effect.CONFIG))
        if old.reclaim != disk.reclaim:
            out.append(Step(Op.SET_RECLAIM, target, old.reclaim, disk.reclaim))
    for old in have.values():
        target = vm_target(d.name, Part.DISK, old.name)
        gone = replace(old, reclaim="delete") if old.name in creating else old
        out.append(Step(Op.DETACH_DISK, target, gone, None, hot))
        if gone.reclaim == "delete" and not (old.name in creating and old.size < 0):
            out.append(Step(Op.DELETE_VOLUME, target, gone, None, hot))
    return [_on_overlay(s, vm.config.disks) for s in out]


def _on_overlay(step: Step, live: tuple[Disk, ...]) -> Step:
    """A change to a disk that runs on an external snapshot's overlay (libvirt's
    ``<source file>`` over the volume, after ``virsh snapshot-create-as --disk-only``) is
    refused: growing, moving or deleting the volume under the overlay would corrupt the chain,
    and the definition's disk is the overlay. The reclaim policy (a mark) is still recorded."""
    if step.op == Op.SET_RECLAIM or step.target.part != Part.DISK:
        return step
    disk = next((d for d in live if d.name == step.target.key and d.overlay), None)
    if disk is None or disk.overlay is None:
        return step
    return replace(step, effect=Effect.REFUSED, cause=Cause.OVERLAY, names=(disk.overlay,))


def nics(d: VMSpec, cfg: VMSpec, *, running: bool) -> list[Step]:
    _, remove, add = match_nics(d.nics, cfg.nics)
    hot = Effect.LIVE if running else Effect.CONFIG
    out = [Step(Op.ATTACH_NIC, _nic(d.name, n), None, n, hot) for n in add]
    out += [Step(Op.DETACH_NIC, _nic(d.name, n), n, None, hot) for n in remove]
    return out


def _nic(vm: str, nic: Nic) -> Target:
    return vm_target(vm, Part.NIC, nic.mac or "")


def seed(d: VMSpec, cfg: VMSpec, *, running: bool, rewrite: bool = False) -> list[Step]:
    """The seed, compared by the short hash of its files (never by content). cloud-init reads
    it only at boot: a running VM takes a new seed at its next start. Its removal ejects it.
    ``rewrite``: an interrupted apply was writing it, so its content is not known: written
    again."""
    want, have = d.cloud_init, cfg.cloud_init
    boot = Effect.RESTART if running else Effect.CONFIG
    target = vm_target(d.name, Part.SEED)
    if want is None and have is None:
        return []
    if have is None:
        assert want is not None
        return [Step(Op.ATTACH_SEED, target, None, want.digest, boot)]
    if want is None:
        return [Step(Op.DETACH_SEED, target, have.digest, None,
                     Effect.LIVE if running else Effect.CONFIG)]
    out = []
    if want.digest != have.digest or rewrite:
        out.append(Step(Op.WRITE_SEED, target, have.digest, want.digest, boot))
    if want.pool != have.pool:
        out.append(Step(Op.MOVE_SEED, target, have.pool, want.pool, boot))
    return out


def device_gaps(d: VMSpec, have: LiveVM,
                unplugging: frozenset[tuple[str, str]] = frozenset(),
                deleting: frozenset[str] = frozenset()) -> list[Step]:
    """Devices the persistent config already agrees on but the running VM does not: a hot-plug
    to retry, or an unplug the guest has not done (it waits for a restart). ``unplugging``:
    (part, key) of the unplugs an interrupted apply was to send and may not have: sent now;
    ``deleting``: disks whose volume an interrupted apply was to delete."""
    out: list[Step] = []

    def unplug(part: str, key: str) -> tuple[Effect, Cause | None]:
        if (part, key) in unplugging:
            return Effect.LIVE, None
        return Effect.PENDING, Cause.NOT_RELEASED

    cfg = have.config
    if have.live_disks is not None:
        in_config = {disk.name for disk in cfg.disks}
        live = {disk.name: disk for disk in have.live_disks}
        wanted = {disk.name for disk in d.disks}
        out += [Step(Op.ATTACH_DISK, vm_target(d.name, Part.DISK, disk.name), None, disk,
                     Effect.LIVE, Cause.NOT_PLUGGED)
                for disk in d.disks if disk.name in in_config and disk.name not in live]
        out += [Step(Op.DETACH_DISK, vm_target(d.name, Part.DISK, name),
                     replace(disk, reclaim="delete") if name in deleting else disk, None,
                     *unplug(DISK, name))
                for name, disk in live.items() if name not in wanted and name not in in_config]
    if have.live_nics is not None and not nics(d, cfg, running=True):
        _, remove, add = match_nics(d.nics, have.live_nics)
        out += [Step(Op.ATTACH_NIC, _nic(d.name, n), None, n, Effect.LIVE, Cause.NOT_PLUGGED)
                for n in add]
        out += [Step(Op.DETACH_NIC, _nic(d.name, n), n, None, *unplug(NIC, n.mac or ""))
                for n in remove]
    return out


def restart_finishes(step: Step) -> bool:
    """Whether restarting the VM completes ``step``. A restart cannot make a guest take up a
    balloon target (QEMU boots with maxMemory), so a held balloon never asks for one."""
    if step.effect == Effect.RESTART:
        return True
    if step.effect != Effect.PENDING:
        return False
    return not (step.op == Op.SET_MEMORY and step.cause != Cause.ABOVE_RUNNING_MAX)
