"""`plan --fleet --snapshots` spreads the hosts over worker processes: the fleet plan is the
same as the one made in this process with threads, moves and unplanned hosts included."""

from __future__ import annotations

import shutil

from test_fleet_plan import _repo, _snapshots

from reconciler import pipeline
from reconciler.shells import fleet as fleets

HOSTS = ("hv-a", "hv-b", "hv-c", "hv-d", "hv-e")


def test_worker_processes_plan_the_fleet_as_threads_do(testdrv, prefix, tmp_path, own_instance,
                                                       monkeypatch):
    m = _repo(tmp_path, prefix, "hv-a", hosts=HOSTS)
    snaps = _snapshots(tmp_path, m)
    for name in ("hv-c", "hv-d"):  # empty hosts; hv-e has no snapshot
        shutil.copy(snaps / "hv-b.snapshot", snaps / f"{name}.snapshot")
    _repo(tmp_path, prefix, "hv-c", hosts=HOSTS)  # web: hv-a -> hv-c, a move
    source = pipeline.Source(m, instance=own_instance)
    pools: list[int] = []
    in_processes = fleets._in_processes
    monkeypatch.setattr(fleets, "_in_processes",
                        lambda work, workers: pools.append(workers) or in_processes(work, workers))
    threads = fleets.plan_fleet(source, fleets.snapshot_opener(snaps), workers=1)
    processes = fleets.plan_fleet(source, fleets.snapshot_opener(snaps), workers=2)
    assert pools == [2]
    assert processes == threads
    whole, _ = processes
    assert [h.host for h in whole.unreachable] == ["hv-e"]
    assert [(m.vm, m.source, m.destination) for m in whole.moves] == [(f"{prefix}web", "hv-a",
                                                                       "hv-c")]


def test_the_fleetwide_placement_gives_each_host_the_share_it_computes_alone(tmp_path):
    from test_fleet_manifests import _fleet

    from reconciler.adapters.manifests import load_desired
    from reconciler.core.fleet import placement, share

    m = _fleet(tmp_path, {"hv-a": "rack=a", "hv-b": "rack=b", "hv-c": "rack=b"},
               {f"web-{i:02d}": ("host: hv-a" if i % 3 == 0 else "hostSelector: {rack: b}")
                for i in range(12)})
    inputs = load_desired(m)
    once = placement(inputs)
    for host in ("hv-a", "hv-b", "hv-c"):
        assert share(inputs, host, placed=once) == share(inputs, host)
