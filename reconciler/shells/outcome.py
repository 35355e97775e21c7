"""What `apply` says when it is done: its results, its exit status, and the approvals it has
used up. Imported by `apply` once it has carried a plan out."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from reconciler.shells.options import EXIT_ERROR, EXIT_OK

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.core.result import Result
    from reconciler.shells.interrupts import Interrupts


def report(planned: pipeline.Planned, results: tuple[Result, ...], fmt: str,
            interrupts: Interrupts) -> int:
    """Print the results (when anything was to change, or a signal came) and give apply's exit
    status."""
    from reconciler.core import render

    if planned.plan.has_changes or interrupts.signal:
        if fmt == "json":
            click.echo(render.dumps({"results": render.results_json(results)}), nl=False)
        else:
            from reconciler.shells import console

            console.echo_lines(render.results_lines(results))
    if interrupts.signal:
        text, unfinished = interrupts.summary([r.message for r in results])
        click.echo(text, err=True)
        if unfinished:
            return EXIT_ERROR
    return exit_for(planned, results)


def exit_for(planned: pipeline.Planned, results: tuple[Result, ...]) -> int:
    """1 unless everything converged; a VM suspended on purpose, or kept by the prune policy
    (pending approval, or orphaned with prune off), is no failure."""
    from reconciler.core.plan import Why

    suspended = {a.label for a in planned.plan.actions if a.suspended or (
        a.reason is not None and a.reason.why in (Why.PENDING_DESTROY, Why.ORPHANED))}
    if planned.inputs.problems or any((a.kind == "blocked" and a.label not in suspended)
                                      or a.refused for a in planned.plan.actions):
        return EXIT_ERROR
    from reconciler.core.result import Outcome

    return EXIT_ERROR if any(r.outcome in (Outcome.FAILED, Outcome.BLOCKED)
                             and r.name not in suspended for r in results) else EXIT_OK


def forget_approvals(state_dir: Path, instance: str, planned: pipeline.Planned,
                      results: tuple[Result, ...]) -> None:
    """An approval is used once: dropped when its destroy is done."""
    from reconciler.core.plan import Kind

    destroys = {a.label for a in planned.plan.actions if a.kind == Kind.DESTROY}
    done = {r.name for r in results if r.ok and r.name in destroys}
    if done:
        from reconciler.adapters import approvals

        approvals.forget(state_dir, instance, done)
