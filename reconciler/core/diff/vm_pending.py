"""Interrupted work: the record of unfinished work in a domain's mark (``model.common.Pending``),
as the planner finishes it and as apply writes it. Pure: no libvirt, no files, no clock.

Apply orders every multi-step action so that what an interruption (kill -9, a host crash, a
halt on SIGTERM) leaves is still visible and owned, and writes the record with (or before) the
first change:

- create: the definition with its mark and the record (the volumes to create, the seed to
  write) first; then the volumes and the seed; then the record is cleared; then autostart and
  start. A domain is thus never missing while a volume of its exists, and a volume whose create
  is recorded has never been used by the guest: it goes with the disk or the VM whatever its
  ``reclaim`` (the disk was never handed over), and a missing one is made, not refused.
- update: grown and reused volumes first (the mark records sizes only once they are true),
  then the definition with the record (volumes to create and delete, the seed to write or
  delete, devices to unplug), then the work, each part cleared from the record once done.
  A delete waits while the running VM still holds the disk; the record keeps it until then.
- destroy: stop, then the volumes and the seed, then undefine last: until the undefine, the
  domain is marked and has no manifest, so the next plan destroys it again (a volume already
  gone is deleted; "not found" about another object never counts as done).
"""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.model.common import CREATE, DELETE, DISK, NIC, SEED, UNPLUG, WRITE, Pending
from reconciler.core.model.vm import DesiredVM, Disk, LiveVM, VMSpec
from reconciler.core.plan import Action, Effect, Op, Part, Step, vm_target
from reconciler.core.record import Record
from reconciler.core.xml.devices import UNKNOWN_SIZE

_SEED_WRITES = (Op.ATTACH_SEED, Op.WRITE_SEED, Op.MOVE_SEED)


@dataclass(frozen=True, eq=False, repr=False)
class Recorded(Record):
    """What a managed domain's mark records as unfinished, by kind."""

    entries: tuple[Pending, ...] = ()

    @classmethod
    def of(cls, vm: LiveVM | None) -> Recorded:
        return cls(vm.mark.pending if vm is not None and vm.mark is not None else ())

    @property
    def creating(self) -> frozenset[str]:
        """Disks whose volume an interrupted create (or add) was to make."""
        return frozenset(p.key for p in self.entries if p.op == CREATE and p.part == DISK)

    @property
    def rewrite(self) -> bool:
        """The seed's content is not known to be complete."""
        return any(p.op == WRITE for p in self.entries)

    @property
    def unplugging(self) -> frozenset[tuple[str, str]]:
        """(part, key) of devices an interrupted update was to unplug from the running VM."""
        return frozenset((p.part, p.key) for p in self.entries if p.op == UNPLUG)

    def deleting(self, part: str) -> tuple[Pending, ...]:
        return tuple(p for p in self.entries if p.op == DELETE and p.part == part)

    @property
    def deleted_disks(self) -> frozenset[str]:
        """Disks whose volume is to be deleted."""
        return frozenset(p.key for p in self.deleting(DISK))

    def shown(self) -> tuple[str, ...]:
        """The entries as the plan lists them."""
        return tuple(" ".join(w for w in (p.op, p.part, p.key) if w) for p in self.entries)


def steps(d: VMSpec, have: LiveVM) -> tuple[list[Step], list[Step]]:
    """The steps that finish what ``have``'s mark records, beyond those the field diff makes
    from it (a missing volume created, the seed written again, an unplug sent again): volumes
    and seeds left to delete, and the step that writes the record anew. Returns (steps, deletes
    that wait for the running VM to release their disk: done only by a restart). Pure."""
    recorded = Recorded.of(have)
    if not recorded.entries:
        return [], []
    wanted = {disk.name for disk in d.disks}
    configured = {disk.name: disk for disk in have.config.disks}
    live = {disk.name: disk for disk in have.live_disks or ()}
    out: list[Step] = []
    waiting: list[Step] = []
    for entry in recorded.deleting(DISK):
        if entry.key in wanted or entry.key in configured:
            continue  # the disk is back (or never left): its volume is kept, and reused
        held = live.get(entry.key)
        disk = Disk(entry.key, held.size if held else UNKNOWN_SIZE, entry.pool,
                    reclaim="delete")
        step = Step(Op.DELETE_VOLUME, vm_target(d.name, Part.DISK, entry.key), disk, None)
        # Held by the running VM: it waits for the guest to let it go, unless the unplug was
        # never sent (it is sent now, and the volume deleted if the guest lets it go at once).
        unplugged = (DISK, entry.key) not in recorded.unplugging
        (waiting if held is not None and unplugged else out).append(step)
    # The seed pools in use: the definition's (it stays, or its removal deletes it) and the
    # manifest's (written this run).
    seeds = {s.pool for s in (have.config.cloud_init, d.cloud_init) if s is not None}
    for entry in (*recorded.deleting(SEED),
                  *(p for p in recorded.entries if p.op == WRITE and d.cloud_init is None)):
        if entry.pool in seeds:
            continue
        out.append(Step(Op.DELETE_SEED, vm_target(d.name, Part.SEED), entry.pool, None))
    if len(waiting) < len(recorded.entries):  # something to finish, or to drop from it
        out.append(Step(Op.FINISH, vm_target(d.name), recorded.shown(), None))
    return out, waiting


def destroy_steps(vm: LiveVM) -> list[Step]:
    """What a destroy deletes beyond the disks its definition names: volumes and seeds an
    interrupted update was to delete. Pure."""
    recorded = Recorded.of(vm)
    configured = {disk.name for disk in vm.config.disks}
    seed = vm.config.cloud_init
    out = [Step(Op.DELETE_VOLUME, vm_target(vm.name, Part.DISK, p.key),
                Disk(p.key, UNKNOWN_SIZE, p.pool, reclaim="delete"), None)
           for p in recorded.deleting(DISK) if p.key not in configured]
    pools = {p.pool for p in recorded.entries if p.part == SEED and p.op in (DELETE, WRITE)}
    out += [Step(Op.DELETE_SEED, vm_target(vm.name, Part.SEED), pool, None)
            for pool in sorted(pools) if seed is None or seed.pool != pool]
    return out


def record(action: Action) -> tuple[Pending, ...]:
    """What apply records in the mark before it carries out ``action`` (an update or a create
    of a VM): the volumes it creates and deletes, the seed it writes or deletes, the devices it
    unplugs from the running VM, and the deletes recorded earlier that still wait for the
    running VM to release their disk. Pure."""
    have = action.live if isinstance(action.live, LiveVM) else None
    want = action.desired if isinstance(action.desired, DesiredVM) else None
    out: list[Pending] = []
    live_disks = {disk.name for disk in (have.live_disks or ())} if have else set()
    live_macs = {nic.mac for nic in (have.live_nics or ())} if have else set()
    deleting = set()
    for step in action.steps:
        if not step.writes:
            continue
        key = step.target.key
        if step.op == Op.CREATE_VOLUME and isinstance(step.new, Disk):
            out.append(Pending(CREATE, DISK, key, step.new.pool))
        elif step.op in _SEED_WRITES and want is not None and want.spec.cloud_init:
            out.append(Pending(WRITE, SEED, "", want.spec.cloud_init.pool))
        if step.op == Op.DELETE_VOLUME and isinstance(step.old, Disk):
            out.append(Pending(DELETE, DISK, key, step.old.pool))
            deleting.add(key)
        elif step.op in (Op.DELETE_SEED, Op.MOVE_SEED) and isinstance(step.old, str):
            out.append(Pending(DELETE, SEED, "", step.old))
        elif step.op == Op.DETACH_SEED and have is not None and have.config.cloud_init:
            out.append(Pending(DELETE, SEED, "", have.config.cloud_init.pool))
        elif step.op == Op.DETACH_DISK and step.effect == Effect.LIVE and key in live_disks:
            out.append(Pending(UNPLUG, DISK, key))
        elif step.op == Op.DETACH_NIC and step.effect == Effect.LIVE and key in live_macs:
            out.append(Pending(UNPLUG, NIC, key))
    wanted = {disk.name for disk in want.spec.disks} if want else set()
    out += [p for p in Recorded.of(have).deleting(DISK)
            if p.key in live_disks and p.key not in deleting and p.key not in wanted]
    return tuple(dict.fromkeys(out))


def without(entries: tuple[Pending, ...], *ops: str) -> tuple[Pending, ...]:
    """``entries`` but those of ``ops`` (the work done)."""
    return tuple(p for p in entries if p.op not in ops)
