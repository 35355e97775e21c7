"""What apply did to each resource, as the executor reports it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.plan import Kind, Why


class Outcome(StrEnum):
    CONVERGED = "converged"
    PENDING_RESTART = "pending restart"  # persisted; the running VM takes it at its next start
    BLOCKED = "blocked"  # not attempted: conflict, refusal, destroy guard
    FAILED = "failed"


@dataclass(frozen=True)
class Result:
    name: str
    kind: Kind
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    retryable: bool = False
    why: Why | None = None  # blocked: the plan's reason code
    # Not started because the run was stopped first (SIGTERM): nothing was done, and the next
    # run does it (status shows it pending, not failed).
    interrupted: bool = False
    # Nothing to do this run but the restart an earlier apply left pending: listed apart.
    untouched: bool = False
    # Whether the action was carried out (all of it or some steps): False when it was blocked,
    # had nothing to do, or was not started (stopped first, a destroy held back).
    started: bool = True

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CONVERGED, Outcome.PENDING_RESTART)

