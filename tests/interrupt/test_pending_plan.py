"""The planner reading what an interrupted apply recorded in a domain's mark. Pure: no libvirt."""

from __future__ import annotations

from dataclasses import replace

from reconciler.core.diff import vm as diff
from reconciler.core.model.common import Mark, Pending, Source
from reconciler.core.model.vm import (
    CloudInit,
    DesiredVM,
    Disk,
    LiveVM,
    PowerState,
    VMSpec,
    applied_record,
)
from reconciler.core.plan import Effect, Op

MiB = 1 << 20
ROOT = Disk("root", 8 * MiB)
DATA = Disk("data", 8 * MiB, reclaim="delete")


def _spec(*disks: Disk, seed: CloudInit | None = None, running: bool = False) -> VMSpec:
    return VMSpec("vm", 1, 64 * MiB, 1, 64 * MiB, disks=disks, cloud_init=seed,
                  state=PowerState.RUNNING if running else PowerState.STOPPED)


def _want(spec: VMSpec) -> DesiredVM:
    return DesiredVM(spec, Source("vm.yaml", "vm.yaml", 1), "hash")


def _live(spec: VMSpec, *pending: Pending, live_disks: tuple[Disk, ...] | None = None) -> LiveVM:
    mark = Mark("vm.yaml", "hash", None, applied_record(spec), "default", pending=pending)
    running = spec.state == PowerState.RUNNING
    extra = {"live_vcpus": 1, "live_max_vcpus": 1, "live_memory": 64 * MiB,
             "live_max_memory": 64 * MiB, "live_disks": live_disks or spec.disks,
             "live_nics": ()} if running else {}
    return LiveVM("vm", "u", running, "running" if running else "shut off",
                  1 if running else None, spec, mark, **extra)  # type: ignore[arg-type]


def ops(steps) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    return [(str(s.op), s.target.key, str(s.effect)) for s in steps]


def test_a_missing_volume_whose_create_was_recorded_is_created_not_refused():
    config = _spec(replace(ROOT, size=-1))
    action = diff.update(_want(_spec(ROOT)), _live(config, Pending("create", "disk", "root",
                                                                   "default")))
    assert ops(action.steps) == [("create volume", "root", "config"), ("finish", "", "config")]
    assert action.steps[-1].old == ("create disk root",)
    # Without the record, a missing volume is lost data: refused, never made empty again.
    action = diff.update(_want(_spec(ROOT)), _live(config))
    assert [s.op for s in action.steps] == [Op.RESTORE_VOLUME]
    assert action.refused


def test_a_recorded_delete_is_finished_unless_the_guest_holds_the_disk_or_it_is_back():
    delete = Pending("delete", "disk", "data", "default")
    action = diff.update(_want(_spec(ROOT)), _live(_spec(ROOT), delete))
    assert ops(action.steps) == [("delete volume", "data", "config"), ("finish", "", "config")]
    # Running, the guest still holding it (its unplug was sent): it waits for a restart.
    up = _spec(ROOT, running=True)
    action = diff.update(_want(up), _live(up, delete, live_disks=(ROOT, DATA)))
    assert ops(action.steps) == [("detach disk", "data", "pending")]
    # The unplug never went out (the run stopped before): sent now, and the delete follows.
    action = diff.update(_want(up), _live(up, delete, Pending("unplug", "disk", "data"),
                                          live_disks=(ROOT, DATA)))
    assert ops(action.steps) == [("detach disk", "data", "live"),
                                 ("delete volume", "data", "config"), ("finish", "", "config")]
    # The manifest has the disk again: its volume is kept (reused), the record dropped.
    action = diff.update(_want(_spec(ROOT, DATA)), _live(_spec(ROOT), delete))
    assert Op.DELETE_VOLUME not in [s.op for s in action.steps]
    assert [s.op for s in action.steps][-1] == Op.FINISH


def test_a_destroy_deletes_what_an_interrupted_run_made_or_was_to_delete():
    vm = _live(_spec(ROOT, seed=CloudInit("abc", "p1")),
               Pending("create", "disk", "root", "default"),
               Pending("delete", "disk", "data", "default"), Pending("delete", "seed", "", "p2"))
    steps = diff.destroy_steps(vm)
    assert [(str(s.op), s.target.key, s.old if isinstance(s.old, str) else None)
            for s in steps] == [
        ("delete volume", "root", None),  # reclaim: retain, but the guest never had it
        ("delete seed", "", "p1"), ("delete volume", "data", None),
        ("delete seed", "", "p2"), ("undefine", "", None)]  # undefine last
    assert all(s.effect == Effect.CONFIG for s in steps)


def test_a_recorded_seed_delete_never_deletes_the_seed_the_manifest_wants():
    seed = CloudInit("abc", "p1", user_data="#cloud-config\n")
    action = diff.update(_want(_spec(ROOT, seed=seed)),
                         _live(_spec(ROOT, seed=CloudInit("abc", "p2")),
                               Pending("write", "seed", "", "p2"),
                               Pending("delete", "seed", "", "p1")))
    assert Op.DELETE_SEED not in [s.op for s in action.steps]
    assert {Op.MOVE_SEED, Op.WRITE_SEED, Op.FINISH} <= {s.op for s in action.steps}
