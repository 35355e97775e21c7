"""Desired networks against live ones: their actions. Pure: no libvirt, no files, no clock."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import replace

from reconciler.core.diff.guards import removal, users
from reconciler.core.model.network import DesiredNetwork, LiveNetwork, NetworkSpec
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


def plan(desired: Iterable[DesiredNetwork], live: Iterable[LiveNetwork], *, instance: str,
         vms: Iterable[LiveVM], wanted_vms: Iterable[DesiredVM],
         hold: Reason | None, host: tuple[str, ...] | None = None,
         routes: tuple[tuple[str, str], ...] = ()) -> list[Action]:
    """Create, update, remove (or block) networks. ``hold``: why nothing may be removed this
    run (None when removing is allowed). A network is ours when its mark names ``instance``.
    ``host``: the host's interface names; ``routes``: its IPv4 routes as (interface, CIDR),
    see ``core.observe.routes``. Pure."""
    live_by_name = {n.name: n for n in live}
    used = users(vms, wanted_vms, lambda spec: [n.network for n in spec.nics if n.network],
                 lambda vm: [n.network for n in vm.live_nics or () if n.network])
    actions = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        target = Target(Resource.NETWORK, want.spec.name)
        have = live_by_name.pop(want.spec.name, None)
        if have is None:
            action = create(want)
            clash = _clash(want, target, live_by_name.values(), desired, host or (), routes)
            actions.append(replace(action, steps=(clash, *action.steps)) if clash else action)
        elif have.mark is None or have.mark.instance != instance:
            actions.append(Action(Kind.BLOCKED, target, reason=Reason(Why.CONFLICT),
                                  desired=want, live=have))
        else:
            steps = _steps(target, want.spec, have)
            if have.mark.spec_hash != want.spec_hash and not steps:
                steps.append(Step(Op.SET_SPEC_HASH, target, have.mark.spec_hash,
                                  want.spec_hash))
            if steps:
                actions.append(Action(Kind.UPDATE, target, tuple(steps), desired=want,
                                      live=have))
    for have in sorted(live_by_name.values(), key=lambda n: n.name):
        if have.mark is None or have.mark.instance != instance:
            continue
        actions.append(removal(Target(Resource.NETWORK, have.name), have, used.get(have.name),
                               hold))
    return actions


def _clash(want: DesiredNetwork, target: Target, live: Iterable[LiveNetwork],
           desired: Iterable[DesiredNetwork], host: tuple[str, ...],
           routes: tuple[tuple[str, str], ...] = ()) -> Step | None:
    """Why a new network could not start beside the others (libvirt refuses a network whose
    subnet overlaps another's, or a bridge another has), or beside the host's own interfaces
    (a bridge of that name; a route to exactly its subnet: libvirt's
    ``networkCheckRouteCollision`` reads ``/proc/net/route`` at ``net-start`` and fails with
    "Network is already in use by interface ..."), as a refused step, or None."""
    spec = want.spec
    others = [(n.name, n.config) for n in live if n.name != spec.name]
    others += [(d.spec.name, d.spec) for d in desired if d.spec.name < spec.name]
    refused = Step(Op.DEFINE, target, None, _subnet(spec), Effect.REFUSED)
    if spec.bridge and spec.bridge in host:  # libvirt makes the bridge: it must not exist
        return replace(refused, cause=Cause.BRIDGE_TAKEN,
                       names=("the host (an interface)", spec.bridge))
    mine = _network(spec)
    for iface, cidr in routes:
        if mine is not None and ipaddress.IPv4Network(cidr) == mine:
            return replace(refused, cause=Cause.SUBNET_TAKEN,
                           names=(f"the host (interface {iface})", cidr))
    for name, other in others:
        if spec.bridge and other.bridge == spec.bridge:
            return replace(refused, cause=Cause.BRIDGE_TAKEN, names=(name, spec.bridge))
        theirs = _network(other)
        if mine is not None and theirs is not None and mine.overlaps(theirs):
            return replace(refused, cause=Cause.SUBNET_TAKEN, names=(name, str(theirs)))
    return None


def _network(spec: NetworkSpec) -> ipaddress.IPv4Network | None:
    if spec.ipv4 is None:
        return None
    return ipaddress.IPv4Interface(f"{spec.ipv4.address}/{spec.ipv4.prefix}").network


def _subnet(spec: NetworkSpec) -> str | None:
    subnet = _network(spec)
    return str(subnet) if subnet is not None else spec.bridge


def create(want: DesiredNetwork) -> Action:
    """Define, set autostart, start."""
    target = Target(Resource.NETWORK, want.spec.name)
    steps = [Step(Op.SET_AUTOSTART, target, None, want.spec.autostart),
             Step(Op.START, target, effect=Effect.LIVE)]
    return Action(Kind.CREATE, target, tuple(steps), desired=want)


def _steps(target: Target, want: NetworkSpec, have: LiveNetwork) -> list[Step]:
    cfg = have.config
    later = Effect.RESTART if have.active else Effect.CONFIG
    steps = []
    if want.bridge and want.bridge != cfg.bridge:
        steps.append(Step(Op.SET_BRIDGE, target, cfg.bridge, want.bridge, later))
    if want.forward != cfg.forward:
        steps.append(Step(Op.SET_FORWARD, target, cfg.forward, want.forward, later))
    if want.ipv4 != cfg.ipv4:
        steps.append(Step(Op.SET_IPV4, target, cfg.ipv4, want.ipv4, later))
    run = have.running
    if have.active and run is not None:  # persisted, but the running network still differs
        pending = (
            (Op.SET_BRIDGE, run.bridge, want.bridge if want.bridge else run.bridge,
             cfg.bridge),
            (Op.SET_FORWARD, run.forward, want.forward, cfg.forward),
            (Op.SET_IPV4, run.ipv4, want.ipv4, cfg.ipv4),
        )
        steps += [Step(op, target, now, new, Effect.PENDING)
                  for op, now, new, persisted in pending if persisted == new and now != new]
    if want.autostart != cfg.autostart:
        steps.append(Step(Op.SET_AUTOSTART, target, cfg.autostart, want.autostart))
    if not have.active:
        steps.append(Step(Op.START, target, effect=Effect.LIVE))
    return steps
