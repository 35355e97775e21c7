"""The plan of every kind, assembled from the desired and the live models. Pure."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core import scope
from reconciler.core.diff import network as network_diff
from reconciler.core.diff import pool as pool_diff
from reconciler.core.diff import vm as diff
from reconciler.core.diff.guards import Guards, held_back, pruning
from reconciler.core.live import LiveState as LiveState
from reconciler.core.live import infra_text as infra_text
from reconciler.core.live import owned_view as owned_view
from reconciler.core.model.storage import StorageView
from reconciler.core.model.vm import LiveVM, PowerState
from reconciler.core.plan import (
    Action,
    Cause,
    Effect,
    Kind,
    Op,
    Part,
    Plan,
    Resource,
    Step,
    vm_target,
)
from reconciler.core.resolve import resolve
from reconciler.core.targeting import Targeting
from reconciler.core.validate.result import Validated


def compute(inputs: Validated, live: LiveState, guards: Guards, instance: str,
            targeting: Targeting | None = None) -> Plan:
    """The whole plan: pools and networks first, then VMs, then removed pools and networks;
    storage and references resolved against what was observed (``core.resolve``). With an
    active ``targeting``, only what it chooses (see ``draft``). Pure."""
    plan = draft(inputs, live, guards, instance, targeting)
    return resolve(plan, live.storage, pools=live.pools,
                   networks=[n.name for n in live.networks if n.active],
                   inactive_networks=[n.name for n in live.networks if not n.active],
                   free_memory=live.free_memory, macs=_macs(live.vms),
                   host=live.host_interfaces, max_vcpus=live.max_vcpus)


def draft(inputs: Validated, live: LiveState, guards: Guards, instance: str,
          targeting: Targeting | None = None) -> Plan:
    """The plan before storage and references are resolved: what each resource needs (it
    tells which facts of the host the final plan must read, see ``core.resolve.needs``).

    With an active ``targeting`` (``core.targeting``), only the VMs it chooses are diffed,
    and only the networks and pools it chooses (those VMs' dependencies included) keep their
    actions: nothing else is created, changed or destroyed. Every domain, manifest and network
    is still seen as a user of what it refers to, and the guards count the whole manifest set
    (an empty set is not one a target made empty). Pure."""
    chosen = (targeting.choose(inputs, live, instance)
              if targeting is not None and targeting.active else None)
    wanted = inputs if chosen is None else chosen.narrow(inputs)
    live_vms = live.vms if chosen is None else tuple(
        vm for vm in live.vms if vm.name in chosen.vms)
    vm_plan = diff.plan(wanted.vms, live_vms, guards, read=live.read,
                        desired_empty=not inputs.vms)
    # VMs this run destroys no longer hold their pools and networks (the executor removes
    # those only after every VM destroy succeeded).
    leaving = {a.name for a in vm_plan.actions if a.kind == Kind.DESTROY}
    staying = tuple(vm for vm in live.vms if vm.name not in leaving)
    hold = held_back(guards, desired_empty=not (inputs.vms or inputs.networks or inputs.pools))
    infra = [
        *pool_diff.plan(inputs.pools, live.pools, instance=instance, vms=staying,
                        wanted_vms=inputs.vms, hold=hold, roots=guards.storage_roots,
                        real_paths=live.real_paths,
                        volume_users=_pool_users(live.storage, leaving)),
        *network_diff.plan(inputs.networks, live.networks, instance=instance, vms=staying,
                           wanted_vms=inputs.vms, hold=hold, host=live.host_interfaces,
                           routes=live.host_routes),
    ]
    # A removal (nothing declares it) comes last, done or held back, as a VM's destroy does;
    # the prune policy keeps what is not to be removed (pending approval, or never).
    if chosen is not None:
        infra = [a for a in infra if chosen.has(a)]
    first = [a for a in infra if a.desired is not None]
    last = [_pruned(a, guards) for a in infra if a.desired is None]
    seen = scope.observed(inputs, live, instance, chosen)  # what it read about its own objects
    vm_actions = _disconnected(vm_plan.actions, wanted, live)
    partial = None if chosen is None or targeting is None else chosen.partial(targeting)
    return Plan((*first, *vm_actions, *last), scope.fingerprint(seen, partial),
                vm_plan.problems, seen, partial)


def _pruned(action: Action, guards: Guards) -> Action:
    """A network's or pool's removal, kept back when the prune policy says so. Pure."""
    if action.kind != Kind.DESTROY:
        return action
    reason = pruning(guards, action.label)
    if reason is None:
        return action
    return replace(action, kind=Kind.BLOCKED, steps=(), reason=reason)


def _disconnected(actions: tuple[Action, ...], inputs: Validated,
                  live: LiveState) -> tuple[Action, ...]:
    """Running NICs off their network's bridge (their port is gone: the network was restarted
    since the VM started) as steps that wait for a restart, which reconnects them; libvirt
    has no call that puts a running NIC back. Pure."""
    ports = {n.name: n.ports for n in live.networks if n.active and n.ports is not None}
    desired = {d.spec.name: d for d in inputs.vms}
    by_name = {a.name: a for a in actions}
    added: list[Action] = []
    changed: dict[str, Action] = {}
    for vm in live.vms:
        want = desired.get(vm.name)
        if not vm.managed or not vm.running or want is None or want.suspend:
            continue
        steps = tuple(
            Step(Op.RECONNECT_NIC, vm_target(vm.name, Part.NIC, mac), "disconnected", network,
                 Effect.PENDING, Cause.NOT_CONNECTED)
            for mac, network, port in vm.live_ports
            if network in ports and port not in ports[network])
        if not steps:
            continue
        action = by_name.get(vm.name)
        if action is None:
            action = Action(Kind.UPDATE, vm_target(vm.name), desired=want, live=vm)
        elif action.kind != Kind.UPDATE:
            continue  # created, destroyed or blocked: nothing to add
        all_steps = (*action.steps, *steps)
        restart = (want.spec.update_policy == "restart" and want.spec.state == PowerState.RUNNING
                   and not any(s.effect == Effect.REFUSED for s in all_steps))
        grown = replace(action, steps=all_steps, restart=action.restart or restart)
        if vm.name in by_name:
            changed[vm.name] = grown
        else:
            added.append(grown)
    out = tuple(changed.get(a.name, a) if a.resource == Resource.VM else a for a in actions)
    return tuple(sorted((*out, *added), key=_vm_order))


def _vm_order(action: Action) -> tuple[int, str]:
    """Actions on declared VMs by name, then destroys and held-back destroys (as the VM diff
    orders them)."""
    return (0 if action.desired is not None else 1, action.name)


def _macs(vms: tuple[LiveVM, ...]) -> dict[str, tuple[str, ...]]:
    """MAC -> the domains with a NIC of it (persistent or running definition)."""
    out: dict[str, set[str]] = {}
    for vm in vms:
        for nic in (*vm.config.nics, *(vm.live_nics or ())):
            if nic.mac:
                out.setdefault(nic.mac, set()).add(vm.name)
    return {mac: tuple(sorted(names)) for mac, names in out.items()}


def _pool_users(storage: StorageView | None, leaving: set[str]) -> dict[str, set[str]]:
    """Pool -> the domains with a volume of it as a disk, but those this run destroys."""
    out: dict[str, set[str]] = {}
    for (pool, _), names in (storage.users.items() if storage else ()):
        out.setdefault(pool, set()).update(n for n in names if n not in leaving)
    return out


