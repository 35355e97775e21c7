"""`reconciler status`, and the state `apply` leaves for it: one instance's objects, from the
state file its writer (`run` or `apply`) wrote in the state directory."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from reconciler.adapters import state as state_file
from reconciler.core import render, status

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.adapters.git import Revision
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
    from reconciler.shells import gitstatus

    return gitstatus.show(document, state_dir=state_dir, instance=instance, fmt=fmt)


def record(state_dir: Path, instance: str, planned: pipeline.Planned,
           results: tuple[Result, ...], revision: Revision | None = None) -> None:
    """Write the state an apply leaves: every declared or managed object of ``instance``, and
    each action carried out in the history (``revision``: the manifests' git revision)."""
    inputs = planned.inputs
    statuses = status.vm_statuses(planned.plan, results, status.in_sync(inputs, planned.plan),
                                  suspended=[d.spec.name for d in inputs.vms if d.suspend])
    if planned.plan.partial is not None:  # a targeted run: the others' entries are kept
        before = state_file.read(state_dir, instance) or {}
        statuses = status.partial_statuses(statuses, planned.plan, inputs,
                                           before.get("vms") or [])
    state_file.write(state_dir, statuses, instance=instance, command="apply",
                     problems=len(inputs.problems),
                     commit=revision.commit if revision else None,
                     dirty=revision.dirty if revision else False,
                     git_problem=revision.problem if revision else None)
    record_history(state_dir, instance, planned, results, revision)


def record_history(state_dir: Path, instance: str, planned: pipeline.Planned,
                   results: tuple[Result, ...], revision: Revision | None) -> None:
    """Add each action that was carried out (or failed) to the instance's history."""
    from reconciler.adapters import history
    from reconciler.core.result import Outcome

    by_label = {a.label: a for a in planned.plan.actions}
    entries = []
    for result in results:
        action = by_label.get(result.name)
        if action is None or result.interrupted or result.outcome == Outcome.BLOCKED:
            continue
        if not action.writes:
            continue
        entries.append((result.name, {
            "commit": revision.commit if revision else None,
            "dirty": revision.dirty if revision else False,
            "spec": getattr(action.desired, "spec_hash", None),
            "action": str(action.kind), "result": str(result.outcome),
            "did": result.done_text, "message": result.message}))
    with contextlib.suppress(OSError):  # a convenience: a full disk must not fail the run
        history.append(state_dir, instance, entries)


def show_one(*, state_dir: Path, instance: str, name: str, fmt: str) -> int:
    """One object in full (``status NAME``): its status, detail, last error and next retry
    from the state file, the revision the writer last read, and its last applied revisions.
    Exit status as for the whole table, for that object; 1 when the instance does not know
    it."""
    from reconciler.adapters import history

    document = state_file.read(state_dir, instance)
    entry = next((v for v in (document or {}).get("vms", []) if v.get("name") == name), None)
    revisions = history.read(state_dir, instance).get(name, [])
    if entry is None and not revisions:
        click.echo(f"Instance {instance!r} has no object named {name!r} in {state_dir}.",
                   err=True)
        return status.EXIT_PROBLEM
    writer = (document or {}).get("daemon") or {}
    if fmt == "json":
        click.echo(render.dumps({"instance": instance, "object": entry,
                                 "updated": (document or {}).get("updated"),
                                 "revisions": revisions}), nl=False)
    else:
        lines = [f"Name:        {name}"]
        if entry is not None:
            lines += [f"Status:      {entry.get('status')}",
                      f"Detail:      {entry.get('detail') or '-'}"]
            if entry.get("manifest"):
                lines.append(f"Manifest:    {entry['manifest']}")
            if entry.get("last_error"):
                lines.append(f"Last error:  {entry['last_error']}")
            if entry.get("next_retry"):
                lines.append(f"Next retry:  {entry['next_retry']}")
        lines.append(f"Updated:     {(document or {}).get('updated', '-')} by "
                     f"{writer.get('command', '-')}, manifests at "
                     + (str(writer['commit'])[:12] + (" (dirty)" if writer.get("dirty") else "")
                        if writer.get("commit") else
                        f"no commit ({writer.get('git_problem') or 'unknown'})"))
        lines.append(f"Revisions:   the last {len(revisions)} applied (newest last)")
        for r in revisions:
            commit = (str(r.get("commit"))[:12] + ("+dirty" if r.get("dirty") else "")
                      if r.get("commit") else "no commit")
            lines.append(f"  {r.get('time')}  {commit:<18} spec {r.get('spec') or '-':<16} "
                         f"{_revision_result(r)}")
        click.echo("\n".join(lines) + "\n", nl=False)
    if entry is None:
        return status.EXIT_IN_SYNC
    return status.exit_code({"vms": [entry]})


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


def _revision_result(entry: dict[str, Any]) -> str:
    """What a run did, as apply's result said it: ``created, started``, ``updated, pending
    restart: CAUSE``, ``update failed: ERROR`` (entries written before ``did`` was recorded:
    ``update converged``)."""
    did, result, message = entry.get("did"), entry.get("result"), entry.get("message")
    if not did or result == "failed":
        what = f"{entry.get('action')} {result}"
    else:
        what = f"{did}, pending restart" if result == "pending restart" else str(did)
    return what + (f": {message}" if message else "")
