"""What keeps a run from destroying what it should not (SPEC section 5): the one held-back rule
for VMs, networks and pools. Pure."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reconciler.core import defaults
from reconciler.core.model.network import LiveNetwork
from reconciler.core.model.pool import LivePool
from reconciler.core.model.vm import DesiredVM, LiveVM, VMSpec
from reconciler.core.plan import Action, Effect, Kind, Op, Reason, Step, Target, Why
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class Guards(Record):
    problems: int = 0  # manifest problems in this run: nothing is destroyed
    single_file: bool = False  # PATH is one manifest file, not the whole directory
    max_destroy: int = defaults.MAX_DESTROY
    allow_empty: bool = False
    # Where StoragePool paths may lie (the host's config), checked again at plan time on the
    # real paths (symbolic links resolved).
    storage_roots: tuple[str, ...] = defaults.STORAGE_ROOTS
    # What happens to a managed object whose manifest is gone (Argo CD's prune): "auto"
    # destroys it (within the guards above), "confirm" only once approved (``approved``),
    # "off" never (it is reported orphaned).
    prune: str = "auto"
    # (label, domain UUID) of each destroy approved with `reconciler approve` ("" for a
    # network or pool): an approval holds for that very domain, not a later one of its name.
    approved: frozenset[tuple[str, str]] = frozenset()
    # Many hosts: (VM, host, why) of each VM the repository places on another host (host ""
    # when none may run it now: ``why``). Found here, it is leaving, never destroyed
    # (``core.fleet``).
    elsewhere: tuple[tuple[str, str, str], ...] = ()


DEFAULT_GUARDS = Guards()
PRUNE_POLICIES = ("auto", "confirm", "off")


def pruning(guards: Guards, label: str, uuid: str = "") -> Reason | None:
    """Why the prune policy keeps ``label`` (a VM's name, ``network/NAME``, ``pool/NAME``)
    from being destroyed, or None. Pure."""
    if guards.prune == "off":
        return Reason(Why.ORPHANED)
    if guards.prune == "confirm" and (label, uuid) not in guards.approved:
        return Reason(Why.PENDING_DESTROY, names=(label,))
    return None


def held_back(guards: Guards, *, desired_empty: bool, destroys: int | None = None,
              ) -> Reason | None:
    """Why nothing may be destroyed (or removed) in this run, or None.

    ``desired_empty``: the manifest set holds no resource at all. ``destroys``: how many VMs
    the run would destroy (None: not counted, as for networks and pools, which follow the VMs).
    Pure."""
    if guards.single_file:
        return Reason(Why.SINGLE_FILE)
    if guards.problems:
        return Reason(Why.MANIFEST_PROBLEMS, count=guards.problems)
    if desired_empty and not guards.allow_empty:
        return Reason(Why.EMPTY_SET)
    if destroys is not None and destroys > guards.max_destroy:
        return Reason(Why.TOO_MANY_DESTROYS, count=destroys, limit=guards.max_destroy)
    return None


def users(vms: Iterable[LiveVM], wanted: Iterable[DesiredVM],
          refs: Callable[[VMSpec], Iterable[str]],
          live_refs: Callable[[LiveVM], Iterable[str]] = lambda vm: (),
          also: Mapping[str, Iterable[str]] | None = None) -> dict[str, list[str]]:
    """Network or pool name -> the domains (managed or not, by their persistent definition or
    their running one: ``live_refs``) and declared VMs that refer to it; ``also``: more users
    by name, observed otherwise. Pure."""
    found: dict[str, set[str]] = {}
    for vm in vms:
        for ref in (*refs(vm.config), *live_refs(vm)):
            found.setdefault(ref, set()).add(vm.name)
    for ref, names in (also or {}).items():
        found.setdefault(ref, set()).update(names)
    for want in wanted:
        for ref in refs(want.spec):
            found.setdefault(ref, set()).add(want.spec.name)
    return {name: sorted(names) for name, names in found.items()}


def removal(target: Target, have: LiveNetwork | LivePool, used_by: list[str] | None,
            hold: Reason | None, prune: Reason | None = None) -> Action:
    """A managed network or pool no manifest declares: removed, unless a VM still uses it, a
    guard holds every removal back, or the prune policy keeps it (``prune``, see
    ``pruning``). Pure."""
    if used_by:
        return Action(Kind.BLOCKED, target, reason=Reason(Why.IN_USE, names=tuple(used_by)),
                      live=have)
    if hold is not None:
        return Action(Kind.BLOCKED, target, reason=hold, live=have)
    if prune is not None:
        return Action(Kind.BLOCKED, target, reason=prune, live=have)
    return Action(Kind.DESTROY, target, (Step(Op.UNDEFINE, target, effect=Effect.LIVE),),
                  live=have)
