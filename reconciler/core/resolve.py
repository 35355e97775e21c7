"""References and storage, resolved at plan time against what was observed. Pure.

The diff says what each resource needs; this pass decides, from the observation, how apply gets
it, and refuses what apply could not do, so that nothing is created for it:
- a disk's volume is created, or a retained volume of the same name is reused (grown when
  smaller); a volume that another domain uses, that backs another volume, of another format, or
  larger than the disk, is refused;
- a disk's pool, image and a NIC's network must exist on the host or be declared;
- a volume is deleted (``reclaim: delete``, a destroy, a seed) only when nothing else uses it;
  otherwise it is kept, and the plan says who uses it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.network import DesiredNetwork
from reconciler.core.model.pool import DesiredPool, LivePool
from reconciler.core.model.storage import StorageView, VolumeKey
from reconciler.core.model.vm import DesiredVM, Disk, Nic, PowerState, volume_name
from reconciler.core.plan import (
    Action,
    Cause,
    Effect,
    Op,
    Part,
    Plan,
    Resource,
    Step,
)

_SEEDS = (Op.ATTACH_SEED, Op.WRITE_SEED, Op.MOVE_SEED)


def needs(plan: Plan) -> frozenset[str]:
    """The pools whose volumes the plan must know in detail (format, capacity, path, backing
    file): where it creates, reuses or deletes a volume. Pure."""
    pools: set[str] = set()
    for action in plan.actions:
        if action.resource != Resource.VM:
            continue
        for step in action.steps:
            if step.op in (Op.ATTACH_DISK, Op.CREATE_VOLUME) and isinstance(step.new, Disk):
                pools.add(step.new.pool)
            elif step.op in (Op.DETACH_DISK, Op.DELETE_VOLUME) and isinstance(step.old, Disk):
                pools.add(step.old.pool)
            elif step.op == Op.DELETE_SEED and isinstance(step.old, str):
                pools.add(step.old)
    return frozenset(pools)


def resolve(plan: Plan, storage: StorageView | None, *, pools: Iterable[LivePool],
            networks: Iterable[str], free_memory: int | None = None,
            inactive_networks: Iterable[str] = (),
            macs: Mapping[str, tuple[str, ...]] | None = None,
            host: tuple[str, ...] | None = None, max_vcpus: int | None = None) -> Plan:
    """``plan`` with its storage decided and its references checked against ``storage`` and
    the live ``pools`` and ``networks`` (names); with ``storage`` None (nothing observed, as in
    the plan case tables), ``plan`` as it is. Pure."""
    if storage is None:
        return plan
    # A pool or network this plan creates (or starts), and does not refuse, will be there.
    declared_pools = {a.name for a in plan.actions
                      if isinstance(a.desired, DesiredPool) and a.writes}
    declared_nets = {a.name for a in plan.actions
                     if isinstance(a.desired, DesiredNetwork) and a.writes}
    live_pools = {p.name: p for p in pools}
    known = _Known(storage, live_pools, declared_pools, {*networks, *declared_nets},
                   set(inactive_networks), macs or {}, host)
    actions = tuple(_vcpus(known.action(a), max_vcpus) for a in plan.actions)
    return replace(plan, actions=_capacity(actions, storage, free_memory))


def _vcpus(action: Action, limit: int | None) -> Action:
    """A VM whose maxVcpus is above what the host's machine type allows (libvirt refuses the
    definition) gets a refused step. Pure."""
    want = action.desired
    if (limit is None or not isinstance(want, DesiredVM) or not action.writes
            or want.spec.max_vcpus <= limit):
        return action
    refused = Step(Op.SET_MAX_VCPUS, action.target, None, want.spec.max_vcpus, Effect.REFUSED,
                   Cause.VCPUS_LIMIT, names=(str(limit),))
    return replace(action, steps=(refused, *action.steps))


def _capacity(actions: Iterable[Action], storage: StorageView,
              free_memory: int | None) -> tuple[Action, ...]:
    """What creating the volumes takes from each pool's free bytes (see ``_growth``: thin
    volumes take nothing at once, so a pool may be overcommitted), and the VMs to start
    against the host's available memory (each at its memory: QEMU takes the guest's RAM as
    the guest touches it, and a ballooned guest holds about its memory), in plan order: what
    does not fit is refused, with the numbers. A pool or host that says nothing is not
    checked."""
    available = storage.available
    used: dict[str, int] = {}
    memory = 0
    out = []
    for action in actions:
        if action.resource != Resource.VM or not action.writes:
            out.append(action)
            continue
        steps = []
        for step in action.steps:
            grows = _growth(action, step, storage)
            if grows and step.writes:
                pool, size = grows
                if pool in available and used.get(pool, 0) + size > available[pool]:
                    needed = used.get(pool, 0) + size
                    step = replace(step, effect=Effect.REFUSED, cause=Cause.NO_SPACE,
                                   names=(pool, str(needed), str(available[pool])))
                else:
                    used[pool] = used.get(pool, 0) + size
            if step.op == Op.START and step.writes and free_memory is not None and isinstance(
                    action.desired, DesiredVM):
                need = action.desired.spec.memory
                if memory + need > free_memory:
                    step = replace(step, effect=Effect.REFUSED, cause=Cause.NO_MEMORY,
                                   names=(str(memory + need), str(free_memory)))
                else:
                    memory += need
            steps.append(step)
        out.append(replace(action, steps=tuple(steps)))
    return tuple(out)


def _growth(action: Action, step: Step, details: StorageView) -> tuple[str, int] | None:
    """(pool, bytes) a step takes from a pool when it is carried out: volumes are thin (a new
    qcow2 or raw volume, a grown one, take space only as the guest writes), so only a raw
    disk made from an image, a full copy, takes the image's size at once."""
    disk = step.new
    if step.op != Op.CREATE_VOLUME or not isinstance(disk, Disk):
        return None
    if disk.format != "raw" or not disk.image:
        return None
    image = details.info((disk.pool, disk.image))
    return (disk.pool, image.capacity) if image is not None else None


class _Known:
    def __init__(self, storage: StorageView, pools: Mapping[str, LivePool],
                 declared_pools: set[str], networks: set[str], inactive: set[str],
                 macs: Mapping[str, tuple[str, ...]], host: tuple[str, ...] | None) -> None:
        self.storage, self.pools = storage, pools
        self.declared_pools, self.networks, self.macs = declared_pools, networks, macs
        self.inactive = inactive  # networks defined but not active
        self.host = host
        self.runs = True  # the VM whose steps are resolved will run
        self.seed_pool = ""  # the pool of its cloud-init seed

    def action(self, action: Action) -> Action:
        if action.resource != Resource.VM or not action.steps:
            return action
        steps: list[Step] = []
        self.runs = not isinstance(action.desired, DesiredVM) or (
            action.desired.spec.state == PowerState.RUNNING)
        seed = action.desired.spec.cloud_init if isinstance(action.desired, DesiredVM) else None
        self.seed_pool = seed.pool if seed is not None else ""
        for step in action.steps:
            steps.extend(self.step(action.name, step))
        for step in list(steps):  # a removed disk whose volume is kept says so
            if step.op == Op.KEEP_VOLUME and step.cause == Cause.IN_USE:
                steps = [replace(s, cause=Cause.IN_USE, names=step.names)
                         if s.op == Op.DETACH_DISK and s.target == step.target else s
                         for s in steps]
        return replace(action, steps=tuple(steps))

    def step(self, vm: str, step: Step) -> list[Step]:
        if not step.writes and step.op != Op.ATTACH_DISK:
            return [step]
        if step.op == Op.ATTACH_DISK and isinstance(step.new, Disk):
            if step.cause == Cause.NOT_PLUGGED:
                return [step]  # in the config already: its volume is the domain's own
            return self.attach_disk(vm, step, step.new)
        if step.op == Op.CREATE_VOLUME and isinstance(step.new, Disk):
            # The volume of a disk in the definition, which an interrupted apply did not make.
            return self.new_volume(vm, step, step.new) or [step]
        if step.op == Op.ATTACH_NIC and isinstance(step.new, Nic):
            network = step.new.network
            # A VM that runs needs the network active; a stopped one, the network defined.
            known = self.networks if self.runs else self.networks | self.inactive
            if network is not None and network not in known:
                return [replace(step, effect=Effect.REFUSED, cause=Cause.NETWORK_MISSING)]
            bridge = step.new.bridge
            if bridge is not None and self.host is not None and bridge not in self.host:
                return [replace(step, effect=Effect.REFUSED, cause=Cause.BRIDGE_MISSING)]
            others = tuple(d for d in self.macs.get(step.new.mac or "", ()) if d != vm)
            if others:  # two guests with one MAC: frames go to either
                return [replace(step, effect=Effect.REFUSED, cause=Cause.MAC_TAKEN,
                                names=others)]
            return [step]
        if step.op in _SEEDS and step.target.part == Part.SEED:
            seed: VolumeKey = (self.seed_pool, seed_volume(vm))
            users = tuple(u for u in self.storage.users.get(seed, ()) if u != vm)
            if users:  # writing the seed would replace another domain's disk
                return [replace(step, effect=Effect.REFUSED, cause=Cause.IN_USE, names=users)]
            return [step]
        if step.op == Op.DELETE_VOLUME and isinstance(step.old, Disk):
            key: VolumeKey = (step.old.pool, volume_name(vm, step.old.name))
            users = tuple(u for u in self.storage.using(key, self.pools) if u != vm)
            if users:  # kept: deleting it would break who uses it
                return [replace(step, op=Op.KEEP_VOLUME, cause=Cause.IN_USE, names=users)]
        return [step]

    def pool_exists(self, pool: str) -> bool:
        live = self.pools.get(pool)
        return (live is not None and live.active) or pool in self.declared_pools

    def attach_disk(self, vm: str, step: Step, disk: Disk) -> list[Step]:
        key: VolumeKey = (disk.pool, volume_name(vm, disk.name))
        if not self.pool_exists(disk.pool):
            return [replace(step, effect=Effect.REFUSED, cause=Cause.POOL_MISSING)]
        if not self.storage.exists(key):
            prepare = Step(Op.CREATE_VOLUME, step.target, None, disk, step.effect)
            return self.new_volume(vm, step, disk) or [prepare, step]
        info = self.storage.info(key)
        using = self.storage.using(key, self.pools)
        # The VM itself under another source: the base of an external snapshot overlay.
        users = tuple(u if u != vm else f"{vm} itself (under another source: the base of "
                      "a snapshot overlay?)" for u in using)
        if users:
            return [replace(step, effect=Effect.REFUSED, cause=Cause.IN_USE, old=info,
                            names=users)]
        if info is not None and info.format and info.format != disk.format:
            return [replace(step, effect=Effect.REFUSED, cause=Cause.VOLUME_FORMAT,
                            old=info)]
        if info is not None and info.capacity > disk.size:
            return [replace(step, effect=Effect.REFUSED, cause=Cause.VOLUME_LARGER,
                            old=info)]
        return [Step(Op.REUSE_VOLUME, step.target, info, disk, step.effect), step]

    def new_volume(self, vm: str, step: Step, disk: Disk) -> list[Step] | None:
        """Why the disk's volume cannot be made (``step`` refused), or None: its pool, and
        its image when it has one."""
        if not self.pool_exists(disk.pool):
            return [replace(step, effect=Effect.REFUSED, cause=Cause.POOL_MISSING)]
        if not disk.image:
            return None
        image: VolumeKey = (disk.pool, disk.image)
        new_pool = disk.pool not in self.pools  # made by this plan: cannot hold it yet
        if new_pool or not self.storage.exists(image):
            return [replace(step, effect=Effect.REFUSED, cause=Cause.IMAGE_MISSING)]
        users = tuple(u for u in self.storage.users.get(image, ()) if u != vm)
        if users:  # another VM's live disk: its data would leak, its writes corrupt
            return [replace(step, effect=Effect.REFUSED, cause=Cause.IN_USE, names=users)]
        base = self.storage.info(image)
        if base is not None and base.capacity > disk.size:  # a disk cannot shrink it
            return [replace(step, effect=Effect.REFUSED, cause=Cause.IMAGE_LARGER, old=base)]
        return None
