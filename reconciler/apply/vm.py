"""Carry out one VM action's steps on libvirt, in order, reading back what libvirt made of them.

The steps say what to do; this module decides nothing the plan did not show. What it returns
are the causes for which the running VM still waits for a restart (a device the guest did not
release, a balloon target not taken up), as read back from libvirt.

The order of the steps makes every action finishable from any point (see
``reconciler.core.diff.vm_pending``): the domain's definition and mark, with a record of the work
under way, come before the volumes a create or update makes; a destroy undefines last.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from reconciler.adapters.lazylog import get_logger
from reconciler.adapters.libvirt import Libvirt
from reconciler.apply import devices, storage
from reconciler.apply.progress import Activity, Observer, Silent
from reconciler.apply.steps import Steps
from reconciler.core import words
from reconciler.core.diff import vm_pending
from reconciler.core.errors import PermanentError, ReconcilerError
from reconciler.core.model.common import CREATE, DELETE, DISK, SEED, UNPLUG, WRITE, Mark, Pending
from reconciler.core.model.vm import DesiredVM, Disk, LiveHold, LiveVM, VMSpec
from reconciler.core.observe import volume_keys
from reconciler.core.plan import Action, Effect, Op
from reconciler.core.record import Record
from reconciler.core.result import Deed, Did
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import devices as devicexml
from reconciler.core.xml import domain as domainxml

log = get_logger("reconciler.apply")


@dataclass(frozen=True, eq=False, repr=False)
class Context(Record):
    hv: Libvirt
    commit: str | None
    instance: str
    clock: Callable[[], float]
    steps: Steps | None = None  # the step boundaries (None: no halt, no test hook)
    dirty: bool = False  # the manifests differ from ``commit``
    observer: Observer = field(default_factory=Silent)  # told of the steps that take time
    # Live changes whose balloon target the executor settles once for every VM of the run.
    settling: list[devices.LiveChange] = field(default_factory=list)

    def mark(self, want: DesiredVM, unfinished: tuple[Pending, ...] = ()) -> Mark:
        return Mark(want.source.relative, want.spec_hash, self.commit, want.applied,
                    self.instance, pending=unfinished, dirty=self.dirty and bool(self.commit))


class _Record:
    """The record of unfinished work in one domain's mark, as last written."""

    def __init__(self, ctx: Context, want: DesiredVM, written: tuple[Pending, ...]) -> None:
        self.ctx, self.want, self.written = ctx, want, written

    def write(self, entries: tuple[Pending, ...]) -> None:
        """Record ``entries`` (one metadata write, none when they are what is recorded)."""
        if entries != self.written:
            self.ctx.hv.set_mark(self.want.spec.name, self.ctx.mark(self.want, entries))
            self.written = entries


def carry_out(action: Action, ctx: Context, did: list[Deed]) -> list[str]:
    """The action's steps. Returns the causes still pending a restart; ``did`` gets what was
    done, in order, as it is done (so that it holds what was done before a failure too)."""
    if action.has(Op.ADOPT):
        assert isinstance(action.desired, DesiredVM)
        ctx.hv.set_mark(action.name, ctx.mark(action.desired))  # nothing else
        did.append(Deed(Did.ADOPTED))
        return []
    if action.has(Op.UNDEFINE):
        assert isinstance(action.live, LiveVM)
        destroy(action, action.live, ctx, did)
        return []
    assert isinstance(action.desired, DesiredVM)
    if action.live is None:
        return create(action, action.desired, ctx, did)
    assert isinstance(action.live, LiveVM)
    return update(action, action.desired, action.live, ctx, did)


def create(action: Action, want: DesiredVM, ctx: Context, did: list[Deed]) -> list[str]:
    """Reused volumes grown; the definition with its mark and the record of what is made next;
    the new volumes and the seed; the record cleared; autostart; start. A create that fails
    before the record is cleared takes back what it made (the guest never used it)."""
    spec, hv = want.spec, ctx.hv
    for step in action.writing(Op.REUSE_VOLUME):  # before the mark records their sizes
        assert isinstance(step.new, Disk)
        storage.reuse_volume(hv, spec.name, step.new)
    entries = vm_pending.record(action)
    hv.define(domainxml.build_domain(spec, domain_type=hv.domain_type,
                                     mark=ctx.mark(want, entries)))
    made: list[Disk] = []
    try:
        _make(action, spec, ctx, made)
    except ReconcilerError:
        _take_back(spec.name, made, ctx)
        raise
    if entries:
        hv.set_mark(spec.name, ctx.mark(want))
    if action.has(Op.SET_AUTOSTART):
        hv.set_autostart(spec.name, True)
    did.append(Deed(Did.CREATED))
    if action.has(Op.START):
        return start(spec, ctx, did)
    return []


def _make(action: Action, spec: VMSpec, ctx: Context, made: list[Disk] | None = None) -> None:
    """The volumes the steps create and the seed they write (recorded as under way); ``made``
    gets each disk whose volume was created."""
    for step in action.writing(Op.CREATE_VOLUME):
        assert isinstance(step.new, Disk)
        storage.create_volume(ctx.hv, spec.name, step.new)
        if made is not None:
            made.append(step.new)
    if spec.cloud_init and action.has(Op.ATTACH_SEED, Op.WRITE_SEED, Op.MOVE_SEED):
        storage.upload_seed(ctx.hv, spec)


def _take_back(name: str, made: list[Disk], ctx: Context) -> None:
    """Undo a create that failed (not one interrupted): the volumes it created (a seed upload
    that fails removes what it made itself), then the definition. What fails here stays
    recorded in the mark, for the next run."""
    try:
        for disk in made:
            storage.delete_volume(ctx.hv, name, disk.pool, disk.volume(name))
        ctx.hv.undefine(name)
    except ReconcilerError as exc:
        log.warning("a failed create was not taken back", vm=name, error=str(exc))


def start(spec: VMSpec, ctx: Context, did: list[Deed]) -> list[str]:
    """Start the VM. QEMU boots with all of maxMemory and asks the guest to balloon down to
    memory; a guest that has not done so (yet, or ever: no balloon driver) is recorded on the
    running domain, so the next plan reports it pending instead of ballooning again."""
    ctx.observer.step(spec.name, Activity.STARTING)
    ctx.hv.start(spec.name)
    _done(ctx, spec.name, did, Deed(Did.STARTED))
    if spec.memory >= spec.max_memory:
        return []
    live = devices.live_value(ctx.hv, spec.name, Op.SET_MEMORY)
    if live == spec.memory:
        return []
    ctx.hv.set_hold(spec.name, LiveHold(None, spec.memory, devices.BALLOON_NOT_TAKEN,
                                        seen_memory=live))
    return [devices.BALLOON_NOT_TAKEN]


def stop(name: str, timeout: int, ctx: Context, did: list[Deed]) -> None:
    """Graceful ACPI shutdown; forced power-off once ``timeout`` seconds have passed. ``did``
    gets which of the two it was."""
    ctx.observer.step(name, Activity.SHUTTING_DOWN, timeout=timeout)
    try:
        ctx.hv.shutdown(name)
    except ReconcilerError as exc:
        log.warning("graceful shutdown refused", vm=name, error=str(exc))
    # The forced power-off finishes the step in flight: it runs even after a halt.
    with ctx.steps.finishing() if ctx.steps else contextlib.nullcontext():
        deadline = ctx.clock() + timeout
        while ctx.clock() < deadline:
            if not ctx.hv.domain_state(name)[0]:
                _done(ctx, name, did, Deed(Did.SHUT_DOWN))
                return
            time.sleep(0.2)
        log.info("forcing power-off after shutdown timeout", vm=name, timeout=timeout)
        ctx.observer.step(name, Activity.FORCING_OFF)
        ctx.hv.power_off(name)
        _done(ctx, name, did, Deed(Did.FORCED_OFF, after=timeout))


def _done(ctx: Context, name: str, did: list[Deed], deed: Deed) -> None:
    """A long step done: recorded for the result, and told to the observer."""
    did.append(deed)
    ctx.observer.did(name, deed)


def destroy(action: Action, vm: LiveVM, ctx: Context, did: list[Deed]) -> None:
    """Stop; delete the volumes the steps name (``reclaim: delete``, the seed, what an
    interrupted update left to delete) while the domain is still defined and marked; undefine
    last. Interrupted anywhere, the next plan sees a marked domain without a manifest and
    destroys it again."""
    if action.has(Op.STOP):
        stop(vm.name, vm.config.shutdown_timeout, ctx, did)
    for step in action.writing(Op.DELETE_VOLUME):
        assert isinstance(step.old, Disk)
        storage.delete_volume(ctx.hv, vm.name, step.old.pool, step.old.volume(vm.name))
    for step in action.writing(Op.DELETE_SEED):
        storage.remove_seed(ctx.hv, vm.name, str(step.old))
    ctx.hv.undefine(vm.name)
    did.append(Deed(Did.DESTROYED))


# Steps carried out by rewriting the persistent definition (everything but the power state).
_NOT_DEFINED = (Op.START, Op.STOP)


def update(action: Action, want: DesiredVM, have: LiveVM, ctx: Context,
           did: list[Deed]) -> list[str]:
    """Grow and reuse volumes; persist the new config with the record of the work under way;
    make the new volumes and the seed; change the running VM; stop, start or restart; delete
    what the steps delete once the VM holds it no more. Returns pending-restart causes."""
    hv, spec, name = ctx.hv, want.spec, want.spec.name
    running = have.running
    pending: list[str] = []
    unplugged: list[str] = []  # the devices the guest has not released
    if action.has(Op.RESUME):  # paused by someone: running again first
        hv.resume(name)
        did.append(Deed(Did.RESUMED))
    live_before = xmlcommon.parse(hv.domain_xml(name, inactive=False)) if running else None
    # Grown (and reused) before the new mark records the sizes: a recorded size is trusted
    # later (a stopped VM's volume whose manifest size is the recorded one is not read again).
    for step in action.writing(Op.REUSE_VOLUME):
        assert isinstance(step.new, Disk)
        storage.reuse_volume(hv, name, step.new)
    disks = {disk.name: disk for disk in spec.disks}
    for step in action.writing(Op.GROW_VOLUME):
        _grow(hv, name, disks[step.target.key], live_root=live_before)
    entries = vm_pending.record(action)
    record = _Record(ctx, want, have.mark.pending if have.mark else ())
    if any(s.writes and s.op not in _NOT_DEFINED for s in action.steps):
        targets = {s.new.volume(name): s.device for s in action.writing(Op.ATTACH_DISK)
                   if isinstance(s.new, Disk) and s.device}
        hv.define(domainxml.edit_config(hv.domain_xml(name), spec,
                                        mark=ctx.mark(want, entries), targets=targets))
        record.written = entries
    record.write(entries)
    _make(action, spec, ctx)
    entries = vm_pending.without(entries, CREATE, WRITE)
    record.write(entries)  # made: a volume the VM may use from now on follows its reclaim
    if action.has(Op.SET_AUTOSTART):
        hv.set_autostart(name, spec.autostart)
    if running and live_before is not None:
        config_root = xmlcommon.parse(hv.domain_xml(name))
        unplugged = devices.hotplug(hv, action, config_root, live_before)
        pending += unplugged
        entries = vm_pending.without(entries, UNPLUG)  # sent: what is left waits for the guest
        if not action.restart:
            change = devices.live_resources(hv, action, have, ctx.clock)
            if change.balloon is None:
                pending += devices.finish(hv, change)
            else:
                ctx.settling.append(change)  # its balloon is watched with the others
    if have.config.cloud_init and action.has(Op.DETACH_SEED) and live_before is not None:
        pending += devices.eject_seed(hv, name, live_before)
    did += changed(action, running=running, released=not unplugged)
    if action.restart:
        stop(name, spec.shutdown_timeout, ctx, did)
        pending = start(spec, ctx, did)  # a fresh boot: earlier live causes are gone
    elif action.has(Op.STOP):
        stop(name, spec.shutdown_timeout, ctx, did)
    elif action.has(Op.START):
        pending += start(spec, ctx, did)
    # Volumes go last: after a stop or restart the VM holds none of them.
    entries, kept = _delete(action, have, entries, ctx)
    record.write(entries)
    return pending + kept


# What the steps did besides the power state: live on the running VM, or to its definition.
_RESIZES = frozenset({Op.SET_VCPUS, Op.SET_MEMORY, Op.GROW_VOLUME})
_PLUGS = frozenset({Op.ATTACH_DISK, Op.DETACH_DISK, Op.ATTACH_NIC, Op.DETACH_NIC,
                    Op.ATTACH_SEED, Op.DETACH_SEED, Op.RECONNECT_NIC})
_UNPLUGS = frozenset({Op.DETACH_DISK, Op.DETACH_NIC, Op.DETACH_SEED})
_POWER = frozenset({Op.START, Op.STOP, Op.RESUME})
_BOOKKEEPING = frozenset({Op.SET_SPEC_HASH, Op.SET_MANIFEST, Op.FINISH})


def changed(action: Action, *, running: bool, released: bool = True) -> list[Deed]:
    """What an update's carried-out steps did, but the power state: ``resized live`` and
    ``hot-plugged`` for live steps on a running VM (an unplug only when the guest
    ``released`` the device), ``updated`` for the rest of the definition. Only the tool's own
    records changed: ``updated``, unless the power state changes (what the records follow)."""
    steps = [s for s in action.steps if s.writes and s.op not in _POWER]
    live = running and not action.restart
    did = []
    if live and any(s.op in _RESIZES and s.effect == Effect.LIVE for s in steps):
        did.append(Deed(Did.RESIZED_LIVE))
    plugged = [s for s in steps if live and s.op in _PLUGS and s.effect == Effect.LIVE
               and (released or s.op not in _UNPLUGS)]
    if plugged:
        did.append(Deed(Did.HOTPLUGGED))
    rest = [s for s in steps if s.op not in _BOOKKEEPING | words.VOLUME_OPS and not (
        live and s.effect == Effect.LIVE and s.op in _RESIZES | _PLUGS)]
    power = action.restart or action.has(*_POWER)
    if rest or (steps and not did and not power):
        did.insert(0, Deed(Did.UPDATED))
    return did


def _delete(action: Action, have: LiveVM, entries: tuple[Pending, ...],
            ctx: Context) -> tuple[tuple[Pending, ...], list[str]]:
    """Delete the volumes and seeds the steps delete, but a disk's volume the running VM still
    holds: it stays recorded, and is deleted by the first run after the VM let it go. (A seed
    is read only at boot, and a SATA CD-ROM cannot be unplugged: its volume is deleted at
    once.) Returns the record left, and why a volume was kept."""
    hv, name = ctx.hv, action.name
    held: set[tuple[str, str]] = set()  # (pool, volume) of the running definition's disks
    if hv.domain_state(name)[0]:
        after = xmlcommon.parse(hv.domain_xml(name, inactive=False))
        held = set(volume_keys(after, device="disk"))
    kept = []
    for step in action.writing(Op.DELETE_VOLUME):
        disk = step.old
        assert isinstance(disk, Disk)
        volume = disk.volume(name)
        if (disk.pool, volume) in held:  # the guest has not released it: never deleted in use
            kept.append(f"volume {volume} kept: the running VM still holds disk {disk.name}; "
                        "it is deleted once the VM has restarted")
            continue
        storage.delete_volume(hv, name, disk.pool, volume)
        entries = tuple(p for p in entries if (p.op, p.part, p.key) != (DELETE, DISK, disk.name))
    old_seed = have.config.cloud_init
    pools = [old_seed.pool] if old_seed and action.has(Op.DETACH_SEED) else []
    pools += [str(s.old) for s in action.writing(Op.MOVE_SEED, Op.DELETE_SEED)]
    for pool in pools:
        storage.remove_seed(hv, name, pool)
        entries = tuple(p for p in entries if (p.op, p.part, p.pool) != (DELETE, SEED, pool))
    return entries, kept


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
