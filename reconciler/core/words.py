"""The plan's words: each step's field, values and note, and each reason, as plans, results and
status show them. With ``render`` the only code that turns plan values into text. Pure."""

from __future__ import annotations

import json

from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.network import IPv4
from reconciler.core.model.vm import Disk, Nic, VolumeInfo, volume_name
from reconciler.core.plan import Action, Cause, Effect, Kind, Op, Part, Resource, Step, Value, Why
from reconciler.core.refusals import refusal
from reconciler.core.units import format_bytes, format_duration

SUSPENDED = "suspended (annotation reconciler/suspend)"


# Each step's field as a manifest names it; parts add their key ("disk root", "nic <mac>").
_FIELD = {
    Op.SET_VCPUS: "vcpus", Op.SET_MAX_VCPUS: "maxVcpus", Op.SET_MEMORY: "memory",
    Op.SET_MAX_MEMORY: "maxMemory", Op.SET_AUTOSTART: "autostart", Op.SET_FIRMWARE: "firmware",
    Op.SET_BOOT: "boot", Op.SET_GRAPHICS: "graphics",
    Op.SET_UPDATE_POLICY: "updatePolicy", Op.SET_SHUTDOWN_TIMEOUT: "shutdownTimeout",
    Op.SET_PROTECT: "protect", Op.SET_MANIFEST: "manifest", Op.SET_SPEC_HASH: "recorded spec",
    Op.START: "state", Op.STOP: "state", Op.RESUME: "state", Op.DEFINE: "definition",
    Op.RECONNECT_NIC: "nic",
    Op.ADOPT: "adopt", Op.SET_BRIDGE: "bridge",
    Op.SET_FORWARD: "forward", Op.SET_IPV4: "ipv4", Op.MOVE_POOL: "path",
    Op.MOVE_SEED: "cloudInit pool", Op.SET_DISK_BUS: "bus", Op.SET_RECLAIM: "reclaim",
    Op.FINISH: "interrupted apply",
}


_SIZES = (Op.SET_MEMORY, Op.SET_MAX_MEMORY, Op.GROW_VOLUME, Op.SHRINK_VOLUME)


_NOTE = {
    Op.GROW_VOLUME: "grow",
    Op.MOVE_VOLUME: "a disk cannot move to another pool or format; add a new disk instead",
    Op.SHRINK_VOLUME: "shrinking a disk would lose data; keep the size or add a new disk",
    Op.SET_FIRMWARE: "the guest OS must support the new firmware",
    Op.SET_BOOT: "used from the next boot",
    Op.ADOPT: "record the mark",
    Op.SET_BRIDGE: "takes effect when the network restarts",
    Op.SET_FORWARD: "takes effect when the network restarts",
    Op.SET_IPV4: "takes effect when the network restarts",
    Op.MOVE_POOL: "a pool cannot move; declare a new pool instead",
    Op.DETACH_SEED: "remove, seed volume deleted",
}


_LIMIT = {Op.SET_VCPUS: "maxVcpus", Op.SET_MEMORY: "maxMemory"}


_VOLUME_WORK = {Op.CREATE_VOLUME: "create", Op.DELETE_VOLUME: "delete",
                Op.DELETE_SEED: "delete"}


_ATTACH = (Op.ATTACH_DISK, Op.ATTACH_NIC, Op.ATTACH_SEED)


_DETACH = (Op.DETACH_DISK, Op.DETACH_NIC, Op.DETACH_SEED)


def field_name(step: Step) -> str:
    """The manifest field a step changes: ``vcpus``, ``disk root``, ``disk root bus``,
    ``nic 52:54:00:12:34:56``, ``cloudInit``."""
    target = step.target
    if target.part == Part.FIELD:
        return target.key
    if step.op == Op.DEFINE and target.resource == Resource.POOL:
        return "path"
    if step.op == Op.DEFINE and target.resource == Resource.NETWORK:
        return "ipv4"
    part = {Part.DISK: f"disk {target.key}", Part.NIC: f"nic {target.key}".rstrip(),
            Part.SEED: "cloudInit"}.get(target.part)
    if part is None:
        return _FIELD.get(step.op, str(step.op))
    if step.op in (Op.SET_DISK_BUS, Op.SET_RECLAIM):
        return f"{part} {_FIELD[step.op]}"
    return _FIELD.get(step.op, part) if target.part == Part.SEED else part


def _size(size: int) -> str:
    return "missing" if size < 0 else format_bytes(size)


def _ipv4(value: IPv4 | None) -> str:
    if value is None:
        return "none"
    dhcp = f" dhcp {value.dhcp_start}-{value.dhcp_end}" if value.dhcp_start else ""
    return f"{value.address}/{value.prefix}{dhcp}"


def values(step: Step) -> tuple[str | None, str | None]:
    """A step's old and new values as plans show them (sizes in binary units, booleans
    lowercase, a lost volume as ``missing``, the power state as a word)."""
    if step.op == Op.RESUME:
        return "paused", "running"
    if step.op in (Op.START, Op.STOP):
        words = ("stopped", "running") if step.target.resource == Resource.VM else (
            "inactive", "active")
        return words if step.op == Op.START else (words[1], words[0])
    if step.op == Op.RESTORE_VOLUME:
        return "missing", value_text(step, step.new)
    return value_text(step, step.old), value_text(step, step.new)


def value_text(step: Step, value: Value) -> str | None:
    """One value of a step as plans show it."""
    if step.op == Op.SET_IPV4:
        return _ipv4(value if isinstance(value, IPv4) else None)
    if step.op == Op.SET_FIELD and isinstance(value, str):
        return json.dumps(value)  # free text, quoted: an empty one shows, a newline stays one
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, VolumeInfo):
        return _size(value.capacity)
    if isinstance(value, Disk):
        if step.op == Op.MOVE_VOLUME:
            return f"{value.pool}/{value.format}"
        return _size(value.size)
    if isinstance(value, Nic):
        return f"{value.source} ({value.model})"
    if isinstance(value, tuple):
        return ",".join(value)
    if isinstance(value, int) and step.op in _SIZES:
        return _size(value)
    if isinstance(value, int) and step.op == Op.SET_SHUTDOWN_TIMEOUT:
        return format_duration(value)
    if step.target.part == Part.SEED and step.op != Op.MOVE_SEED and value == "":
        return "unknown"  # the seed volume is gone: its content is not known
    return str(value)


def note(step: Step) -> str:
    """What a plan says beside a step: why it waits, is refused, or what else it does."""
    if step.cause == Cause.ABOVE_RUNNING_MAX:
        return f"above the running {_LIMIT[step.op]}"
    if step.cause == Cause.NOT_TAKEN_UP:
        return step.detail
    if step.cause == Cause.NOT_CONNECTED:
        return ("not connected: its network was restarted since the VM started; a restart of "
                "the VM reconnects it")
    if step.effect == Effect.REFUSED and step.cause is not None:
        return refusal(step)
    if step.op in _ATTACH:
        return "add: not plugged into the running VM" if step.cause == Cause.NOT_PLUGGED else "add"
    if step.cause == Cause.NOT_RELEASED:
        return "remove: the guest has not released it"
    if step.op == Op.DETACH_DISK and step.cause == Cause.IN_USE:
        return f"remove, volume kept: used by {', '.join(step.names)}"
    if step.op == Op.DETACH_DISK and isinstance(step.old, Disk):
        return ("remove, volume deleted" if step.old.reclaim == "delete"
                else "remove, volume retained")
    if step.op == Op.DETACH_NIC:
        return "remove"
    if step.op == Op.RESTORE_VOLUME and isinstance(step.old, Disk):
        return (f"volume {volume_name(step.target.name, step.old.name)} not found in pool "
                f"{step.old.pool}; restore it, or remove the disk from the manifest")
    return _NOTE.get(step.op, "")


# Steps on volumes that the field they serve already tells of (a disk's add or removal, a
# destroy): not listed as changes of their own.
VOLUME_OPS = frozenset({Op.CREATE_VOLUME, Op.REUSE_VOLUME, Op.DELETE_VOLUME, Op.KEEP_VOLUME,
                        Op.DELETE_SEED, Op.UNDEFINE})


def reuse_text(step: Step) -> str:
    """A retained volume taken up again by a disk (grown when smaller)."""
    volume = volume_name(step.target.name, step.target.key)
    old, new = step.old, step.new
    if isinstance(old, VolumeInfo) and isinstance(new, Disk) and old.capacity < new.size:
        return (f"volume {volume} reused, grown {format_bytes(old.capacity)} -> "
                f"{format_bytes(new.size)}")
    return f"volume {volume} reused"


def describe_step(step: Step, *, policy: str = "live", restarting: bool = False) -> str:
    field, (old, new) = field_name(step), values(step)
    why = note(step)
    if step.op == Op.ADOPT:
        return "adopt"
    if step.op == Op.FINISH and isinstance(step.old, tuple):
        return f"finish the interrupted apply ({', '.join(step.old)})"
    if step.op in _VOLUME_WORK:  # listed where a result says what is still to do
        return f"{field} volume ({_VOLUME_WORK[step.op]})"
    if step.op in _ATTACH:
        text = f"{field} {new} (add)"
    elif step.op in _DETACH:
        text = f"{field} ({why})"
    else:
        text = f"{field} {old} -> {new}"
    if step.effect == Effect.LIVE:
        return f"{text} (live)" if step.op not in (Op.START, Op.STOP, Op.RESUME) else text
    if step.effect == Effect.RESTART and step.target.resource != Resource.VM:
        return f"{text} (persisted; {why}) -- pending restart"
    if step.effect == Effect.RESTART:
        if restarting:
            return f"{text} (restart)"
        return f"{text} needs a restart (updatePolicy: {policy}) -- pending restart"
    if step.effect == Effect.PENDING:
        if restarting:
            return f"{text} (restart)"
        return f"{text} pending restart" + (f": {why}" if why else "")
    if step.effect == Effect.REFUSED:
        return f"{text} refused: {why}"
    return text


def restart_cause(step: Step) -> str:
    """A step that waits for a restart, as status and results give it."""
    why, (old, new) = note(step), values(step)
    return f"{field_name(step)} {old} -> {new} needs a restart" + (f" ({why})" if why else "")


def refusals(action: Action) -> str:
    return "; ".join(f"{field_name(s)}: {note(s)}" for s in action.steps
                     if s.effect == Effect.REFUSED)


def _difference(step: Step) -> str:
    field, (old, new) = field_name(step), values(step)
    if step.op in _ATTACH:
        return f"{field} {new}: not on the domain"
    if step.op in _DETACH:
        return f"{field} {old}: not in the manifest"
    return f"{field} {old} -> {new}"


def creating(action: Action) -> bool:
    return action.live is None and action.desired is not None


def reason_text(action: Action) -> str:
    """Why a blocked action is not done; for a destroy, what happens to the volumes."""
    if action.kind == Kind.DESTROY:
        return _fate(action)
    reason = action.reason
    if reason is None:
        return refusals(action) if action.kind == Kind.BLOCKED else ""
    vm = action.resource == Resource.VM
    not_done = "not destroyed" if vm else "not removed"
    why = reason.why
    if why == Why.CONFLICT:
        if vm:
            return ("conflict: a domain with this name exists but was not created by "
                    "reconciler; it is left alone (rename the manifest, or remove or adopt the "
                    "domain)")
        what = "network" if action.resource == Resource.NETWORK else "storage pool"
        return (f"conflict: a {what} with this name exists but was not created by this "
                "reconciler; it is left alone")
    if why == Why.OTHER_INSTANCE:
        return (f"conflict: the domain is managed by another reconciler instance "
                f"({', '.join(reason.names)}); it is left alone and cannot be adopted")
    if why == Why.ADOPT_MISMATCH:
        listed = ", ".join(_difference(s) for s in reason.steps)
        return f"adopt refused: {listed}; make the manifest match the domain first"
    if why == Why.SUSPENDED:
        what = "not created" if creating(action) else "left as it is"
        return f"{SUSPENDED}: {what} until the annotation is removed"
    if why == Why.MANIFEST_PROBLEMS and action.kind == Kind.BLOCKED and action.steps:
        # many hosts: a create or a move held while the fleet's manifests have problems
        what = "moved" if any(s.op in (Op.MIGRATE, Op.DEFINE_THERE) for s in action.steps) \
            else "created"
        return (f"not {what}: {reason.count} manifest problem(s) in this run; in a fleet "
                "nothing is created, moved or destroyed until every manifest is valid (where "
                "a VM runs depends on every manifest)")
    if why == Why.MANIFEST_PROBLEMS:
        verb = "destroyed" if vm else "removed"
        return (f"{not_done}: {reason.count} manifest problem(s) in this run; nothing is "
                f"{verb} until every manifest is valid")
    if why == Why.EMPTY_SET:
        tail = " to remove every managed VM" if vm else ""
        return f"{not_done}: the manifest set is empty; pass --allow-empty{tail}"
    if why == Why.SINGLE_FILE:
        what = "VMs" if vm else f"{action.resource}s"
        return (f"{not_done}: PATH is a single file, not the manifest directory; only a whole "
                f"directory can remove {what}")
    if why == Why.TOO_MANY_DESTROYS:
        return (f"not destroyed: {reason.count} VMs would be destroyed, more than "
                f"--max-destroy {reason.limit}; raise it if this is intended")
    if why == Why.CORRUPT_MARK:
        return ("not destroyed: its reconciler metadata is unreadable (edited by hand?); remove "
                "the domain by hand if intended")
    if why == Why.PROTECTED:
        return ("not destroyed: protect is true in its last applied spec; apply a manifest "
                "with protect: false first")
    if why == Why.IN_USE:
        return f"not removed: still used by {', '.join(sorted(reason.names))}"
    if why == Why.DOMAIN_STATE:
        state, cause = (*reason.names, "", "")[:2]
        if state == "paused" and cause in ("migration", "postcopy", "postcopy failed",
                                           "starting up"):
            return (f"the domain is {state} ({cause}): a migration is in flight; nothing is "
                    "changed until libvirt has finished it")
        return f"the domain is {state} ({cause}): {_STATE_ADVICE.get(state, '')}"
    if why == Why.MANAGED_SAVE:
        return ("the domain has a managed-save image: its next start resumes it with the old "
                "configuration; remove the image (virsh managedsave-remove) to apply the "
                "changes, or start it as it is")
    if why == Why.PENDING_DESTROY:
        return (f"pending destroy: its manifest is gone and prune is confirm; "
                f"`reconciler approve {action.label}` lets the destroy go ahead")
    if why == Why.ORPHANED:
        return ("orphaned: its manifest is gone and prune is off, so it is left as it is; "
                "remove it by hand, or prune with --prune auto or confirm")
    if why == Why.LEAVING:
        return (f"leaving: the repository places it on host {reason.names[0]}; it is never "
                "destroyed here, and stays as it is until it has moved there")
    if why == Why.UNPLACED:
        if action.live is None:
            return (f"unplaced: no host may run it now ({reason.names[0]}); it is created "
                    "nowhere until one can")
        return (f"unplaced: no host may run it now ({reason.names[0]}); it is never "
                "destroyed here, and stays as it is")
    if why == Why.MOVE_QUEUED:
        return (f"waiting: one run starts at most {reason.limit} moves (maxMoves in the "
                f"config); it moves in a later run, {move_text(action)}")
    if why == Why.MOVE_BLOCKED:
        host, cause = reason.names
        return f"move to {host} blocked: {cause}; it stays here, untouched"
    if why == Why.ARRIVING:
        return (f"arriving: it runs on host {reason.names[0]}, which moves it here; it is not "
                "created a second time")
    if why == Why.STRANDED:
        host = reason.names[0]
        return (f"not created: it runs on host {host}, which the repository no longer "
                f"declares; declare {host} again (cordoned, so that its VMs move away), or "
                f"remove the VM there")
    if why == Why.PEER_UNREAD:
        return (f"not created: cannot tell whether it already runs on another host: "
                f"{', '.join(reason.names)} cannot be read; it is created once every host "
                "answers")
    if why == Why.LEFT_BEHIND:
        host, volumes, cause = reason.names
        return (f"kept: {volumes} here, named like its volumes and used by nothing, may be the "
                f"copy a stopped move to {host} left ({cause}); delete them by hand once you "
                "know they are")
    if why == Why.DESTROY_FAILED:
        return "not removed: a VM destroy failed this run"
    return ("the pool is inactive, so its owner cannot be checked; start it by hand "
            "(virsh pool-start) if it is ours")


_STATE_ADVICE = {
    "paused": "QEMU paused it; find the cause (an I/O error: free the storage), then virsh "
              "resume it; nothing is changed until then",
    "crashed": "it crashed and is kept for inspection; virsh destroy it to let it start again",
    "suspended": "the guest suspended itself (to RAM or disk); wake it with virsh "
                 "dompmwakeup; nothing is changed until then",
    "shutting down": "it is started again once it is off",
}


def _fate(action: Action) -> str:
    if action.resource == Resource.POOL:
        return "its directory and volumes stay on disk"
    if action.resource == Resource.NETWORK:
        return "guests on it lose this network"
    name = action.name

    def volumes(op: Op) -> list[str]:
        return [volume_name(name, s.old.name)
                + (f" (used by {', '.join(s.names)})" if s.cause == Cause.IN_USE else "")
                for s in action.steps if s.op == op and isinstance(s.old, Disk)]

    parts = []
    if kept := volumes(Op.KEEP_VOLUME):
        parts.append(f"volumes retained: {', '.join(kept)}")
    if gone := volumes(Op.DELETE_VOLUME):
        parts.append(f"volumes deleted: {', '.join(gone)}")
    if any(s.op == Op.DELETE_SEED for s in action.steps):
        parts.append(f"seed volume deleted: {seed_volume(name)}")
    return "; ".join(parts) or "no volumes"


def move_text(action: Action) -> str:
    """``move hv-a -> hv-b (live migration)`` / ``(cold move)``."""
    from reconciler.core.moves import deleted_here, finishing

    first = action.steps[0]
    if finishing(action):  # only the deletes left
        return (f"finish the move {first.old} -> {first.new}: it is there; delete the copy of "
                f"its volumes left here ({', '.join(deleted_here(action))})")
    if not action.has(Op.MIGRATE, Op.DEFINE_THERE):  # an interrupted cold move, finished
        return f"move {first.old} -> {first.new} (cold move, finished: it is defined there)"
    how = "live migration" if action.has(Op.MIGRATE) else "cold move"
    return f"move {first.old} -> {first.new} ({how})"
