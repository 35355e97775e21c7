"""``reconciler plan --fleet``: every Host of the repository planned at once, read-only, over
its URI or from its snapshot file, into one plan grouped by host (``core.fleetplan``)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import click

from reconciler import pipeline
from reconciler.adapters import git
from reconciler.adapters.cache import Cache
from reconciler.adapters.manifests import load_desired
from reconciler.core import fleet_render, render
from reconciler.core.errors import ReconcilerError
from reconciler.core.fleetplan import FleetPlan, HostPlan, combine
from reconciler.core.model.host import DesiredHost, Destination
from reconciler.core.model.vm import LiveVM
from reconciler.core.plan import Header
from reconciler.core.record import Record
from reconciler.core.validate.result import Validated
from reconciler.shells.options import (
    EXIT_CHANGES,
    EXIT_ERROR,
    EXIT_OK,
    connect_libvirt,
    destinations_of,
)

HOST_TIMEOUT = 120.0  # seconds one host has to be read and planned
SUFFIXES = (".snapshot", ".snapshot.gz")

Opener = Callable[[DesiredHost], pipeline.Host]
# A host's plan and the VMs this instance manages there (for the moves between hosts).
Result = tuple[HostPlan, tuple[LiveVM, ...]]


class SnapshotOpener:
    """Each host from ``folder/NAME.snapshot`` (or ``NAME.snapshot.gz``), as written by
    ``reconciler snapshot``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, host: DesiredHost) -> pipeline.Host:
        from reconciler.adapters import snapshot as snapshots

        for suffix in SUFFIXES:
            path = self.folder / f"{host.spec.name}{suffix}"
            if path.exists():
                return snapshots.SnapshotHost(snapshots.read(path), path)
        raise ReconcilerError(f"no snapshot {self.folder / (host.spec.name + SUFFIXES[0])}; "
                              f"write it on the host with `reconciler snapshot --out "
                              f"{host.spec.name}.snapshot`")


def snapshot_opener(folder: Path) -> Opener:
    """Each host from its snapshot file in ``folder`` (``SnapshotOpener``)."""
    return SnapshotOpener(folder)


def libvirt_opener(host: DesiredHost) -> pipeline.Host:
    """Each host over its Host manifest's URI, read-only."""
    return connect_libvirt(host.spec.uri, readonly=True)


def plan_fleet(source: pipeline.Source, opener: Opener, *, timeout: float = HOST_TIMEOUT,
               workers: int | None = None, memo: Cache | None = None,
               ) -> tuple[FleetPlan, Header]:
    """Every host's plan, made at once, combined. A VM leaving a host is planned as a move
    against a read of its destination (its snapshot, or its URI). Raises
    ``ReconcilerError`` when the manifests declare no Host.

    Over URIs, a thread per host (the reads wait on the hosts), each given ``timeout`` seconds
    to be read and as much to be planned. From snapshot files, the planning is the work: it
    is spread over ``workers`` processes (None: one per CPU this process may use; 1: in this
    process, with threads), each host given ``timeout`` seconds on average.

    ``memo``: the cache of parsed manifests (``adapters.cache``), as for one host's plan."""
    inputs = load_desired(source.path, source.storage_roots, memo)
    if memo is not None:
        memo.save()
    hosts = sorted(inputs.hosts, key=lambda h: h.spec.name)
    if not hosts and not inputs.problems:
        raise ReconcilerError(f"{source.path}: no Host manifest (kind: Host); --fleet plans "
                              "the hosts the repository declares")
    work = _Work(source, inputs, pipeline.fleetwide(inputs), opener, tuple(hosts), timeout)
    if workers is None:
        workers = (min(_cpus(), len(hosts) // _PER_WORKER)
                   if isinstance(opener, SnapshotOpener) else 1)
    results = _in_processes(work, workers) if workers > 1 else _in_threads(work)
    entries = [results.get(h.spec.name, (HostPlan(h.spec.name, h.spec.uri, error=(
        f"not planned within {timeout:g} s")), ()))[0] for h in hosts]
    live = {name: vms for name, (_, vms) in results.items()}
    revision = git.revision(source.path)
    fleet = f"the fleet ({len(hosts)} host{'' if len(hosts) == 1 else 's'})"
    header = Header(source.instance, fleet, fleet, commit=revision.commit,
                    dirty=revision.dirty, git_problem=revision.problem)
    return combine(entries, live, inputs.problems), header


@dataclass(frozen=True, eq=False, repr=False)
class _Work(Record):
    """What every host's plan is made from: the manifests, validated once, and what is
    derived from them for all hosts alike (``pipeline.fleetwide``)."""

    source: pipeline.Source
    inputs: Validated
    shared: pipeline.Fleetwide
    opener: Opener
    hosts: tuple[DesiredHost, ...]
    timeout: float


def _plan_one(work: _Work, host: DesiredHost, hv: pipeline.Host | str,
              read: Callable[[str], pipeline.Host | str | None]) -> Result:
    """``host``'s plan, read as ``hv`` (or why it could not be read); ``read``: another host
    of the fleet, by name, for the VMs that move there."""
    if isinstance(hv, str):
        return HostPlan(host.spec.name, host.spec.uri, error=hv), ()
    source = work.source
    try:
        planned = pipeline.make_plan(replace(source, host=host.spec.name), hv,
                                     loaded=work.inputs, destinations=_destinations(hv, read),
                                     shared=work.shared)
    except ReconcilerError as exc:
        return HostPlan(host.spec.name, host.spec.uri, error=str(exc)), ()
    except Exception as exc:  # one host's surprise is that host's, and said as it is
        return HostPlan(host.spec.name, host.spec.uri, error=f"internal error: {exc!r}"), ()
    header = Header(source.instance, host.spec.name, hv.uri, snapshot=hv.taken)
    ours = tuple(vm for vm in planned.live.vms if vm.managed)
    return HostPlan(host.spec.name, host.spec.uri, planned.plan, header,
                    desired=planned.inputs.vms, live=ours), ours


def _open(opener: Opener, host: DesiredHost) -> pipeline.Host | str:
    try:
        return opener(host)
    except ReconcilerError as exc:
        return str(exc)
    except Exception as exc:  # e.g. a snapshot file of another format: that host only
        return f"internal error: {exc!r}"


def _in_threads(work: _Work) -> dict[str, Result]:
    """Every host opened, then planned, each in a thread of its own."""
    timeout = work.timeout
    opened: dict[str, pipeline.Host | str] = {}

    def open_one(host: DesiredHost) -> None:
        opened[host.spec.name] = _open(work.opener, host)

    _all_at_once([(open_one, h) for h in work.hosts], timeout)
    results: dict[str, Result] = {}

    def plan_one(host: DesiredHost) -> None:
        hv = opened.get(host.spec.name, f"no answer within {timeout:g} s")
        results[host.spec.name] = _plan_one(work, host, hv, opened.get)

    try:
        _all_at_once([(plan_one, h) for h in work.hosts], timeout)
    finally:
        for hv in opened.values():
            if not isinstance(hv, str):
                hv.close()
    return results


# measured 2026-11-30, 100 hosts x 100 VMs from snapshots on 2 CPUs (bench/fleet_bench.py):
# threads share one CPU (the GIL): the hosts' plans took 3.1 s of a 5.8 s fleet plan; in 2
# processes, 1.4-1.5 s of a 3.9-4.9 s one.
_PER_WORKER = 4  # hosts at least for each process (fewer: planned in this process)
_CHUNKS = 4  # batches of hosts for each process (the faster takes more of them)


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _in_processes(work: _Work, workers: int) -> dict[str, Result]:
    """Every host planned in one of ``workers`` processes, forked once the manifests are
    validated (they are not copied): each reads its hosts' snapshots (and, for a move, the
    destination's) and sends back their plans. A batch not planned within its hosts' share
    of the time (``timeout`` each) is reported as not planned."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, wait

    names = [h.spec.name for h in work.hosts]
    size = max(1, -(-len(names) // (workers * _CHUNKS)))
    batches = [names[i:i + size] for i in range(0, len(names), size)]
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                               initializer=_start, initargs=(work,))
    results: dict[str, Result] = {}
    finished = False
    try:
        futures = [pool.submit(_plan_batch, batch) for batch in batches]
        done, late = wait(futures, timeout=work.timeout * len(names) / workers)
        for future in futures:
            if future in done:
                results.update(future.result())
        finished = not late
    finally:  # the processes waited for once done (a late batch's is left behind)
        pool.shutdown(wait=finished, cancel_futures=True)
    return results


_work: _Work | None = None  # in a worker process: what its hosts are planned from
_read: dict[str, pipeline.Host | str] = {}  # in a worker process: destinations read


def _start(work: _Work) -> None:
    global _work
    _work = work


def _plan_batch(names: list[str]) -> dict[str, Result]:
    """In a worker process: the plans of the hosts ``names``."""
    work = _work
    assert work is not None
    by_name = {h.spec.name: h for h in work.hosts}

    def read(name: str) -> pipeline.Host | str | None:
        if name not in _read and name in by_name:
            _read[name] = _open(work.opener, by_name[name])
        return _read.get(name)

    out = {}
    for name in names:
        hv = _open(work.opener, by_name[name])
        try:
            out[name] = _plan_one(work, by_name[name], hv, read)
        finally:
            if not isinstance(hv, str):
                hv.close()
    return out


def _all_at_once(calls: list[tuple[Callable[[DesiredHost], None], DesiredHost]],
                 timeout: float) -> None:
    """Each call in a thread of its own, all waited for together about ``timeout`` seconds
    (a host that hangs is left behind: its thread is a daemon)."""
    threads = [threading.Thread(target=call, args=(host,), name=f"fleet-{host.spec.name}",
                                daemon=True) for call, host in calls]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))


def _destinations(hv: pipeline.Host, opened: Callable[[str], pipeline.Host | str | None],
                  ) -> pipeline.Destinations:
    """How a host's plan reads the host a VM moves to: from its snapshot when the fleet is
    planned from snapshots (``opened``: a host's, by name), else over its URI."""
    from reconciler.adapters.snapshot import SnapshotHost, destination_of

    if not isinstance(hv, SnapshotHost):
        from reconciler.adapters.libvirt import Libvirt

        assert isinstance(hv, Libvirt)
        return destinations_of(hv)

    def read(host: str, uri: str, vms: tuple[LiveVM, ...], left: tuple[str, ...] = (),
             ) -> Destination:
        there = opened(host)
        if isinstance(there, SnapshotHost):
            return destination_of(there.snapshot, host, uri, vms, left)
        return Destination(host, uri, error=there if isinstance(there, str) else "not read")

    return read


def show(fleet: FleetPlan, header: Header, fmt: str, *, detailed_exitcode: bool) -> int:
    """Print the fleet plan; the exit code of ``plan`` over the whole fleet: 1 when a host
    was not planned, a manifest has problems, or a change is refused; else 0 (2 with
    ``detailed_exitcode`` when anything would change)."""
    if fmt == "json":
        click.echo(render.dumps(fleet_render.fleet_json(fleet, header)), nl=False)
    elif fmt == "markdown":
        click.echo(fleet_render.fleet_markdown(fleet, header), nl=False)
    else:
        click.echo(render.problems_text(fleet.problems), nl=False, err=True)
        click.echo(fleet_render.fleet_text(fleet, header), nl=False)
    failed = fleet.problems or fleet.unreachable or any(
        a.stuck for h in fleet.hosts if h.plan for a in h.plan.actions)
    if failed:
        return EXIT_ERROR
    pending = fleet.has_changes or any(a.elsewhere for h in fleet.hosts if h.plan
                                       for a in h.plan.actions)
    return EXIT_CHANGES if detailed_exitcode and pending else EXIT_OK
