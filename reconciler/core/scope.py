"""What a plan read about its own objects: the scope of its fingerprint. Pure.

A plan saved with ``plan --out`` is applied (``apply --plan``) only while everything it read
about its own objects is as it was; on a host shared by several tenants (reconciler instances,
other tools, people), nothing else may refuse it. Its own objects, each observed as one entry:

- ``manifest vm NAME`` (``network``, ``pool``): each object a manifest declares, by the hash
  of its spec and its annotations (not by its file's path, which differs between a CI runner
  and the host);
- ``vm NAME``: each domain this instance manages, and each name a VirtualMachine manifest
  declares, present or not (a domain that takes a name the plan creates is a conflict);
- ``network NAME`` / ``pool NAME``: each one the manifests declare or this instance manages,
  and each one its VMs' NICs and disks (images, cloud-init seeds) refer to. Of a network, only
  the ports of this instance's running VMs count (other guests' ports come and go); of a
  network or pool this instance would remove, also who uses it;
- ``volume POOL/NAME``: each volume its VMs' disks and seeds are or would be, and each image
  they are made from: whether it exists, its details when the plan read them, who uses it;
- ``mac MAC``: each MAC address a manifest sets, and the domains that have it;
- ``bridge NAME``: each host bridge its NICs or networks name, and whether the host has it.

Left out on purpose: other tenants' and unmanaged domains that no manifest names, other
networks, pools and volumes, and the capacity facts that move all the time (the host's free
memory, a pool's free bytes). What the plan decides from those (a VM start or a raw copy that
does not fit, a subnet, bridge or directory another object has) is in the plan's actions, which
``apply --plan`` makes again from a fresh read and compares, so a plan that no longer fits is
never applied: it is refused, naming the action that changed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from reconciler.core.cloudinit import seed_volume
from reconciler.core.live import LiveState
from reconciler.core.model.network import LiveNetwork
from reconciler.core.model.pool import LivePool
from reconciler.core.model.storage import StorageView, VolumeKey
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Partial, domain_digest
from reconciler.core.validate.result import Validated

if TYPE_CHECKING:
    from reconciler.core.targeting import Chosen

ABSENT = "absent"
Observed = tuple[tuple[str, str], ...]  # (object, a digest of what was read of it), sorted


def observed(inputs: Validated, live: LiveState, instance: str,
             chosen: Chosen | None = None) -> Observed:
    """Each object in the plan's scope (see the module) with a short digest of what the plan
    read of it, or ``absent``. ``instance``: the reconciler instance planning; ``chosen``: the
    objects a targeted run plans (``core.targeting``), None: all of them. Pure."""
    if chosen is not None:
        inputs = chosen.narrow(inputs)
    # owned_view: the others' marks are hidden
    mine = [vm for vm in live.vms if vm.managed and (chosen is None or vm.name in chosen.vms)]
    declared = {d.spec.name: d for d in inputs.vms}
    entries: dict[str, str] = {}
    for vm in inputs.vms:
        entries[f"manifest vm {vm.spec.name}"] = _digest(vm.spec_hash, vm.adopt, vm.suspend)
    for net in inputs.networks:
        entries[f"manifest network {net.spec.name}"] = _digest(net.spec_hash)
    for pool in inputs.pools:
        entries[f"manifest pool {pool.spec.name}"] = _digest(pool.spec_hash)
    _domains(entries, live, {*declared, *(vm.name for vm in mine)})
    own_nets = [n for n in live.networks if n.mark is not None and n.mark.instance == instance
                and (chosen is None or n.name in chosen.networks)]
    own_pools = [p for p in live.pools if p.owner == instance
                 and (chosen is None or p.name in chosen.pools)]
    nets = _network_names(inputs, mine, own_nets)
    pools = _pool_names(inputs, mine, own_pools)
    leaving_nets = {n.name for n in own_nets} - {n.spec.name for n in inputs.networks}
    leaving_pools = {p.name for p in own_pools} - {p.spec.name for p in inputs.pools}
    _networks(entries, live, nets, mine, leaving_nets)
    _pools(entries, live, pools, leaving_pools)
    if live.storage is not None:
        _volumes(entries, live.storage, declared.values(), mine, live.pools)
    _macs(entries, declared.values(), live.vms)
    if live.host_interfaces is not None:
        bridges = {n.bridge for d in declared.values() for n in d.spec.nics if n.bridge}
        bridges |= {n.spec.bridge for n in inputs.networks if n.spec.bridge}
        for bridge in bridges:
            entries[f"bridge {bridge}"] = ("present" if bridge in live.host_interfaces
                                           else ABSENT)
    return tuple(sorted(entries.items()))


def fingerprint(seen: Observed, partial: Partial | None = None) -> str:
    """A digest of ``observed`` (and of a targeted run's options, ``partial``): equal exactly
    when every entry is, and the run targets the same. Pure."""
    digest = hashlib.sha256()
    if partial is not None:
        digest.update(f"target\0{partial.text}\n".encode())
    for name, value in seen:
        digest.update(f"{name}\0{value}\n".encode())
    return digest.hexdigest()[:16]


def moved(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """What moved between two observations of a plan's objects, in words: ``vm web-01
    changed``, ``vm web-02 appeared``, ``network lab is gone``. Pure."""
    out = []
    for name in sorted({*old, *new}):
        before, now = old.get(name, ABSENT), new.get(name, ABSENT)
        if before == now:
            continue
        if before == ABSENT:
            out.append(f"{name} appeared")
        elif now == ABSENT:
            out.append(f"{name} is gone")
        else:
            out.append(f"{name} changed")
    return out


def _digest(*parts: object) -> str:
    return hashlib.blake2b(repr(parts).encode(), digest_size=6).hexdigest()


def _domains(entries: dict[str, str], live: LiveState, names: Iterable[str]) -> None:
    by_name = {vm.name: vm for vm in live.vms}
    for name in names:
        vm = by_name.get(name)
        entries[f"vm {name}"] = ABSENT if vm is None else _digest(
            live.read.get(name) or domain_digest(vm), vm.owner, vm.managed)


def _network_names(inputs: Validated, mine: list[LiveVM], own: Iterable[LiveNetwork],
                   ) -> set[str]:
    names = {n.spec.name for n in inputs.networks}
    names |= {n.network for d in inputs.vms for n in d.spec.nics if n.network}
    names |= {n.network for vm in mine for n in (*vm.config.nics, *(vm.live_nics or ()))
              if n.network}
    names |= {network for vm in mine for _, network, _ in vm.live_ports}
    return names | {n.name for n in own}


def _networks(entries: dict[str, str], live: LiveState, names: set[str], mine: list[LiveVM],
              leaving: set[str]) -> None:
    by_name = {n.name: n for n in live.networks}
    ports = {port for vm in mine for _, _, port in vm.live_ports}
    for name in names:
        net = by_name.get(name)
        if net is None:
            entries[f"network {name}"] = ABSENT
            continue
        kept = None if net.ports is None else tuple(p for p in net.ports if p in ports)
        users: tuple[str, ...] = ()
        if name in leaving:  # removed unless a domain, anyone's, still uses it
            users = tuple(sorted(vm.name for vm in live.vms if any(
                n.network == name for n in (*vm.config.nics, *(vm.live_nics or ())))))
        entries[f"network {name}"] = _digest(net.name, net.active, net.config, net.mark,
                                             net.running, kept, users)


def _pool_names(inputs: Validated, mine: list[LiveVM], own: Iterable[LivePool]) -> set[str]:
    names = {p.spec.name for p in inputs.pools}
    for spec in (*(d.spec for d in inputs.vms), *(vm.config for vm in mine)):
        names |= {d.pool for d in spec.disks}
        if spec.cloud_init is not None:
            names.add(spec.cloud_init.pool)
    return names | {p.name for p in own}


def _pools(entries: dict[str, str], live: LiveState, names: set[str],
           leaving: set[str]) -> None:
    by_name = {p.name: p for p in live.pools}
    for name in names:
        pool = by_name.get(name)
        if pool is None:
            entries[f"pool {name}"] = ABSENT
            continue
        users: tuple[str, ...] = ()
        if name in leaving and live.storage is not None:  # removed unless it is in use
            users = tuple(sorted({u for (p, _), names_ in live.storage.users.items()
                                  if p == name for u in names_}))
        real = live.real_paths.get(pool.config.path, pool.config.path)
        entries[f"pool {name}"] = _digest(pool, real, users)


def _volumes(entries: dict[str, str], storage: StorageView, declared: Iterable[DesiredVM],
             mine: list[LiveVM], pools: Iterable[LivePool]) -> None:
    own: set[VolumeKey] = set()
    images: set[VolumeKey] = set()
    for name, spec in (*((d.spec.name, d.spec) for d in declared),
                       *((vm.name, vm.config) for vm in mine)):
        own |= {(d.pool, d.volume(name)) for d in spec.disks}
        images |= {(d.pool, d.image) for d in spec.disks if d.image}
        if spec.cloud_init is not None:
            own.add((spec.cloud_init.pool, seed_volume(name)))
    by_pool = {p.name: p for p in pools}
    backs: dict[str, set[str]] = {}  # path -> the volumes read in detail that it backs
    for volumes in storage.details.values():
        for v in volumes:
            if v.backing:
                backs.setdefault(v.backing, set()).add(f"volume {v.pool}/{v.name}")
    for key in own | images:
        pool, name = key
        if not storage.exists(key):
            entries[f"volume {pool}/{name}"] = ABSENT
            continue
        users = set(storage.users.get(key, ()))
        if key in own:  # an image's other readers (other tenants' guests) are not its users
            path = storage.path(key, by_pool)
            if path:
                users |= set(storage.file_users.get(path, ())) | backs.get(path, set())
        entries[f"volume {pool}/{name}"] = _digest(storage.info(key), tuple(sorted(users)))


def _macs(entries: dict[str, str], declared: Iterable[DesiredVM],
          live: Iterable[LiveVM]) -> None:
    wanted = {n.mac.lower() for d in declared for n in d.spec.nics if n.mac}
    if not wanted:
        return
    holders: dict[str, set[str]] = {}
    for vm in live:
        for nic in (*vm.config.nics, *(vm.live_nics or ())):
            if nic.mac and nic.mac.lower() in wanted:
                holders.setdefault(nic.mac.lower(), set()).add(vm.name)
    for mac in wanted:
        entries[f"mac {mac}"] = ",".join(sorted(holders.get(mac, ()))) or ABSENT


# What of an action decides what apply does (not the words, nor where the manifest lies: that
# differs between a CI runner and the host, nor the domain's state reason).
_DECIDES = ("resource", "name", "kind", "changes", "steps", "restart", "pendingRestart", "why")


def refusals(saved: Mapping[str, object], fresh: Mapping[str, object]) -> list[str]:
    """Why a saved plan (``plan --out``, as JSON) may not be applied, given the plan made now
    from a fresh read (``render.plan_json``): made for another instance, an object it read
    moved (see ``moved``), or an action that differs now. Empty: it may be applied. Pure."""
    actions = saved.get("actions")
    if saved.get("kind") != "Plan" or not isinstance(actions, list):
        return ["it is not a saved plan"]
    made_for, now = saved.get("instance"), fresh.get("instance")
    if made_for is not None and made_for != now:
        return [f"it was made for instance {made_for!r}, not {now!r}"]
    if _target_text(saved) != _target_text(fresh):
        return [f"it was made for {_target_text(saved) or 'every object'}, not "
                f"{_target_text(fresh) or 'every object'}"]
    seen, fresh_seen = saved.get("observed"), fresh.get("observed")
    out = []
    if isinstance(seen, dict) and isinstance(fresh_seen, dict):
        out = moved(seen, fresh_seen)
    then, now_ = saved.get("problems"), fresh.get("problems")
    if isinstance(then, list) and isinstance(now_, list) and len(then) != len(now_):
        out.append(f"manifest problems: {len(then)} then, {len(now_)} now")
    if not out and saved.get("fingerprint") != fresh.get("fingerprint"):
        out.append("what it read of the host changed (made by another version?)")
    fresh_actions = fresh.get("actions")
    return out + _actions_moved(actions, fresh_actions if isinstance(fresh_actions, list)
                                else [])


def _target_text(doc: Mapping[str, object]) -> str:
    target = doc.get("target")
    return str(target.get("text", "")) if isinstance(target, Mapping) else ""


def _actions_moved(old: list[object], new: list[object]) -> list[str]:
    def keyed(actions: list[object]) -> dict[str, Mapping[str, object]]:
        out: dict[str, Mapping[str, object]] = {}
        for a in actions:
            if isinstance(a, Mapping):
                name, resource = a.get("name"), a.get("resource")
                out[str(name) if resource == "vm" else f"{resource}/{name}"] = a
        return out

    def shown(action: Mapping[str, object]) -> str:
        return f"`{action.get('symbol', '?')} {action.get('text', '')}`"

    before, after = keyed(old), keyed(new)
    out = []
    for label in sorted({*before, *after}):
        was, now = before.get(label), after.get(label)
        if was is None and now is not None:
            out.append(f"{label}: not in the plan, now {shown(now)}")
        elif now is None and was is not None:
            out.append(f"{label}: planned {shown(was)}, now nothing to do")
        elif was is not None and now is not None and any(
                was.get(k) != now.get(k) for k in _DECIDES):
            out.append(f"{label}: planned {shown(was)}, now {shown(now)}")
    return out
