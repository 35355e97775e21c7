"""The fleet's status: one row per VM of the repository, from each host's fresh read-only plan
(``core.fleetplan``): the host that runs it, whether it is in sync, whether it is healthy
(``core.health``), and the commit last applied to it (its mark). Pure."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core import health
from reconciler.core.fleetplan import FleetPlan
from reconciler.core.plan import Kind, Resource, Why
from reconciler.core.record import Record

IN_SYNC, PENDING, MOVING, BLOCKED, UNKNOWN = "in sync", "pending", "moving", "blocked", "unknown"


@dataclass(frozen=True, eq=False, repr=False)
class Row(Record):
    """``host``: where the repository places the VM; ``sync``: in sync, pending (apply would
    change it), moving (it runs elsewhere and moves here), blocked, unknown (its host could not
    be read); ``health``: healthy, or why not ("-" when not known); ``commit``: the commit its
    mark records (short), "-" when none."""

    host: str
    vm: str
    sync: str
    health: str
    commit: str


def rows(fleet: FleetPlan) -> list[Row]:
    """A row per VM placed on a host of ``fleet``, by host then name. Pure."""
    out = []
    for entry in fleet.hosts:
        if entry.plan is None:
            out.append(Row(entry.host, "*", UNKNOWN, "-", f"not read: {entry.error}"[:60]))
            continue
        actions = {a.name: a for a in entry.plan.actions if a.resource == Resource.VM}
        sick = dict(health.unhealthy(entry.desired, entry.live))
        live = {vm.name: vm for vm in entry.live}
        for want in sorted(entry.desired, key=lambda d: d.spec.name):
            name = want.spec.name
            action = actions.get(name)
            if action is None or action.still_pending:
                sync = IN_SYNC if action is None else "pending restart"
            elif action.reason is not None and action.reason.why == Why.ARRIVING:
                sync = MOVING
            elif action.blocked:
                sync = BLOCKED
            else:
                sync = PENDING
            vm = live.get(name)
            commit = (vm.mark.commit[:12] if vm is not None and vm.mark and vm.mark.commit
                      else "-")
            state = sick.get(name, "healthy")
            out.append(Row(entry.host, name, sync, state if vm or sync != MOVING else "-",
                           commit))
        declared = {want.spec.name for want in entry.desired}
        for action in entry.plan.actions:  # VMs here that the repository no longer puts here
            if action.resource != Resource.VM or action.name in declared:
                continue
            vm = live.get(action.name)
            commit = vm.mark.commit[:12] if vm and vm.mark and vm.mark.commit else "-"
            if action.kind == Kind.MOVE or (action.reason is not None
                                            and action.reason.why == Why.LEAVING):
                sync = "leaving"
            elif action.blocked:
                sync = BLOCKED
            else:  # a destroy (its manifest is gone), or what else apply would do
                sync = PENDING
            out.append(Row(entry.host, action.name, sync, "-", commit))
    return out


def table(found: list[Row]) -> str:
    """The rows as the `status --fleet` command prints them."""
    lines = [("HOST", "VM", "SYNC", "HEALTH", "COMMIT")]
    lines += [(r.host, r.vm, r.sync, r.health, r.commit) for r in found]
    width = [max(len(line[i]) for line in lines) for i in range(4)]
    return "".join("  ".join(f"{cell:<{width[i]}}" if i < 4 else cell
                             for i, cell in enumerate(line)).rstrip() + "\n" for line in lines)


def exit_code(found: list[Row], problems: int = 0) -> int:
    """0 every VM in sync and healthy; 1 a manifest problem (``problems``), a host unread, a
    VM blocked, or one in sync and yet not healthy; 2 work pending (as ``status``: a VM still
    to be made is not healthy yet)."""
    if problems or any(r.sync in (UNKNOWN, BLOCKED)
           or (r.sync == IN_SYNC and r.health != "healthy") for r in found):
        return 1
    return 0 if all(r.sync == IN_SYNC for r in found) else 2
