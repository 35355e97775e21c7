"""Desired storage pools against live ones: their actions. Pure: no libvirt, no files, no
clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace

from reconciler.core.diff.guards import removal, users
from reconciler.core.model.pool import DesiredPool, LivePool, below
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import (
    Action,
    Cause,
    Effect,
    Kind,
    Op,
    Reason,
    Resource,
    Step,
    Target,
    Why,
)


def plan(desired: Iterable[DesiredPool], live: Iterable[LivePool], *, instance: str,
         vms: Iterable[LiveVM], wanted_vms: Iterable[DesiredVM],
         hold: Reason | None, roots: Sequence[str] = (),
         real_paths: Mapping[str, str] | None = None,
         volume_users: Mapping[str, Iterable[str]] | None = None) -> list[Action]:
    """Create, update, remove (or block) storage pools. A pool is ours when it holds the
    marker volume of ``instance`` (an inactive pool cannot be asked).

    A new pool's real path (``real_paths``: path -> the path with its symbolic links
    resolved on the host, where known) must lie below a real storage root (``roots``; none
    given: not checked), and neither hold, nor lie inside, another pool's directory (whose
    volumes would then show up in both). ``volume_users``: pool -> the domains with any
    volume of it as a disk (whatever the volume's name). Pure."""
    desired = tuple(desired)
    live = tuple(live)
    real = dict(real_paths or {})
    taken = [(p.name, real.get(p.config.path, p.config.path)) for p in live if p.config.path]
    taken += [(d.spec.name, real.get(d.spec.path, d.spec.path)) for d in desired]
    live_by_name = {p.name: p for p in live}
    used = users(vms, wanted_vms, lambda spec: [d.pool for d in spec.disks],
                 also=volume_users)
    actions = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        target = Target(Resource.POOL, want.spec.name)
        have = live_by_name.pop(want.spec.name, None)
        if have is None:
            action = create(want)
            refusal = _placement(want, target, real, roots, taken)
            actions.append(replace(action, steps=(refusal, *action.steps)) if refusal else action)
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


def _placement(want: DesiredPool, target: Target, real: Mapping[str, str],
               roots: Sequence[str], taken: Sequence[tuple[str, str]]) -> Step | None:
    """Why a new pool cannot be where its manifest puts it, as a refused step, or None."""
    path = real.get(want.spec.path, want.spec.path)
    refused = Step(Op.DEFINE, target, None, path, Effect.REFUSED)
    real_roots = [real.get(r, r) for r in roots]
    if real_roots and not any(below(path, root) for root in real_roots):
        return replace(refused, cause=Cause.OUTSIDE_ROOTS, names=tuple(real_roots))
    for name, other in taken:
        if name == want.spec.name:
            continue
        if other == path:
            return replace(refused, cause=Cause.PATH_TAKEN, names=(name, other))
        if below(path, other) or below(other, path):
            return replace(refused, cause=Cause.PATH_NESTED, names=(name, other))
    return None


def create(want: DesiredPool) -> Action:
    """Define (with the instance's marker volume), set autostart; libvirt builds and starts
    it."""
    target = Target(Resource.POOL, want.spec.name)
    return Action(Kind.CREATE, target,
                  (Step(Op.SET_AUTOSTART, target, None, want.spec.autostart),), desired=want)
