"""Carry out one VM action's steps on libvirt, in order, reading back what libvirt made of them.

The steps say what to do; this module decides nothing the plan did not show. What it returns
are the causes for which the running VM still waits for a restart (a device the guest did not
release, a balloon target not taken up), as read back from libvirt.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from reconciler.adapters.libvirt import Libvirt
from reconciler.apply import devices, storage
from reconciler.apply.steps import Steps
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import DesiredVM, Disk, LiveHold, LiveVM, VMSpec
from reconciler.core.plan import Action, Op
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import devices as devicexml
from reconciler.core.xml import domain as domainxml

log = structlog.get_logger("reconciler.apply")

@dataclass(frozen=True)
class Context:
    hv: Libvirt
    commit: str | None
    instance: str
    clock: Callable[[], float]
    steps: Steps | None = None  # the step boundaries (None: no halt, no test hook)
    # Live changes whose balloon target the executor settles once for every VM of the run.
    settling: list[devices.LiveChange] = field(default_factory=list)

    def mark(self, want: DesiredVM) -> Mark:
        return Mark(want.source.relative, want.spec_hash, self.commit, want.applied,
                    self.instance)


def carry_out(action: Action, ctx: Context) -> list[str]:
    """The action's steps. Returns the causes still pending a restart."""
    if action.has(Op.ADOPT):
        assert isinstance(action.desired, DesiredVM)
        ctx.hv.set_mark(action.name, ctx.mark(action.desired))  # nothing else
        return []
    if action.has(Op.UNDEFINE):
        assert isinstance(action.live, LiveVM)
        destroy(action, action.live, ctx)
        return []
    assert isinstance(action.desired, DesiredVM)
    if action.live is None:
        return create(action, action.desired, ctx)
    assert isinstance(action.live, LiveVM)
    return update(action, action.desired, action.live, ctx)


def create(action: Action, want: DesiredVM, ctx: Context) -> list[str]:
    """Volumes, the seed, define, autostart, start."""
    spec, hv = want.spec, ctx.hv
    _prepare_volumes(action, hv)
    if action.has(Op.ATTACH_SEED):
        storage.upload_seed(hv, spec)
    hv.define(domainxml.build_domain(spec, domain_type=hv.domain_type, mark=ctx.mark(want)))
    if action.has(Op.SET_AUTOSTART):
        hv.set_autostart(spec.name, True)
    if action.has(Op.START):
        return start(spec, ctx)
    return []


def start(spec: VMSpec, ctx: Context) -> list[str]:
    """Start the VM. QEMU boots with all of maxMemory and asks the guest to balloon down to
    memory; a guest that has not done so (yet, or ever: no balloon driver) is recorded on the
    running domain, so the next plan reports it pending instead of ballooning again."""
    ctx.hv.start(spec.name)
    if spec.memory >= spec.max_memory:
        return []
    live = devices.live_value(ctx.hv, spec.name, Op.SET_MEMORY)
    if live == spec.memory:
        return []
    ctx.hv.set_hold(spec.name, LiveHold(None, spec.memory, devices.BALLOON_NOT_TAKEN,
                                        seen_memory=live))
    return [devices.BALLOON_NOT_TAKEN]


def stop(name: str, timeout: float, ctx: Context) -> None:
    """Graceful ACPI shutdown; forced power-off once ``timeout`` seconds have passed."""
    try:
        ctx.hv.shutdown(name)
    except ReconcilerError as exc:
        log.warning("graceful shutdown refused", vm=name, error=str(exc))
    # The forced power-off finishes the step in flight: it runs even after a halt.
    with ctx.steps.finishing() if ctx.steps else contextlib.nullcontext():
        deadline = ctx.clock() + timeout
        while ctx.clock() < deadline:
            if not ctx.hv.domain_state(name)[0]:
                return
            time.sleep(0.2)
        log.info("forcing power-off after shutdown timeout", vm=name, timeout=timeout)
        ctx.hv.power_off(name)


def destroy(action: Action, vm: LiveVM, ctx: Context) -> None:
    """Stop, undefine, then delete the volumes the steps name (``reclaim: delete``, the seed)."""
    if action.has(Op.STOP):
        stop(vm.name, vm.config.shutdown_timeout, ctx)
    ctx.hv.undefine(vm.name)
    for step in action.writing(Op.DELETE_VOLUME):
        assert isinstance(step.old, Disk)
        storage.delete_volume(ctx.hv, vm.name, step.old.pool, step.old.volume(vm.name))
    for step in action.writing(Op.DELETE_SEED):
        storage.remove_seed(ctx.hv, vm.name, str(step.old))


# Steps carried out by rewriting the persistent definition (everything but the power state).
_NOT_DEFINED = (Op.START, Op.STOP)


def update(action: Action, want: DesiredVM, have: LiveVM, ctx: Context) -> list[str]:
    """Persist the new config, then change the running VM. Returns pending-restart causes."""
    hv, spec, name = ctx.hv, want.spec, want.spec.name
    running = have.running
    pending: list[str] = []
    if action.has(Op.RESUME):  # paused by someone: running again first
        hv.resume(name)
    _prepare_volumes(action, hv)
    if spec.cloud_init and action.has(Op.ATTACH_SEED, Op.WRITE_SEED, Op.MOVE_SEED):
        storage.upload_seed(hv, spec)
    live_before = xmlcommon.parse(hv.domain_xml(name, inactive=False)) if running else None
    # Grow before the new mark records the new sizes: a recorded size is trusted later (a
    # stopped VM's volume whose manifest size is the recorded one is not read again).
    disks = {disk.name: disk for disk in spec.disks}
    for step in action.writing(Op.GROW_VOLUME):
        _grow(hv, name, disks[step.target.key], live_root=live_before)
    if any(s.writes and s.op not in _NOT_DEFINED for s in action.steps):
        targets = {s.new.volume(name): s.device for s in action.writing(Op.ATTACH_DISK)
                   if isinstance(s.new, Disk) and s.device}
        hv.define(domainxml.edit_config(hv.domain_xml(name), spec, mark=ctx.mark(want),
                                        targets=targets))
    if action.has(Op.SET_AUTOSTART):
        hv.set_autostart(name, spec.autostart)
    if running and live_before is not None:
        config_root = xmlcommon.parse(hv.domain_xml(name))
        pending += devices.hotplug(hv, action, config_root, live_before)
        if not action.restart:
            change = devices.live_resources(hv, action, have, ctx.clock)
            if change.balloon is None:
                pending += devices.finish(hv, change)
            else:
                ctx.settling.append(change)  # its balloon is watched with the others
    old_seed = have.config.cloud_init
    if old_seed and action.has(Op.DETACH_SEED):
        if running and live_before is not None:
            pending += devices.eject_seed(hv, name, live_before)
        storage.remove_seed(hv, name, old_seed.pool)
    elif old_seed and spec.cloud_init and action.has(Op.MOVE_SEED):
        storage.remove_seed(hv, name, old_seed.pool)
    if action.restart:
        stop(name, spec.shutdown_timeout, ctx)
        pending = start(spec, ctx)  # a fresh boot: earlier live causes are gone
    elif action.has(Op.STOP):
        stop(name, spec.shutdown_timeout, ctx)
    elif action.has(Op.START):
        pending += start(spec, ctx)
    # Removed disks' volumes go last: after a stop or restart the VM holds none of them.
    still_attached: set[str] = set()
    if hv.domain_state(name)[0]:
        after = xmlcommon.parse(hv.domain_xml(name, inactive=False))
        still_attached = set(devicexml.disk_targets(after))
    for step in action.writing(Op.DELETE_VOLUME):
        disk = step.old
        assert isinstance(disk, Disk)
        volume = disk.volume(name)
        if volume in still_attached:  # the guest has not released it: never deleted in use
            pending.append(f"volume {volume} kept: the running VM still holds disk "
                           f"{disk.name}; delete it after the VM restarts (virsh vol-delete "
                           f"{volume} --pool {disk.pool})")
        else:
            storage.delete_volume(hv, name, disk.pool, volume)
    return pending


def _prepare_volumes(action: Action, hv: Libvirt) -> None:
    """The volumes the plan creates or reuses, before the definition names them."""
    for step in action.writing(Op.CREATE_VOLUME, Op.REUSE_VOLUME):
        assert isinstance(step.new, Disk)
        if step.op == Op.CREATE_VOLUME:
            storage.create_volume(hv, action.name, step.new)
        else:
            storage.reuse_volume(hv, action.name, step.new)


def _grow(hv: Libvirt, name: str, disk: Disk, *, live_root: xmlcommon.Element | None) -> None:
    current = hv.volume(disk.pool, disk.volume(name)).capacity
    if disk.size < current:  # grown by hand since the plan: growing "to" it would shrink
        raise PermanentError(f"disk {disk.name}: the volume is now {current} bytes, larger "
                             f"than {disk.size}; refusing to shrink it")
    if live_root is not None:
        target = devicexml.disk_targets(live_root).get(disk.volume(name))
        if target:
            hv.block_resize(name, target, disk.size)
            return
    hv.resize_volume(disk.pool, disk.volume(name), disk.size)
