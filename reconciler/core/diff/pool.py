"""Desired storage pools against live ones: their actions. Pure: no libvirt, no files, no
clock."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.diff.guards import removal, users
from reconciler.core.model.pool import DesiredPool, LivePool
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Action, Effect, Kind, Op, Reason, Resource, Step, Target, Why


def plan(desired: Iterable[DesiredPool], live: Iterable[LivePool], *, instance: str,
         vms: Iterable[LiveVM], wanted_vms: Iterable[DesiredVM],
         hold: Reason | None) -> list[Action]:
    """Create, update, remove (or block) storage pools. A pool is ours when it holds the
    marker volume of ``instance`` (an inactive pool cannot be asked). Pure."""
    live_by_name = {p.name: p for p in live}
    used = users(vms, wanted_vms, lambda spec: [d.pool for d in spec.disks])
    actions = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        target = Target(Resource.POOL, want.spec.name)
        have = live_by_name.pop(want.spec.name, None)
        if have is None:
            actions.append(create(want))
            continue
        if not have.active and have.owner is None:
            actions.append(Action(Kind.BLOCKED, target, reason=Reason(Why.POOL_INACTIVE),
                                  desired=want, live=have))
            continue
        if have.owner != instance:
            actions.append(Action(Kind.BLOCKED, target, reason=Reason(Why.CONFLICT),
                                  desired=want, live=have))
            continue
        steps = []
        if want.spec.path != have.config.path:
            steps.append(Step(Op.MOVE_POOL, target, have.config.path, want.spec.path,
                              Effect.REFUSED))
        if want.spec.autostart != have.config.autostart:
            steps.append(Step(Op.SET_AUTOSTART, target, have.config.autostart,
                              want.spec.autostart))
        if not have.active:
            steps.append(Step(Op.START, target, effect=Effect.LIVE))
        if steps:
            actions.append(Action(Kind.UPDATE, target, tuple(steps), desired=want, live=have))
    for have in sorted(live_by_name.values(), key=lambda p: p.name):
        if have.owner != instance:
            continue  # not ours, or inactive and so unknowable: left alone
        actions.append(removal(Target(Resource.POOL, have.name), have, used.get(have.name),
                               hold))
    return actions


def create(want: DesiredPool) -> Action:
    """Define (with the instance's marker volume), set autostart; libvirt builds and starts
    it."""
    target = Target(Resource.POOL, want.spec.name)
    return Action(Kind.CREATE, target,
                  (Step(Op.SET_AUTOSTART, target, None, want.spec.autostart),), desired=want)
