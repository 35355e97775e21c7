"""Desired against live: the plan. Pure: no libvirt, no files, no clock."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.cloudinit import seed_volume
from reconciler.core.diff.guards import DEFAULT_GUARDS, Guards
from reconciler.core.model.vm import DesiredVM, LiveVM, PowerState, VMSpec
from reconciler.core.plan import SUSPENDED, Action, Change, Kind, Mode, Plan, fingerprint
from reconciler.core.units import format_bytes, format_duration
from reconciler.core.xml.domain import match_nics


def _size(size: int) -> str:
    return "missing" if size < 0 else format_bytes(size)


def plan(desired: Iterable[DesiredVM], live: Iterable[LiveVM],
         guards: Guards = DEFAULT_GUARDS) -> Plan:
    """The actions that bring ``live`` to ``desired``. Pure."""
    desired = tuple(desired)
    live = tuple(live)
    live_by_name = {vm.name: vm for vm in live}
    actions: list[Action] = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        have = live_by_name.get(want.spec.name)
        if have is None:
            action = Action(Kind.CREATE, want.spec.name, desired=want)
        elif not have.managed:
            action = _unmanaged(want, have)
        else:
            action = update(want, have)
            if not (action.changes or action.restart):
                continue
        actions.append(_suspended(action) if want.suspend else action)
    wanted = {d.spec.name for d in desired}
    orphans = sorted((vm for vm in live if vm.managed and vm.name not in wanted),
                     key=lambda v: v.name)
    actions.extend(_destroys(orphans, guards, desired_empty=not desired))
    return Plan(tuple(actions), fingerprint(live), guards.problems)


def _suspended(action: Action) -> Action:
    """What a suspended VM's manifest asks for, shown and not done (an operator at work on the
    VM: no create, update, restart or drift repair). What writes nothing (a conflict, a pending
    restart, a refusal) stays as it is. Pure."""
    if not action.writes:
        return action
    what = "not created" if action.kind == Kind.CREATE else "left as it is"
    return Action(Kind.BLOCKED, action.name, action.changes, restart=action.restart,
                  desired=action.desired, live=action.live,
                  reason=f"{SUSPENDED}: {what} until the annotation is removed")


def _unmanaged(want: DesiredVM, have: LiveVM) -> Action:
    """A domain with the manifest's name that the tool did not create: a conflict, unless the
    manifest asks to adopt it (annotation reconciler/adopt) and matches it exactly; then only
    the mark is recorded. Settings of the tool's own (protect, ...) live in the mark. Pure."""
    name = want.spec.name
    if not want.adopt:
        return Action(Kind.BLOCKED, name, desired=want, live=have,
                      reason="conflict: a domain with this name exists but was not created by "
                             "reconciler; it is left alone (rename the manifest, or remove or "
                             "adopt the domain)")
    if have.owner is not None:
        return Action(Kind.BLOCKED, name, desired=want, live=have,
                      reason=f"conflict: the domain is managed by another reconciler instance "
                             f"({have.owner}); it is left alone and cannot be adopted")
    changes = update(want, have).changes
    differences = [c for c in changes if not _recorded_only(c)]
    if differences:
        listed = ", ".join(_difference(c) for c in differences)
        return Action(Kind.BLOCKED, name, desired=want, live=have,
                      reason=f"adopt refused: {listed}; make the manifest match the domain first")
    adopt = Change("adopt", None, want.source.relative, Mode.CONFIG, "record the mark")
    return Action(Kind.UPDATE, name, (adopt, *changes), desired=want, live=have)


def _recorded_only(change: Change) -> bool:
    """A setting kept in the tool's mark only, not in the domain."""
    return change.field in ("updatePolicy", "shutdownTimeout", "protect") or (
        change.field.startswith("disk ") and change.field.endswith(" reclaim"))


def _difference(change: Change) -> str:
    if change.note.startswith("add"):
        return f"{change.field} {change.new}: not on the domain"
    if change.note.startswith("remove"):
        return f"{change.field} {change.old}: not in the manifest"
    return f"{change.field} {change.old} -> {change.new}"


def _destroys(orphans: list[LiveVM], guards: Guards, *, desired_empty: bool) -> list[Action]:
    held_back = guards.hold_destroys
    if held_back:
        pass
    elif guards.problems:
        held_back = (f"not destroyed: {guards.problems} manifest problem(s) in this run; "
                     "nothing is destroyed until every manifest is valid")
    elif desired_empty and not guards.allow_empty:
        held_back = ("not destroyed: the manifest set is empty; pass --allow-empty to remove "
                     "every managed VM")
    unprotected = [vm for vm in orphans
                   if not _protected(vm) and not (vm.mark and vm.mark.corrupt)]
    if not held_back and len(unprotected) > guards.max_destroy:
        held_back = (f"not destroyed: {len(unprotected)} VMs would be destroyed, more than "
                     f"--max-destroy {guards.max_destroy}; raise it if this is intended")
    actions = []
    for vm in orphans:
        if vm.mark and vm.mark.corrupt:
            actions.append(Action(Kind.BLOCKED, vm.name, live=vm,
                                  reason="not destroyed: its reconciler metadata is unreadable "
                                         "(edited by hand?); remove the domain by hand if "
                                         "intended"))
        elif _protected(vm):
            actions.append(Action(Kind.BLOCKED, vm.name, live=vm,
                                  reason="not destroyed: protect is true in its last applied "
                                         "spec; apply a manifest with protect: false first"))
        elif held_back:
            actions.append(Action(Kind.BLOCKED, vm.name, live=vm, reason=held_back))
        else:
            actions.append(Action(Kind.DESTROY, vm.name, live=vm, reason=_volume_fate(vm)))
    return actions


def _protected(vm: LiveVM) -> bool:
    return bool(vm.mark and vm.mark.applied.get("protect"))


def _volume_fate(vm: LiveVM) -> str:
    kept = [d.volume(vm.name) for d in vm.config.disks if d.reclaim != "delete"]
    gone = [d.volume(vm.name) for d in vm.config.disks if d.reclaim == "delete"]
    parts = []
    if kept:
        parts.append(f"volumes retained: {', '.join(kept)}")
    if gone:
        parts.append(f"volumes deleted: {', '.join(gone)}")
    if vm.config.cloud_init:
        parts.append(f"seed volume deleted: {seed_volume(vm.name)}")
    return "; ".join(parts) or "no volumes"


def update(want: DesiredVM, have: LiveVM) -> Action:
    """The changes that make one managed domain match its manifest. Pure."""
    d, cfg = want.spec, have.config
    wants_running = d.state == PowerState.RUNNING
    # A VM about to be stopped takes every change at its next start: plan it as a stopped one.
    running = have.running and wants_running
    changes: list[Change] = []
    changes += _scalar_changes(d, have, running=running)
    changes += _disk_changes(d, cfg, running=running)
    changes += _nic_changes(d, cfg, running=running)
    changes += _cloud_init_changes(d, cfg, running=running)
    if running:
        changes += _live_device_gaps(d, have)
    if d.autostart != cfg.autostart:
        changes.append(Change("autostart", _b(cfg.autostart), _b(d.autostart), Mode.CONFIG))
    if d.firmware != cfg.firmware:
        changes.append(Change("firmware", cfg.firmware, d.firmware,
                              Mode.RESTART if running else Mode.CONFIG,
                              "the guest OS must support the new firmware"))
    if d.boot != cfg.boot:
        changes.append(Change("boot", ",".join(cfg.boot), ",".join(d.boot), Mode.CONFIG,
                              "used from the next boot"))
    if d.graphics != cfg.graphics:
        changes.append(Change("graphics", cfg.graphics, d.graphics,
                              Mode.RESTART if running else Mode.CONFIG))
    for field, old, new in (
        ("updatePolicy", cfg.update_policy, d.update_policy),
        ("shutdownTimeout", format_duration(cfg.shutdown_timeout),
         format_duration(d.shutdown_timeout)),
        ("protect", _b(cfg.protect), _b(d.protect)),
    ):
        if old != new:
            changes.append(Change(field, old, new, Mode.CONFIG))
    mark = have.mark
    if mark and mark.manifest != want.source.relative:
        changes.append(Change("manifest", mark.manifest, want.source.relative, Mode.CONFIG))
    if mark and not any(c.mode != Mode.PENDING for c in changes) and (
        mark.spec_hash != want.spec_hash
    ):
        changes.append(Change("recorded spec", mark.spec_hash, want.spec_hash, Mode.CONFIG))
    if wants_running != have.running:
        changes.append(Change("state", "running" if have.running else "stopped", str(d.state),
                              Mode.LIVE))
    restart = (
        running and wants_running and d.update_policy == "restart"
        and any(_restart_finishes(c) for c in changes)
        and not any(c.mode == Mode.REFUSED for c in changes)
    )
    return Action(Kind.UPDATE, d.name, tuple(changes), restart=restart, desired=want, live=have)


def _scalar_changes(d: VMSpec, have: LiveVM, *, running: bool) -> list[Change]:
    """vcpus, memory and their maxima: the persistent config, then the running values."""
    cfg, hold = have.config, have.hold
    out = []
    rows = (
        ("maxVcpus", cfg.max_vcpus, have.live_max_vcpus, d.max_vcpus, str),
        ("maxMemory", cfg.max_memory, have.live_max_memory, d.max_memory, format_bytes),
    )
    restart_needed = {}
    for field, config, live, desired, show in rows:
        live_differs = running and live is not None and live != desired
        restart_needed[field] = live_differs
        if config != desired:
            mode = Mode.RESTART if live_differs else Mode.CONFIG
            out.append(Change(field, show(config), show(desired), mode))
        elif live_differs:
            out.append(Change(field, show(live), show(desired), Mode.PENDING))
    live_rows = (
        ("vcpus", cfg.vcpus, have.live_vcpus, d.vcpus, "maxVcpus", hold and hold.vcpus,
         hold and hold.seen_vcpus, str),
        ("memory", cfg.memory, have.live_memory, d.memory, "maxMemory", hold and hold.memory,
         hold and hold.seen_memory, format_bytes),
    )
    for field, config, live, desired, limit, held, seen, show in live_rows:
        if not running or live is None:
            if config != desired:
                out.append(Change(field, show(config), show(desired), Mode.CONFIG))
            continue
        running_limit = (have.live_max_vcpus if field == "vcpus" else have.live_max_memory) or 0
        if restart_needed[limit] and desired > running_limit:
            if config != desired or live != desired:
                # Once persisted, the value only waits for the restart: nothing left to write.
                mode = Mode.RESTART if config != desired else Mode.PENDING
                out.append(Change(field, show(live), show(desired), mode,
                                  f"above the running {limit}"))
            continue
        if live == desired:
            if config != desired:
                out.append(Change(field, show(config), show(desired), Mode.CONFIG))
        elif held == desired and config == desired and seen in (None, live):
            # Not taken up, and the VM still runs with what it had then: waits for a restart.
            # (A live value that moved since - taken up late, changed by hand - is diffed again.)
            note = hold.reason if hold else ""
            out.append(Change(field, show(live), show(desired), Mode.PENDING, note))
        else:
            out.append(Change(field, show(live), show(desired), Mode.LIVE))
    return out


def _disk_changes(d: VMSpec, cfg: VMSpec, *, running: bool) -> list[Change]:
    out = []
    have = {disk.name: disk for disk in cfg.disks}
    hot = Mode.LIVE if running else Mode.CONFIG
    for disk in d.disks:
        old = have.pop(disk.name, None)
        label = f"disk {disk.name}"
        if old is None:
            out.append(Change(label, None, _size(disk.size), hot, "add"))
            continue
        if old.size < 0:
            out.append(Change(label, "missing", _size(disk.size), Mode.REFUSED,
                              f"volume {disk.volume(d.name)} not found in pool {old.pool}; "
                              "restore it, or remove the disk from the manifest"))
            continue
        if (old.pool, old.format) != (disk.pool, disk.format):
            out.append(Change(label, f"{old.pool}/{old.format}", f"{disk.pool}/{disk.format}",
                              Mode.REFUSED, "a disk cannot move to another pool or format; "
                              "add a new disk instead"))
        if disk.size < old.size:
            out.append(Change(label, _size(old.size), _size(disk.size),
                              Mode.REFUSED, "shrinking a disk would lose data; "
                              "keep the size or add a new disk"))
        elif disk.size > old.size:
            out.append(Change(label, _size(old.size), _size(disk.size), hot,
                              "grow"))
        if old.bus != disk.bus:
            out.append(Change(f"{label} bus", old.bus, disk.bus,
                              Mode.RESTART if running else Mode.CONFIG))
        if old.reclaim != disk.reclaim:
            out.append(Change(f"{label} reclaim", old.reclaim, disk.reclaim, Mode.CONFIG))
    for old in have.values():
        fate = "volume deleted" if old.reclaim == "delete" else "volume retained"
        out.append(Change(f"disk {old.name}", _size(old.size), None, hot,
                          f"remove, {fate}"))
    return out


def _nic_changes(d: VMSpec, cfg: VMSpec, *, running: bool) -> list[Change]:
    _, remove, add = match_nics(d.nics, cfg.nics)
    hot = Mode.LIVE if running else Mode.CONFIG
    out = [Change(f"nic {n.mac}" if n.mac else "nic", None, f"{n.source} ({n.model})", hot, "add")
           for n in add]
    out += [Change(f"nic {n.mac}", f"{n.source} ({n.model})", None, hot, "remove")
            for n in remove]
    return out


def _cloud_init_changes(d: VMSpec, cfg: VMSpec, *, running: bool) -> list[Change]:
    """The seed, compared by the short hash of its files (never by content). cloud-init reads
    it only at boot: a running VM takes a new seed at its next start. Its removal ejects it."""
    want, have = d.cloud_init, cfg.cloud_init
    boot = Mode.RESTART if running else Mode.CONFIG
    if want is None and have is None:
        return []
    if have is None:
        assert want is not None
        return [Change("cloudInit", None, want.digest, boot, "add")]
    if want is None:
        return [Change("cloudInit", have.digest or "unknown", None,
                       Mode.LIVE if running else Mode.CONFIG, "remove, seed volume deleted")]
    out = []
    if want.digest != have.digest:
        out.append(Change("cloudInit", have.digest or "unknown", want.digest, boot))
    if want.pool != have.pool:
        out.append(Change("cloudInit pool", have.pool, want.pool, boot))
    return out


def _live_device_gaps(d: VMSpec, have: LiveVM) -> list[Change]:
    """Devices the persistent config already agrees on but the running VM does not: a hot-plug
    to retry, or an unplug the guest has not done (it waits for a restart)."""
    out: list[Change] = []
    cfg = have.config
    if have.live_disks is not None:
        in_config = {disk.name for disk in cfg.disks}
        live = {disk.name: disk for disk in have.live_disks}
        wanted = {disk.name for disk in d.disks}
        out += [Change(f"disk {disk.name}", None, _size(disk.size), Mode.LIVE,
                       "add: not plugged into the running VM")
                for disk in d.disks if disk.name in in_config and disk.name not in live]
        out += [Change(f"disk {name}", _size(disk.size), None, Mode.PENDING,
                       "remove: the guest has not released it")
                for name, disk in live.items() if name not in wanted and name not in in_config]
    if have.live_nics is not None and not _nic_changes(d, cfg, running=True):
        _, remove, add = match_nics(d.nics, have.live_nics)
        out += [Change(f"nic {n.mac}" if n.mac else "nic", None, f"{n.source} ({n.model})",
                       Mode.LIVE, "add: not plugged into the running VM") for n in add]
        out += [Change(f"nic {n.mac}", f"{n.source} ({n.model})", None, Mode.PENDING,
                       "remove: the guest has not released it") for n in remove]
    return out


def _restart_finishes(change: Change) -> bool:
    """Whether restarting the VM completes ``change``. A restart cannot make a guest take up a
    balloon target (QEMU boots with maxMemory), so a held balloon never asks for one."""
    if change.mode == Mode.RESTART:
        return True
    if change.mode != Mode.PENDING:
        return False
    return not (change.field == "memory" and not change.note.startswith("above"))


def _b(value: bool) -> str:
    return "true" if value else "false"
