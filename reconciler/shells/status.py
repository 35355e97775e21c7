"""`reconciler status`, and the state `apply` leaves for it: one instance's objects, from the
state file its writer (`run` or `apply`) wrote in the state directory."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.adapters import state as state_file
from reconciler.core import render, status

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.core.result import Result
    from reconciler.pipeline import Host


def show(*, state_dir: Path, instance: str, fmt: str) -> int:
    """Print ``instance``'s state (a table, or the state file as JSON) and return the exit
    status (``core.status.exit_code``: 0 in sync, 1 a problem or no state, 2 pending).

    Raises ``ReconcilerError`` when the state file is not one the tool wrote."""
    document = state_file.read(state_dir, instance)
    if document is None:
        where = state_file.path(state_dir, instance)
        message = (f"No state for instance {instance!r} in {state_dir} yet ({where}): "
                   "`reconciler run` or `apply` of this instance writes it.")
        if fmt == "json":
            click.echo(render.dumps({"instance": instance, "updated": None, "vms": []}),
                       nl=False)
            click.echo(message, err=True)
        else:
            click.echo(message)
        return status.exit_code(None)
    click.echo(render.dumps(document) if fmt == "json" else status.table(document), nl=False)
    return status.exit_code(document)


def record(state_dir: Path, instance: str, planned: pipeline.Planned,
           results: tuple[Result, ...]) -> None:
    """Write the state an apply leaves: every declared or managed object of ``instance``."""
    inputs = planned.inputs
    statuses = status.vm_statuses(planned.plan, results, status.in_sync(inputs, planned.plan),
                                  suspended=[d.spec.name for d in inputs.vms if d.suspend])
    state_file.write(state_dir, statuses, instance=instance, command="apply",
                     problems=len(inputs.problems))


POLL = 2.0  # seconds between two reads of the host while waiting


def wait(source: pipeline.Source, connect: Callable[[], Host], *, timeout: int,
         fmt: str = "text") -> int:
    """Wait until a fresh read-only plan of ``source`` has nothing to do and every declared VM
    is healthy (``core.health``); the host is read every ``POLL`` seconds, up to ``timeout``
    seconds. Exit status: 0 done, 1 the timeout passed (what is missing is printed: each
    action still to do, each VM not healthy). A host that cannot be read is retried until the
    timeout. Raises ``ReconcilerError`` for a permanent error (the manifests or the config)."""
    from reconciler import pipeline
    from reconciler.core import health, render
    from reconciler.core.errors import TransientError

    deadline = time.monotonic() + timeout
    missing: list[str] = []
    while True:
        try:
            hv = connect()
            try:
                planned = pipeline.make_plan(source, hv, every_size=True)
            finally:
                hv.close()
            missing = [f"{a.label}: {render.describe(a)}" for a in planned.plan.actions]
            if planned.inputs.problems:
                missing.insert(0, f"{len(planned.inputs.problems)} problem(s) in the manifests")
            missing += [f"{name}: not healthy: {why}"
                        for name, why in health.unhealthy(planned.inputs.vms, planned.live.vms)]
        except TransientError as exc:
            missing = [f"the host cannot be read: {exc}"]
        if not missing:
            click.echo(render.dumps({"done": True, "missing": []}) if fmt == "json" else
                       f"In sync and healthy: {len(planned.inputs.vms)} VMs.", nl=fmt != "json")
            return 0
        if time.monotonic() + POLL > deadline:
            break
        time.sleep(POLL)
    if fmt == "json":
        click.echo(render.dumps({"done": False, "missing": missing}), nl=False)
    else:
        click.echo(f"Not in sync and healthy after {timeout} s:")
        click.echo("".join(f"  {line}\n" for line in missing), nl=False)
    return 1
