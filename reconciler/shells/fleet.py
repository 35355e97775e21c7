"""``reconciler plan --fleet``: every Host of the repository planned at once, read-only, over
its URI or from its snapshot file, into one plan grouped by host (``core.fleetplan``)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import click

from reconciler import pipeline
from reconciler.adapters import git
from reconciler.adapters.manifests import load_desired
from reconciler.core import fleet_render, render
from reconciler.core.errors import ReconcilerError
from reconciler.core.fleetplan import FleetPlan, HostPlan, combine
from reconciler.core.model.host import DesiredHost, Destination
from reconciler.core.model.vm import LiveVM
from reconciler.core.plan import Header
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


def snapshot_opener(folder: Path) -> Opener:
    """Each host from ``folder/NAME.snapshot`` (or ``NAME.snapshot.gz``), as written by
    ``reconciler snapshot``."""
    from reconciler.adapters import snapshot as snapshots

    def open_snapshot(host: DesiredHost) -> pipeline.Host:
        for suffix in SUFFIXES:
            path = folder / f"{host.spec.name}{suffix}"
            if path.exists():
                return snapshots.SnapshotHost(snapshots.read(path), path)
        raise ReconcilerError(f"no snapshot {folder / (host.spec.name + SUFFIXES[0])}; write it "
                              f"on the host with `reconciler snapshot --out "
                              f"{host.spec.name}.snapshot`")

    return open_snapshot


def libvirt_opener(host: DesiredHost) -> pipeline.Host:
    """Each host over its Host manifest's URI, read-only."""
    return connect_libvirt(host.spec.uri, readonly=True)


def plan_fleet(source: pipeline.Source, opener: Opener, *,
               timeout: float = HOST_TIMEOUT) -> tuple[FleetPlan, Header]:
    """Every host's plan, made at once (a thread per host, each given ``timeout`` seconds to
    be read and as much to be planned), combined. A VM leaving a host is planned as a move
    against a read of its destination (its snapshot, or its URI). Raises
    ``ReconcilerError`` when the manifests declare no Host."""
    inputs = load_desired(source.path, source.storage_roots)
    hosts = sorted(inputs.hosts, key=lambda h: h.spec.name)
    if not hosts and not inputs.problems:
        raise ReconcilerError(f"{source.path}: no Host manifest (kind: Host); --fleet plans "
                              "the hosts the repository declares")
    shared = pipeline.fleetwide(inputs)  # once, not once for each host
    opened: dict[str, pipeline.Host | str] = {}

    def open_one(host: DesiredHost) -> None:
        try:
            opened[host.spec.name] = opener(host)
        except ReconcilerError as exc:
            opened[host.spec.name] = str(exc)

    _all_at_once([(open_one, h) for h in hosts], timeout)
    results: dict[str, tuple[HostPlan, tuple[LiveVM, ...]]] = {}

    def plan_one(host: DesiredHost) -> None:
        hv = opened.get(host.spec.name, f"no answer within {timeout:g} s")
        if isinstance(hv, str):
            results[host.spec.name] = (HostPlan(host.spec.name, host.spec.uri, error=hv), ())
            return
        try:
            planned = pipeline.make_plan(replace(source, host=host.spec.name), hv,
                                         loaded=inputs, destinations=_destinations(hv, opened),
                                         shared=shared)
            header = Header(source.instance, host.spec.name, hv.uri, snapshot=hv.taken)
            ours = tuple(vm for vm in planned.live.vms if vm.managed)
            results[host.spec.name] = (HostPlan(host.spec.name, host.spec.uri, planned.plan,
                                                header), ours)
        except ReconcilerError as exc:
            results[host.spec.name] = (HostPlan(host.spec.name, host.spec.uri,
                                                error=str(exc)), ())

    try:
        _all_at_once([(plan_one, h) for h in hosts], timeout)
    finally:
        for hv in opened.values():
            if not isinstance(hv, str):
                hv.close()
    entries = [results.get(h.spec.name, (HostPlan(h.spec.name, h.spec.uri, error=(
        f"not planned within {timeout:g} s")), ()))[0] for h in hosts]
    live = {name: vms for name, (_, vms) in results.items()}
    revision = git.revision(source.path)
    fleet = f"the fleet ({len(hosts)} host{'' if len(hosts) == 1 else 's'})"
    header = Header(source.instance, fleet, fleet, commit=revision.commit,
                    dirty=revision.dirty, git_problem=revision.problem)
    return combine(entries, live, inputs.problems), header


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


def _destinations(hv: pipeline.Host, opened: dict[str, pipeline.Host | str],
                  ) -> pipeline.Destinations:
    """How a host's plan reads the host a VM moves to: from its snapshot when the fleet is
    planned from snapshots, else over its URI."""
    from reconciler.adapters.snapshot import SnapshotHost, destination_of

    if not isinstance(hv, SnapshotHost):
        from reconciler.adapters.libvirt import Libvirt

        assert isinstance(hv, Libvirt)
        return destinations_of(hv)

    def read(host: str, uri: str, vms: tuple[LiveVM, ...]) -> Destination:
        there = opened.get(host)
        if isinstance(there, SnapshotHost):
            return destination_of(there.snapshot, host, uri, vms)
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
        a.refused or a.conflict for h in fleet.hosts if h.plan for a in h.plan.actions)
    if failed:
        return EXIT_ERROR
    return EXIT_CHANGES if detailed_exitcode and fleet.has_changes else EXIT_OK
