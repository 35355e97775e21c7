"""`reconciler status`, and the state `apply` leaves for it: one instance's objects, from the
state file its writer (`run` or `apply`) wrote in the state directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.adapters import state as state_file
from reconciler.core import render, status

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.core.result import Result


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
