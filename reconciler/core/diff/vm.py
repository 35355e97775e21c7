"""Desired VMs against live domains: their actions. Pure: no libvirt, no files, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconciler.core.diff import vm_pending as pending
from reconciler.core.diff import vm_resources as fields
from reconciler.core.diff.guards import DEFAULT_GUARDS, Guards, held_back, pruning
from reconciler.core.model.vm import DesiredVM, LiveVM, PowerState, simple_fields
from reconciler.core.plan import (
    Action,
    Effect,
    Kind,
    Op,
    Part,
    Plan,
    Reason,
    Step,
    Why,
    fingerprint,
    vm_target,
)


def plan(desired: Iterable[DesiredVM], live: Iterable[LiveVM],
         guards: Guards = DEFAULT_GUARDS, *, read: Mapping[str, str] | None = None,
         desired_empty: bool | None = None) -> Plan:
    """The actions that bring ``live`` to ``desired``. ``read``: digests of what was read of
    each domain, for the fingerprint (see ``plan.fingerprint``). ``desired_empty``: whether
    the whole manifest set declares no VM (a targeted run diffs part of it); None: whether
    ``desired`` is empty. Pure."""
    desired = tuple(desired)
    live = tuple(live)
    live_by_name = {vm.name: vm for vm in live}
    actions: list[Action] = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        have = live_by_name.get(want.spec.name)
        if have is None:
            action = create(want)
        elif not have.managed:
            action = _unmanaged(want, have)
        else:
            action = update(want, have)
            if not (action.steps or action.restart or action.kind == Kind.BLOCKED):
                continue
        actions.append(_suspended(action) if want.suspend else action)
    wanted = {d.spec.name for d in desired}
    orphans = sorted((vm for vm in live if vm.managed and vm.name not in wanted),
                     key=lambda v: v.name)
    empty = not desired if desired_empty is None else desired_empty
    actions.extend(_destroys(orphans, guards, desired_empty=empty))
    return Plan(tuple(actions), fingerprint(live, read), guards.problems)


def create(want: DesiredVM) -> Action:
    """Volumes (and the seed) first, then the definition, autostart and the start."""
    spec = want.spec
    me = vm_target(spec.name)
    steps = [Step(Op.ATTACH_DISK, vm_target(spec.name, Part.DISK, d.name), None, d)
             for d in spec.disks]
    steps += [Step(Op.ATTACH_NIC, vm_target(spec.name, Part.NIC, n.mac or ""), None, n)
              for n in spec.nics]
    if spec.cloud_init:
        steps.append(Step(Op.ATTACH_SEED, vm_target(spec.name, Part.SEED), None,
                          spec.cloud_init.digest))
    if spec.autostart:
        steps.append(Step(Op.SET_AUTOSTART, me, False, True))
    if spec.state == PowerState.RUNNING:
        steps.append(Step(Op.START, me, effect=Effect.LIVE))
    return Action(Kind.CREATE, me, tuple(steps), desired=want)


def _suspended(action: Action) -> Action:
    """What a suspended VM's manifest asks for, shown and not done (an operator at work on the
    VM: no create, update, restart or drift repair). What writes nothing (a conflict, a pending
    restart, a refusal) stays as it is. Pure."""
    if not action.writes:
        return action
    return Action(Kind.BLOCKED, action.target, action.steps, Reason(Why.SUSPENDED),
                  restart=action.restart, desired=action.desired, live=action.live)


def _unmanaged(want: DesiredVM, have: LiveVM) -> Action:
    """A domain with the manifest's name that the tool did not create: a conflict, unless the
    manifest asks to adopt it (annotation reconciler/adopt) and matches it exactly; then only
    the mark is recorded. Settings of the tool's own (protect, ...) live in the mark. Pure."""
    me = vm_target(want.spec.name)
    if not want.adopt:
        return Action(Kind.BLOCKED, me, reason=Reason(Why.CONFLICT), desired=want, live=have)
    if have.owner is not None:
        return Action(Kind.BLOCKED, me, reason=Reason(Why.OTHER_INSTANCE, names=(have.owner,)),
                      desired=want, live=have)
    steps = update(want, have).steps
    differences = tuple(s for s in steps if not s.op.recorded_only)
    if differences:
        return Action(Kind.BLOCKED, me, reason=Reason(Why.ADOPT_MISMATCH, steps=differences),
                      desired=want, live=have)
    adopt = Step(Op.ADOPT, me, None, want.source.relative)
    return Action(Kind.UPDATE, me, (adopt, *steps), desired=want, live=have)


def _destroys(orphans: list[LiveVM], guards: Guards, *, desired_empty: bool) -> list[Action]:
    if not orphans:  # (a fleet's host: ``guards.elsewhere`` holds every other host's VMs)
        return []
    elsewhere = {vm: (host, why) for vm, host, why in guards.elsewhere}
    leaving = [vm for vm in orphans if vm.name in elsewhere]
    orphans = [vm for vm in orphans if vm.name not in elsewhere]
    kept = {vm.name: reason for vm in orphans
            if (reason := pruning(guards, vm.name, vm.uuid)) is not None}
    unprotected = [vm for vm in orphans if not _protected(vm)
                   and not (vm.mark and vm.mark.corrupt) and vm.name not in kept]
    hold = held_back(guards, desired_empty=desired_empty, destroys=len(unprotected))
    actions = []
    for vm in orphans:
        me = vm_target(vm.name)
        if vm.mark and vm.mark.corrupt:
            actions.append(Action(Kind.BLOCKED, me, reason=Reason(Why.CORRUPT_MARK), live=vm))
        elif _protected(vm):
            actions.append(Action(Kind.BLOCKED, me, reason=Reason(Why.PROTECTED), live=vm))
        elif hold is not None:
            actions.append(Action(Kind.BLOCKED, me, reason=hold, live=vm))
        elif vm.name in kept:  # the prune policy: pending approval, or never
            actions.append(Action(Kind.BLOCKED, me, reason=kept[vm.name], live=vm))
        else:
            actions.append(Action(Kind.DESTROY, me, destroy_steps(vm), live=vm))
    for vm in leaving:  # placed on another host (or, for now, on none): never destroyed here
        host, why = elsewhere[vm.name]
        reason = Reason(Why.LEAVING, names=(host,)) if host else Reason(Why.UNPLACED,
                                                                         names=(why,))
        actions.append(Action(Kind.BLOCKED, vm_target(vm.name), reason=reason, live=vm))
    return sorted(actions, key=lambda a: a.name)


def _protected(vm: LiveVM) -> bool:
    return bool(vm.mark and vm.mark.applied.get("protect"))


def destroy_steps(vm: LiveVM) -> tuple[Step, ...]:
    """Stop (graceful, then forced), each volume as its reclaim says (a volume whose create an
    interrupted apply never finished is deleted: the guest never had it), the seed, the volumes
    an interrupted update was to delete, then undefine: last, so that a destroy interrupted
    before it is still a marked domain without a manifest, destroyed again by the next run."""
    me = vm_target(vm.name)
    steps = [Step(Op.STOP, me, effect=Effect.LIVE)] if vm.running else []
    creating = pending.Recorded.of(vm).creating
    for disk in vm.config.disks:
        gone = replace(disk, reclaim="delete") if disk.name in creating else disk
        op = Op.DELETE_VOLUME if gone.reclaim == "delete" else Op.KEEP_VOLUME
        steps.append(Step(op, vm_target(vm.name, Part.DISK, disk.name), gone, None))
    if vm.config.cloud_init:
        steps.append(Step(Op.DELETE_SEED, vm_target(vm.name, Part.SEED),
                          vm.config.cloud_init.pool, None))
    steps += pending.destroy_steps(vm)
    steps.append(Step(Op.UNDEFINE, me))
    return tuple(steps)


def update(want: DesiredVM, have: LiveVM) -> Action:
    """The steps that make one managed domain match its manifest. Pure."""
    d, cfg = want.spec, have.config
    me = vm_target(d.name)
    wants_running = d.state == PowerState.RUNNING
    # A VM about to be stopped takes every change at its next start: plan it as a stopped one.
    running = have.running and wants_running
    unfinished = pending.Recorded.of(have)  # what an interrupted apply left
    steps: list[Step] = []
    steps += fields.scalars(d, have, running=running)
    steps += fields.disks(d, have, running=running, creating=unfinished.creating)
    steps += fields.nics(d, cfg, running=running)
    steps += fields.seed(d, cfg, running=running, rewrite=unfinished.rewrite)
    if running:
        steps += fields.device_gaps(d, have, unfinished.unplugging,
                                    unfinished.deleted_disks)
    if d.autostart != cfg.autostart:
        steps.append(Step(Op.SET_AUTOSTART, me, cfg.autostart, d.autostart))
    if d.firmware != cfg.firmware:
        steps.append(Step(Op.SET_FIRMWARE, me, cfg.firmware, d.firmware,
                          Effect.RESTART if running else Effect.CONFIG))
    if d.boot != cfg.boot:
        steps.append(Step(Op.SET_BOOT, me, cfg.boot, d.boot))
    for f in simple_fields():
        old, new = getattr(cfg, f.name), getattr(d, f.name)
        if old != new:
            effect = Effect.RESTART if running and f.metadata["restart"] else Effect.CONFIG
            target = vm_target(d.name, Part.FIELD, f.metadata["manifest"])
            steps.append(Step(Op.SET_FIELD, target, old, new, effect))
    if d.graphics != cfg.graphics:
        steps.append(Step(Op.SET_GRAPHICS, me, cfg.graphics, d.graphics,
                          Effect.RESTART if running else Effect.CONFIG))
    recorded: tuple[tuple[Op, int | str | bool, int | str | bool], ...] = (
        (Op.SET_UPDATE_POLICY, cfg.update_policy, d.update_policy),
        (Op.SET_SHUTDOWN_TIMEOUT, cfg.shutdown_timeout, d.shutdown_timeout),
        (Op.SET_PROTECT, cfg.protect, d.protect),
    )
    steps += [Step(op, me, old, new) for op, old, new in recorded if old != new]
    finishing, waiting = pending.steps(d, have)
    steps += finishing
    mark = have.mark
    if mark and mark.manifest != want.source.relative:
        steps.append(Step(Op.SET_MANIFEST, me, mark.manifest, want.source.relative))
    if mark and not any(s.effect != Effect.PENDING for s in steps) and (
        mark.spec_hash != want.spec_hash
    ):
        steps.append(Step(Op.SET_SPEC_HASH, me, mark.spec_hash, want.spec_hash))
    if wants_running and not have.running:
        steps.append(Step(Op.START, me, effect=Effect.LIVE))
    elif have.running and not wants_running:
        steps.append(Step(Op.STOP, me, effect=Effect.LIVE))
    restart = (
        running and d.update_policy == "restart"
        and any(fields.restart_finishes(s) for s in steps)
        and not any(s.effect == Effect.REFUSED for s in steps)
    )
    if restart:  # the restart releases the disks whose volumes wait to be deleted
        steps += waiting
    return _in_state(Action(Kind.UPDATE, me, tuple(steps), restart=restart, desired=want,
                            live=have))


# The one paused state the tool ends itself: paused by someone (virsh suspend). QEMU pauses a
# guest for reasons (an I/O error, a watchdog, a KVM internal error: "unknown", a migration or
# snapshot in flight) that resuming would hide, or that resuming cannot end.
_PAUSED_BY_USER = ("user",)


def _in_state(action: Action) -> Action:
    """The action as the domain's state allows (libvirt's virDomainState and its reason):
    - paused by someone (``virsh suspend``) while the manifest wants it running: resumed;
    - paused by QEMU (I/O error, watchdog, migration, ...), crashed, PM-suspended by the guest,
      or shutting down: blocked, saying so; nothing is changed;
    - shut off with a managed-save image: a start resumes the image with its old
      configuration, so any change to the definition is blocked until the image is removed;
    - running but transient (undefined by hand): defined again first. Pure."""
    have, want = action.live, action.desired
    assert isinstance(have, LiveVM) and isinstance(want, DesiredVM)
    me = action.target
    steps = list(action.steps)
    wants_running = want.spec.state == PowerState.RUNNING
    if have.state == "paused" and have.reason in _MIGRATING:
        # a migration in flight (incoming or outgoing): nothing is done to it, whatever the
        # manifest asks, until libvirt has finished it
        return replace(action, kind=Kind.BLOCKED,
                       reason=Reason(Why.DOMAIN_STATE, names=(have.state, have.reason)))
    if have.state == "paused" and have.reason in _PAUSED_BY_USER:
        if wants_running:
            steps.insert(0, Step(Op.RESUME, me, effect=Effect.LIVE))
    elif have.state in ("paused", "crashed", "suspended", "shutting down") and wants_running:
        return replace(action, kind=Kind.BLOCKED,
                       reason=Reason(Why.DOMAIN_STATE, names=(have.state, have.reason)))
    if have.managed_save and not have.running and any(
            s.writes and s.op not in (Op.START, Op.STOP) for s in steps):
        return replace(action, kind=Kind.BLOCKED, reason=Reason(Why.MANAGED_SAVE))
    if not have.persistent:
        steps.insert(0, Step(Op.DEFINE, me, "transient", "persistent"))
    return replace(action, steps=tuple(steps))


# libvirt's paused reasons while a domain migrates (VIR_DOMAIN_PAUSED_MIGRATION,
# _POSTCOPY, _POSTCOPY_FAILED, _STARTING_UP for an incoming one), as ``states`` spells them
_MIGRATING = frozenset({"migration", "postcopy", "postcopy failed", "starting up"})
