"""Which actions of a plan the daemon carries out now, and what it remembers of failures:
a retryable failure waits with exponential backoff (2 s doubling up to 5 minutes, reset on
success); a permanent one is not retried while its inputs (the manifest and what was read of
the resource) stay as they were."""

from __future__ import annotations

import time
from collections.abc import Mapping

import structlog

from reconciler.core.plan import Action, Kind, Plan, Resource
from reconciler.core.result import Outcome, Result
from reconciler.shells import accounting
from reconciler.shells.backoff import Backoff

log = structlog.get_logger("reconciler.run")


class Retries:
    def __init__(self) -> None:
        self.backoff = Backoff()
        # name -> (digest of the inputs, the error) of a permanent failure
        self.stuck: dict[str, tuple[str, str]] = {}
        self.inputs: dict[str, str] = {}

    def runnable(self, plan: Plan, read: Mapping[str, str], now: float) -> tuple[Action, ...]:
        """The actions of ``plan`` not held back by a failure (``read``: what was read of each
        resource, by name)."""
        self.inputs = {a.label: accounting.inputs_key(a, read) for a in plan.actions}
        runnable = tuple(a for a in plan.actions if not self.backoff.waiting(a.label, now)
                         and self.stuck.get(a.label, ("",))[0] != self.inputs[a.label])
        if any(a.kind == Kind.DESTROY and a.resource == Resource.VM and a not in runnable
               for a in plan.actions):  # a VM destroy waits: what it uses stays with it
            runnable = tuple(a for a in runnable
                             if a.resource == Resource.VM or a.kind != Kind.DESTROY)
        return runnable

    def account(self, action: Action, result: Result, now: float) -> None:
        if result.outcome == Outcome.FAILED and not result.retryable:
            # Retrying the same thing fails the same way: not until the manifest or the
            # domain changes (then its inputs' digest does).
            self.stuck[action.label] = (self.inputs.get(action.label, ""), result.message)
            self.backoff.succeeded(action.label)
            log.warning("not retried until its manifest or domain changes", vm=action.label)
            return
        if result.outcome == Outcome.FAILED:
            failure = self.backoff.failed(action.label, result.message, now)
            log.warning("will retry", vm=action.label,
                        retry_in=self.backoff.delay(failure.count))
            return
        self.backoff.succeeded(action.label)

    def forget_except(self, plan: Plan) -> None:
        """Forget what is no longer in the plan, and permanent failures whose inputs moved."""
        self.backoff.forget_except({a.label for a in plan.actions})
        self.stuck = {n: v for n, v in self.stuck.items()
                      if n in self.inputs and v[0] == self.inputs[n]}

    def waiting(self) -> dict[str, tuple[str, float | None]]:
        """Failed resources held back: the error, and the wall-clock time of the next retry
        (None: a permanent error, retried once its manifest or domain changes)."""
        now, wall = time.monotonic(), time.time()
        waiting: dict[str, tuple[str, float | None]] = {
            name: (f.error, wall + (f.retry_at - now)) for name, f in self.backoff.failures.items()}
        waiting.update({name: (error, None) for name, (_, error) in self.stuck.items()})
        return waiting
