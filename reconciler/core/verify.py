"""Results as a fresh observation shows them (level-based, as controller-runtime reports only
what it observed): after apply, the plan is made again from a new read of the host, and an
action counts as converged only when the new plan has nothing left to do for its resource.
Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from reconciler.core.plan import Action, Kind, Plan
from reconciler.core.result import Outcome, Result
from reconciler.core.words import describe_step, reason_text, restart_cause


def observed(plan: Plan, results: Iterable[Result], fresh: Plan) -> tuple[Result, ...]:
    """``results`` (in ``plan``'s order) corrected by ``fresh``, the plan made after them:
    - nothing left for the resource: converged (or pending restart, as the executor saw it);
    - steps left that apply would carry out: failed (retryable), naming them;
    - only steps waiting for a restart: pending restart, naming them;
    - blocked now (a refusal, a conflict): blocked, saying why.
    Results that already failed or were blocked stay as they are."""
    left = {a.label: a for a in fresh.actions}
    out = []
    for action, result in zip(plan.actions, results, strict=True):
        now = left.get(action.label)
        if not result.ok or not action.writes or now is None:
            out.append(result)
        elif now.writes:
            out.append(replace(result, outcome=Outcome.FAILED, retryable=True,
                               message=f"not converged: still to do: {_todo(now)}"))
        elif now.refused or now.reason is not None:
            out.append(replace(result, outcome=Outcome.BLOCKED, message=reason_text(now),
                               why=now.reason.why if now.reason else None))
        elif now.pending_restart and result.outcome == Outcome.CONVERGED:
            out.append(replace(result, outcome=Outcome.PENDING_RESTART, message="; ".join(
                restart_cause(s) for s in now.pending_restart)))
        else:
            out.append(result)
    return tuple(out)


def _todo(action: Action) -> str:
    if action.kind in (Kind.CREATE, Kind.DESTROY):
        return str(action.kind)
    return ", ".join(describe_step(s) for s in action.steps if s.writes) or str(action.kind)
