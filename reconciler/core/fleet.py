"""One host's share of a fleet's manifests: the VMs placed on it, and the networks and pools
they need. Pure.

With no ``kind: Host`` manifest the share is everything (one host, as before the fleet). With
Host manifests, each host's reconciler knows itself by name (config ``host``) and reconciles
only its share; a VM the repository places on another host is never destroyed here (see
``core.diff.guards.Guards.elsewhere``)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from itertools import chain

from reconciler.core.errors import PermanentError
from reconciler.core.model.vm import DesiredVM
from reconciler.core.placement import Placed, place
from reconciler.core.plan import Action, Kind, Plan, Reason, Resource, Why, vm_target
from reconciler.core.record import Record
from reconciler.core.validate.result import Validated


class NotInFleet(PermanentError):
    """The repository declares Hosts, and this host is not one of them: nothing is planned (a
    host outside the fleet must not read "no VM is mine" as "destroy them all")."""


@dataclass(frozen=True, eq=False, repr=False)
class Share(Record):
    """``inputs``: what this host reconciles. ``elsewhere``: (VM, host, why) of each VM placed
    on another host (host "" when no host may run it now, and ``why`` says why), sorted.
    ``placement``: every placed VM."""

    inputs: Validated
    elsewhere: tuple[tuple[str, str, str], ...] = ()
    placement: dict[str, Placed] = field(default_factory=dict)
    host: str | None = None  # this host's name in the fleet; None: no fleet
    # VMs no host may run now, of which this host is a candidate (named by spec.host, or
    # matched by spec.hostSelector): each host that could run one says it runs nowhere.
    unplaced: tuple[DesiredVM, ...] = ()
    # Every VM of the repository whose manifest suspends it (reconciler/suspend): never moved.
    suspended: frozenset[str] = frozenset()


@dataclass(frozen=True, eq=False, repr=False)
class Placement(Record):
    """Where every VM of a fleet runs (``placed``, see ``core.placement.place``), with each
    host's VMs (``by_host``, in the manifests' order) and (VM, host, why) of every VM, sorted
    (``everywhere``; host "" when no host may run it). Computed once (``placement``) for
    all the hosts of a fleet plan, instead of once for each host's share."""

    placed: dict[str, Placed]
    by_host: dict[str, tuple[DesiredVM, ...]]
    everywhere: tuple[tuple[str, str, str], ...]
    positions: dict[str, tuple[int, ...]]  # host -> where its VMs are in ``everywhere``

    def elsewhere(self, me: str) -> tuple[tuple[str, str, str], ...]:
        """``everywhere`` without ``me``'s VMs (copied slice by slice: at 10,000 VMs, a
        filter over every entry took most of a fleet plan's per-host share)."""
        parts, start = [], 0
        for index in self.positions.get(me, ()):
            parts.append(self.everywhere[start:index])
            start = index + 1
        parts.append(self.everywhere[start:])
        return tuple(chain.from_iterable(parts))


def placement(inputs: Validated) -> Placement:
    """The placement of ``inputs``' VMs on its Hosts. Pure."""
    placed = place(inputs.vms, inputs.hosts)
    by_host: dict[str, list[DesiredVM]] = {}
    for vm in inputs.vms:
        host = placed[vm.spec.name].host
        if host is not None:
            by_host.setdefault(host, []).append(vm)
    everywhere = tuple(sorted((name, p.host or "", p.reason) for name, p in placed.items()))
    positions: dict[str, list[int]] = {}
    for index, (_, host, _) in enumerate(everywhere):
        positions.setdefault(host, []).append(index)
    return Placement(placed, {host: tuple(vms) for host, vms in by_host.items()}, everywhere,
                     {host: tuple(indexes) for host, indexes in positions.items()})


def share(inputs: Validated, me: str, *, live_networks: Iterable[str] = (),
          live_pools: Iterable[str] = (), placed: Placement | None = None) -> Share:
    """``me``'s share of ``inputs``: its VMs; the declared networks and pools those VMs use,
    and the declared ones already on the host (kept as declared, never pruned for being
    unused here). ``live_networks``, ``live_pools``: names on the host. ``placed``: the
    placement of ``inputs`` (``placement``), when it was computed once for a fleet (None:
    computed here).

    Raises ``NotInFleet`` when Hosts are declared and ``me`` is none of them."""
    if not inputs.hosts:
        return Share(inputs)
    names = sorted(h.spec.name for h in inputs.hosts)
    if me not in names:
        raise NotInFleet(
            f"this host is {me!r}, and the repository's Host manifests name {', '.join(names)}; "
            "set `host` in the config (or rename the Host manifest) so that this host knows its "
            "share; nothing is planned until then")
    fleet = placement(inputs) if placed is None else placed
    mine = fleet.by_host.get(me, ())
    networks = {nic.network for vm in mine for nic in vm.spec.nics if nic.network}
    networks |= set(live_networks)
    pools = {disk.pool for vm in mine for disk in vm.spec.disks}
    pools |= {vm.spec.cloud_init.pool for vm in mine if vm.spec.cloud_init}
    pools |= set(live_pools)
    ours = replace(inputs, vms=mine,
                   networks=tuple(n for n in inputs.networks if n.spec.name in networks),
                   pools=tuple(p for p in inputs.pools if p.spec.name in pools))
    spec = next(h.spec for h in inputs.hosts if h.spec.name == me)
    unplaced = tuple(vm for vm in inputs.vms if fleet.placed[vm.spec.name].host is None
                     and (vm.host == me or (vm.host is None and spec.matches(vm.host_selector))))
    suspended = frozenset(vm.spec.name for vm in inputs.vms if vm.suspend)
    return Share(ours, fleet.elsewhere(me), fleet.placed, me, unplaced, suspended)


def nowhere(plan: Plan, fleet: Share) -> Plan:
    """``plan`` with each VM no host may run now, that this host could and does not hold,
    listed as blocked (never silently left out: the repository asks for it). Pure."""
    listed = {a.name for a in plan.actions if a.resource == Resource.VM}
    added = [Action(Kind.BLOCKED, vm_target(vm.spec.name),
                    reason=Reason(Why.UNPLACED, names=(fleet.placement[vm.spec.name].reason,)),
                    desired=vm)
             for vm in fleet.unplaced if vm.spec.name not in listed]
    if not added:
        return plan
    return replace(plan, actions=(*plan.actions, *added))


def creating(plan: Plan) -> tuple[str, ...]:
    """The VMs the plan creates: those a host must first look for on the other hosts. Pure."""
    return tuple(a.name for a in plan.actions
                 if a.resource == Resource.VM and a.kind == Kind.CREATE)


def arrivals(plan: Plan, found: dict[str, str], unread: dict[str, str],
             stranded: dict[str, str] | None = None) -> Plan:
    """``plan`` with each create of a VM that runs on another host (``found``: VM -> host)
    blocked as arriving: the host it leaves moves it here, and this host never makes a second
    one. While another host cannot be read (``unread``: host -> error), no VM is created here
    either: it may run there. ``stranded``: VM -> a Host the repository no longer declares
    that still runs it: never made a second time. Pure."""
    stranded = stranded or {}
    if not found and not unread and not stranded:
        return plan
    out = []
    for action in plan.actions:
        if action.resource == Resource.VM and action.kind == Kind.CREATE:
            if action.name in stranded:
                action = _blocked(action, Reason(Why.STRANDED, names=(stranded[action.name],)))
            elif action.name in found:
                action = _blocked(action, Reason(Why.ARRIVING, names=(found[action.name],)))
            elif unread:
                names = tuple(f"{host} ({error})" for host, error in sorted(unread.items()))
                action = _blocked(action, Reason(Why.PEER_UNREAD, names=names))
        out.append(action)
    return replace(plan, actions=tuple(out))


def _blocked(action: Action, reason: Reason) -> Action:
    return Action(Kind.BLOCKED, action.target, action.steps, reason, desired=action.desired,
                  live=action.live)


def held(plan: Plan, problems: int) -> Plan:
    """``plan`` with every VM create and move blocked while the manifests have ``problems``:
    where a VM runs depends on every manifest (a Host with a typo drops out of the fleet, a
    VM dropped frees room another takes), so a fleet host neither makes nor moves one on a
    read that may be wrong (destroys are held anyway, see ``core.diff.guards``). Pure."""
    if not problems:
        return plan
    reason = Reason(Why.MANIFEST_PROBLEMS, count=problems)
    return replace(plan, actions=tuple(
        _blocked(a, reason) if a.resource == Resource.VM and a.kind in (Kind.CREATE, Kind.MOVE)
        else a for a in plan.actions))
