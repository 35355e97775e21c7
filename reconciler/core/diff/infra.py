"""Networks and pools: desired against live. Pure: no libvirt, no files, no clock."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.model.network import DesiredNetwork, IPv4, LiveNetwork, NetworkSpec
from reconciler.core.model.pool import DesiredPool, LivePool
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Action, Change, Kind, Mode

NETWORK, POOL = "network", "pool"


def plan_networks(desired: Iterable[DesiredNetwork], live: Iterable[LiveNetwork], *,
                  instance: str, vms: Iterable[LiveVM], wanted_vms: Iterable[DesiredVM],
                  held_back: str) -> list[Action]:
    """Create, update, destroy (or block) networks. ``held_back`` is why nothing may be
    destroyed this run ('' when destroying is allowed). Pure."""
    live_by_name = {n.name: n for n in live}
    users = _users(vms, wanted_vms, lambda spec: [n.network for n in spec.nics if n.network])
    actions = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        have = live_by_name.pop(want.spec.name, None)
        if have is None:
            actions.append(Action(Kind.CREATE, want.spec.name, resource=NETWORK, infra=want))
        elif have.mark is None or have.mark.instance != instance:
            actions.append(Action(Kind.BLOCKED, want.spec.name, resource=NETWORK, infra=want,
                                  reason="conflict: a network with this name exists but was "
                                         "not created by this reconciler; it is left alone"))
        else:
            changes = _network_changes(want.spec, have)
            if have.mark.spec_hash != want.spec_hash and not changes:
                changes.append(Change("recorded spec", have.mark.spec_hash, want.spec_hash,
                                      Mode.CONFIG))
            if changes:
                actions.append(Action(Kind.UPDATE, want.spec.name, tuple(changes),
                                      resource=NETWORK, infra=want, infra_live=have))
    for have in sorted(live_by_name.values(), key=lambda n: n.name):
        if have.mark is None or have.mark.instance != instance:
            continue
        actions.append(_removal(NETWORK, have.name, have, users.get(have.name), held_back))
    return actions


def _network_changes(want: NetworkSpec, have: LiveNetwork) -> list[Change]:
    cfg = have.config
    later = Mode.RESTART if have.active else Mode.CONFIG
    changes = []
    if want.bridge and want.bridge != cfg.bridge:
        changes.append(Change("bridge", cfg.bridge, want.bridge, later,
                              "takes effect when the network restarts"))
    if want.forward != cfg.forward:
        changes.append(Change("forward", cfg.forward, want.forward, later,
                              "takes effect when the network restarts"))
    if want.ipv4 != cfg.ipv4:
        changes.append(Change("ipv4", _ipv4(cfg.ipv4), _ipv4(want.ipv4), later,
                              "takes effect when the network restarts"))
    if want.autostart != cfg.autostart:
        changes.append(Change("autostart", _b(cfg.autostart), _b(want.autostart), Mode.CONFIG))
    if not have.active:
        changes.append(Change("state", "inactive", "active", Mode.LIVE))
    return changes


def plan_pools(desired: Iterable[DesiredPool], live: Iterable[LivePool], *, instance: str,
               vms: Iterable[LiveVM], wanted_vms: Iterable[DesiredVM],
               held_back: str) -> list[Action]:
    """Create, update, destroy (or block) storage pools. Pure."""
    live_by_name = {p.name: p for p in live}
    users = _users(vms, wanted_vms, lambda spec: [d.pool for d in spec.disks])
    actions = []
    for want in sorted(desired, key=lambda d: d.spec.name):
        have = live_by_name.pop(want.spec.name, None)
        if have is None:
            actions.append(Action(Kind.CREATE, want.spec.name, resource=POOL, infra=want))
            continue
        if not have.active and have.owner is None:
            actions.append(Action(Kind.BLOCKED, want.spec.name, resource=POOL, infra=want,
                                  reason="the pool is inactive, so its owner cannot be checked; "
                                         "start it by hand (virsh pool-start) if it is ours"))
            continue
        if have.owner != instance:
            actions.append(Action(Kind.BLOCKED, want.spec.name, resource=POOL, infra=want,
                                  reason="conflict: a storage pool with this name exists but "
                                         "was not created by this reconciler; it is left alone"))
            continue
        changes = []
        if want.spec.path != have.config.path:
            changes.append(Change("path", have.config.path, want.spec.path, Mode.REFUSED,
                                  "a pool cannot move; declare a new pool instead"))
        if want.spec.autostart != have.config.autostart:
            changes.append(Change("autostart", _b(have.config.autostart),
                                  _b(want.spec.autostart), Mode.CONFIG))
        if not have.active:
            changes.append(Change("state", "inactive", "active", Mode.LIVE))
        if changes:
            actions.append(Action(Kind.UPDATE, want.spec.name, tuple(changes), resource=POOL,
                                  infra=want, infra_live=have))
    for have in sorted(live_by_name.values(), key=lambda p: p.name):
        if have.owner != instance:
            continue  # not ours, or inactive and so unknowable: left alone
        actions.append(_removal(POOL, have.name, have, users.get(have.name), held_back))
    return actions


def _removal(resource: str, name: str, have: object, used_by: list[str] | None,
             held_back: str) -> Action:
    if used_by:
        return Action(Kind.BLOCKED, name, resource=resource, infra_live=have,
                      reason=f"not removed: still used by {', '.join(sorted(used_by))}")
    if held_back:
        return Action(Kind.BLOCKED, name, resource=resource, infra_live=have, reason=held_back)
    fate = ("its directory and volumes stay on disk" if resource == POOL
            else "guests on it lose this network")
    return Action(Kind.DESTROY, name, resource=resource, infra_live=have, reason=fate)


def _users(vms: Iterable[LiveVM], wanted: Iterable[DesiredVM], refs) -> dict[str, list[str]]:  # type: ignore[no-untyped-def]
    """Network or pool name -> the VMs (live or declared) that refer to it."""
    users: dict[str, set[str]] = {}
    for vm in vms:
        for ref in refs(vm.config):
            users.setdefault(ref, set()).add(vm.name)
    for want in wanted:
        for ref in refs(want.spec):
            users.setdefault(ref, set()).add(want.spec.name)
    return {name: sorted(found) for name, found in users.items()}


def _ipv4(value: IPv4 | None) -> str:
    if value is None:
        return "none"
    dhcp = f" dhcp {value.dhcp_start}-{value.dhcp_end}" if value.dhcp_start else ""
    return f"{value.address}/{value.prefix}{dhcp}"


def _b(value: bool) -> str:
    return "true" if value else "false"
