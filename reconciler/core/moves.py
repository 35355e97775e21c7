"""Moves between hosts: a VM that runs here and that the repository now places on another host
is moved there, not destroyed here and created there. Pure.

The host it leaves carries the move out (it holds the VM, its disks and its state); the host
it goes to only waits for it ("arriving", see ``core.fleet.arrivals``). A running VM is
live-migrated by libvirt (peer to peer, its disks copied over NBD into volumes prepared there
first, its definition made persistent there and undefined here only once the migration has
succeeded: libvirt's VIR_MIGRATE_PERSIST_DEST | UNDEFINE_SOURCE). A stopped VM moves cold: each
volume copied through libvirt's storage streams, the definition defined there, then undefined
here. Either way the volumes left here are deleted last, once the VM is there; a move that
stopped after the VM got there, before they were deleted, is finished by the next run
(``leftover``).

What would stop a move half way is checked before it starts, on a fresh read of the
destination (``model.host.Destination``): the host answers, has the pools, room in them and
the memory, no volume or domain of the VM's names is in the way, has the networks, and its
CPU can run the VM. Otherwise the move is blocked with the reason and the VM stays here,
untouched."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime

from reconciler.core.cloudinit import seed_volume
from reconciler.core.defaults import MIGRATION_TIMEOUT
from reconciler.core.model.host import Destination
from reconciler.core.model.vm import DesiredVM, LiveVM, VMSpec
from reconciler.core.plan import (
    Action,
    Effect,
    Kind,
    Op,
    Part,
    Plan,
    Reason,
    Resource,
    Step,
    Why,
    vm_target,
)
from reconciler.core.units import format_bytes


def plan_moves(plan: Plan, here: str, destinations: Mapping[str, Destination],
               suspended: frozenset[str] = frozenset(), *, uuid: str | None = None,
               limit: int | None = None) -> Plan:
    """``plan`` with each VM leaving for a host in ``destinations`` moved there, or blocked
    with why it cannot be. ``here``: this host's name; ``uuid``: its libvirt host UUID (a
    destination that is this very host is refused). A VM whose manifest suspends it
    (``suspended``) is left as it is. The moves to one destination are checked together, in
    name order: each takes its memory and disk room from what the next may use. At most
    ``limit`` moves start in one run (config ``maxMoves``): the others wait for a later one.
    Pure."""
    taken: dict[str, Destination] = {}  # each destination, less what the moves so far take
    started = 0
    out = []
    for action in sorted(plan.actions, key=lambda a: a.name):
        reason = action.reason
        if (reason is not None and reason.why == Why.LEAVING
                and isinstance(action.live, LiveVM) and action.name in suspended):
            action = Action(Kind.BLOCKED, action.target, reason=Reason(Why.SUSPENDED),
                            live=action.live)
        elif (reason is not None and reason.why == Why.LEAVING
                and isinstance(action.live, LiveVM) and reason.names[0] in destinations):
            host = reason.names[0]
            dest = taken.get(host, destinations[host])
            action = move(action.live, here, dest, uuid)
            if action.kind == Kind.MOVE and limit is not None and started >= limit:
                action = Action(Kind.BLOCKED, action.target, action.steps,
                                Reason(Why.MOVE_QUEUED, limit=limit), live=action.live)
            elif action.kind == Kind.MOVE:
                taken[host] = _less(dest, action.live)
                started += 1
        out.append(action)
    by_name = {a.name: a for a in out if a.resource == Resource.VM}
    return replace(plan, actions=tuple(by_name.get(a.name, a) if a.resource == Resource.VM
                                       else a for a in plan.actions))


def _less(dest: Destination, vm: object) -> Destination:
    """``dest`` with the room the move of ``vm`` takes there taken away."""
    assert isinstance(vm, LiveVM)
    memory = (vm.live_memory or vm.config.memory) if vm.running else 0
    need: dict[str, int] = {}
    for pool, _, capacity, _, _ in volumes(vm):
        need[pool] = need.get(pool, 0) + capacity
    return replace(dest, free_memory=None if dest.free_memory is None
                   else dest.free_memory - memory,
                   pools=tuple((p, free - need.get(p, 0)) for p, free in dest.pools))


def volumes(vm: LiveVM) -> tuple[tuple[str, str, int, str, str], ...]:
    """(pool, volume, capacity in bytes, format, part key) of every volume a move takes: each
    disk's, and the cloud-init seed's (capacity 0: not known from the definition)."""
    return spec_volumes(vm.name, vm.config)


def spec_volumes(name: str, spec: VMSpec) -> tuple[tuple[str, str, int, str, str], ...]:
    """``volumes`` of the VM ``name`` as ``spec`` (its definition, or its manifest) gives it."""
    out = [(d.pool, d.volume(name), d.size, d.format, d.name) for d in spec.disks]
    if spec.cloud_init is not None:
        out.append((spec.cloud_init.pool, seed_volume(name), 0, "raw", ""))
    return tuple(out)


# Seconds a move's last steps may take after its migration ends (autostart set there, the
# volumes here deleted): with ``defaults.MIGRATION_TIMEOUT``, how long after a move began the
# copy it left here may still have been written.
SETTLE = 600.0
# Seconds a move record's start may lie ahead of this host's clock (the hosts' clocks differ
# a little); one further ahead proves nothing.
SKEW = 300.0


def leftover(vm: DesiredVM, here: str, instance: str, dest: Destination,
             left: tuple[tuple[str, str, str, float | None], ...], now: float,
             ) -> Action | None:
    """The end of a move of ``vm`` from ``here`` to ``dest`` that stopped once the VM was there
    (the process killed, a delete that failed): of ``left``, (pool, volume, part key: a disk's
    name, "" for the seed, when its file last changed: seconds since the epoch) of each volume
    here that has the name of one of its volumes and that nothing here uses, those the move
    left are deleted, as its last steps would have. ``now``: this host's clock.

    What tells the copy a move left from a volume that only has its name: ``dest`` holds the VM
    as this ``instance``'s; its definition there records that it last moved from ``here``,
    when, and the volumes it took (the record goes with the domain: a cold move defines it
    with it, a live migration carries it in the persistent definition it sends); the volume is
    one of those, and its file last changed before that move can have ended (its start, plus
    ``defaults.MIGRATION_TIMEOUT`` and ``SETTLE``), the start being no later than ``now``
    (give or take ``SKEW``). Anything else is left alone (None). When ``dest`` cannot be read
    nothing is known: the volumes are kept, and the action says so (``Why.LEFT_BEHIND``).
    Pure."""
    name = vm.spec.name
    if not left:
        return None
    if dest.error:
        return kept(vm, dest.host, left, f"{dest.host} cannot be read: {dest.error}")
    if dict(dest.domains).get(name) != instance:
        return None
    record = {domain: (source, at, taken) for domain, source, at, taken in dest.moved}
    source, at, taken = record.get(name, ("", "", ()))
    began = _epoch(at)
    if source != here or began is None or began > now + SKEW:
        return None
    ended = began + MIGRATION_TIMEOUT + SETTLE
    copies = [(key, pool, volume) for pool, volume, key, changed in left
              if (pool, volume) in taken and changed is not None and changed <= ended]
    if not copies:
        return None
    steps = tuple(Step(Op.DELETE_HERE, vm_target(name, Part.DISK, key) if key
                       else vm_target(name, Part.SEED), here, dest.host)
                  for key, _, _ in copies)
    return Action(Kind.MOVE, vm_target(name), steps, desired=vm)


def finishing(action: Action) -> bool:
    """Whether ``action`` is only the end of a move: deleting the copy it left here."""
    return action.kind == Kind.MOVE and not action.has(Op.MIGRATE, Op.DEFINE_THERE,
                                                       Op.UNDEFINE_HERE)


def deleted_here(action: Action) -> tuple[str, ...]:
    """``pool/volume`` of each volume a move deletes here (its DELETE_HERE steps)."""
    if isinstance(action.live, LiveVM):
        name, spec = action.live.name, action.live.config
    elif isinstance(action.desired, DesiredVM):
        name, spec = action.desired.spec.name, action.desired.spec
    else:
        return ()
    by_part = {(Part.SEED if not key else Part.DISK, key): f"{pool}/{volume}"
               for pool, volume, _, _, key in spec_volumes(name, spec)}
    return tuple(by_part[(s.target.part, s.target.key)] for s in action.writing(Op.DELETE_HERE)
                 if (s.target.part, s.target.key) in by_part)


def kept(vm: DesiredVM, host: str, left: tuple[tuple[str, str, str, float | None], ...],
         why: str) -> Action:
    """``vm``'s volumes ``left`` here (as ``leftover``'s), which may be the copy a stopped
    move to ``host`` left, kept for ``why``: blocked, saying so. Pure."""
    shown = ", ".join(f"{pool}/{volume}" for pool, volume, _, _ in left)
    return Action(Kind.BLOCKED, vm_target(vm.spec.name),
                  reason=Reason(Why.LEFT_BEHIND, names=(host, shown, why)), desired=vm)


def _epoch(at: str) -> float | None:
    """Seconds since the epoch of a move record's time (``2026-11-30T12:00:00Z``), or None."""
    try:
        return datetime.strptime(at, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    except ValueError:
        return None


def blocker(vm: LiveVM, dest: Destination, uuid: str | None = None) -> str | None:
    """Why ``vm`` cannot move to ``dest`` now, or None. ``uuid``: this host's libvirt UUID.
    Pure."""
    if dest.error:
        return f"{dest.host} cannot be read: {dest.error}"
    if uuid is not None and dest.uuid == uuid:
        return (f"{dest.host}'s URI {dest.uri} reaches this very host (libvirt host UUID "
                f"{uuid}); fix Host {dest.host}'s uri, or this host's `host` in the config")
    if vm.managed_save:
        return ("it has a managed-save image (its saved memory would be lost); start it, or "
                "remove the image (virsh managedsave-remove), then it moves")
    layered = [d.name for d in vm.config.disks if d.image]
    layered += [d.name for d in vm.live_disks or () if d.overlay]
    if layered:
        return (f"disk {', '.join(sorted(set(layered)))} is a copy-on-write layer over another "
                "volume, which a move does not carry; flatten it (virsh blockpull) or move the "
                "VM by hand")
    if vm.config.firmware == "uefi":
        return "a UEFI VM's NVRAM is not moved between hosts yet; move it by hand"
    if not vm.persistent:
        return "a transient domain cannot be moved; define it first"
    if vm.state not in ("running", "shut off"):
        return f"it is {vm.state}; a move starts only from running or shut off"
    domains = dict(dest.domains)
    if vm.name in domains and not half_moved(vm, dest):
        owner = domains[vm.name]
        whose = "made by hand" if not owner else f"of instance {owner}"
        return f"{dest.host} already has a domain {vm.name!r} ({whose})"
    if half_moved(vm, dest):
        return None  # a cold move defined it there, then stopped: finish it
    pools = dict(dest.pools)
    found = {(pool, name): (capacity, fmt, used)
             for pool, name, capacity, fmt, used in dest.found}
    need: dict[str, int] = {}
    for pool, volume, capacity, fmt, key in volumes(vm):
        if pool not in pools:
            return f"{dest.host} has no active pool {pool!r}"
        if (pool, volume) in dest.volumes:
            there = found.get((pool, volume))
            if there is None or there[2] or there[1] != fmt or (key and there[0] != capacity):
                why = ("in use by a domain there" if there and there[2] else
                       "not the same size and format" if there else "not readable")
                return (f"{dest.host} already has a volume {volume!r} in pool {pool!r} "
                        f"({why}); delete it there if it is a leftover")
            continue  # a copy an interrupted move left: written over, no new room needed
        need[pool] = need.get(pool, 0) + capacity
    for pool, bytes_ in sorted(need.items()):
        if pools[pool] < bytes_:
            return (f"pool {pool!r} on {dest.host} has {format_bytes(pools[pool])} free, the "
                    f"disks take up to {format_bytes(bytes_)}")
    for nic in vm.config.nics:
        if nic.network and nic.network not in dest.networks:
            return f"{dest.host} has no active network {nic.network!r}"
    if vm.running:
        memory = vm.live_memory or vm.config.memory
        if dest.free_memory is not None and dest.free_memory < memory:
            return (f"{dest.host} has {format_bytes(dest.free_memory)} of memory free, the VM "
                    f"takes {format_bytes(memory)}")
        if dict(dest.cpu).get(vm.name) is False:
            return f"{dest.host}'s CPU cannot run this VM's CPU model (libvirt's CPU check)"
    return None


def half_moved(vm: LiveVM, dest: Destination) -> bool:
    """Whether ``dest`` holds this very domain (same UUID, the same instance's mark) while it
    is shut off here: a cold move defined it there, then stopped before undefining it here
    (its volumes were all copied first). A running VM never is (a live migration undefines
    it here itself)."""
    return (not vm.running and vm.mark is not None
            and dict(dest.uuids).get(vm.name) == vm.uuid
            and dict(dest.domains).get(vm.name) == vm.mark.instance)


def move(vm: LiveVM, here: str, dest: Destination, uuid: str | None = None) -> Action:
    """The move of ``vm`` from ``here`` to ``dest``, or the blocked action saying why not.
    ``uuid``: this host's libvirt UUID."""
    me = vm_target(vm.name)
    why = blocker(vm, dest, uuid)
    if why is not None:
        return Action(Kind.BLOCKED, me, reason=Reason(Why.MOVE_BLOCKED, names=(dest.host, why)),
                      live=vm)
    steps: list[Step] = []
    parts = [(vm_target(vm.name, Part.DISK, key) if key else vm_target(vm.name, Part.SEED),
              pool, volume) for pool, volume, _, _, key in volumes(vm)]
    if half_moved(vm, dest):  # already there: what was left to do
        steps.append(Step(Op.UNDEFINE_HERE, me, here, dest.host))
        steps += [Step(Op.DELETE_HERE, target, here, dest.host) for target, _, _ in parts]
        return Action(Kind.MOVE, me, tuple(steps), live=vm)
    if vm.running:
        for target, _, _ in parts:  # disks: empty volumes for NBD; the seed: read-only, copied
            op = Op.COPY_VOLUME if target.part == Part.SEED else Op.PREPARE_VOLUME
            steps.append(Step(op, target, here, dest.host))
        steps.append(Step(Op.MIGRATE, me, here, dest.host, Effect.LIVE))
    else:
        steps += [Step(Op.COPY_VOLUME, target, here, dest.host) for target, _, _ in parts]
        steps.append(Step(Op.DEFINE_THERE, me, here, dest.host))
        steps.append(Step(Op.UNDEFINE_HERE, me, here, dest.host))
    steps += [Step(Op.DELETE_HERE, target, here, dest.host) for target, _, _ in parts]
    return Action(Kind.MOVE, me, tuple(steps), live=vm)
