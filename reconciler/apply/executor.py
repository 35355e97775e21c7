"""Carry out a plan on libvirt: one worker per resource, bounded; one failure never stops the
others. Pools and networks are created before the VMs that use them and removed after them.

Each result says what was done (``Result.did``: created, started, forced off after 60s, ...), as
the steps carried out found it; a failure is a result, logged at debug only (the shell prints
or logs it, once). An ``Observer`` in the settings is told of each action and long step as it
begins and ends (see ``reconciler.apply.progress``)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from reconciler.adapters.lazylog import get_logger
from reconciler.adapters.libvirt import Libvirt
from reconciler.apply import devices, move, network, pool, vm
from reconciler.apply.progress import Activity, Observer, Silent
from reconciler.apply.steps import Interrupted, Steps
from reconciler.core import defaults, words
from reconciler.core.errors import ReconcilerError
from reconciler.core.moves import deleted_here, finishing
from reconciler.core.plan import Action, Kind, Op, Plan, Reason, Resource, Why
from reconciler.core.result import Deed, Did, Outcome, Result

log = get_logger("reconciler.apply")


@dataclass
class Settings:
    parallel: int = defaults.PARALLEL
    balloon_wait: float = 3.0  # seconds a guest gets to take up a balloon target
    commit: str | None = None
    dirty: bool = False  # the manifests differ from ``commit`` (recorded with it)
    instance: str = defaults.INSTANCE
    clock: Callable[[], float] = field(default=time.monotonic)
    stop: Callable[[], bool] | None = None  # True: start no further action (shutting down)
    # True: start no further step (apply got SIGTERM/SIGINT); the action in flight stops
    # between two steps (see ``reconciler.apply.steps``) and the next run finishes it.
    halt: Callable[[], bool] | None = None
    # Many hosts: how to reach each Host a VM may move to (``apply.move.Route``), by name.
    routes: Mapping[str, move.Route] = field(default_factory=dict)
    observer: Observer = field(default_factory=Silent)  # told of each action as it begins


def execute(plan: Plan, hv: Libvirt, settings: Settings | None = None) -> tuple[Result, ...]:
    """Carry out every action of ``plan``; results in the plan's order."""
    settings = settings or Settings()
    runner = _Runner(Steps.from_env(hv, settings.halt), settings)
    infra = [a for a in plan.actions if a.resource != Resource.VM]
    phases = (
        [a for a in infra if a.kind != Kind.DESTROY],
        [a for a in plan.actions if a.resource == Resource.VM],
        [a for a in infra if a.kind == Kind.DESTROY],
    )
    results: dict[int, Result] = {}
    with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as workers:
        for number, phase in enumerate(phases):
            if number == 2 and any(not r.ok and r.kind == Kind.DESTROY for r in results.values()):
                for action in phase:
                    held = replace(action, kind=Kind.BLOCKED, reason=Reason(Why.DESTROY_FAILED))
                    results[id(action)] = Result(action.label, action.kind, Outcome.BLOCKED,
                                                 words.reason_text(held),
                                                 why=Why.DESTROY_FAILED, started=False)
                break
            for action, result in zip(phase, workers.map(runner.run, phase), strict=True):
                results[id(action)] = result
            if number == 1:
                runner.settle(phase, results)
    return tuple(results[id(a)] for a in plan.actions)


class _Runner:
    def __init__(self, steps: Steps, settings: Settings) -> None:
        self.steps = steps
        self.hv = steps.hv
        self.settings = settings
        self.vm = vm.Context(self.hv, settings.commit, settings.instance, settings.clock, steps,
                             dirty=settings.dirty, observer=settings.observer)

    def run(self, action: Action) -> Result:
        result = self._run(action)
        if action.writes:
            self.settings.observer.ended(result)
        return result

    def _run(self, action: Action) -> Result:
        started = self.settings.clock()
        if self.settings.stop is not None and self.settings.stop():
            return Result(action.label, action.kind, Outcome.FAILED, "not started: shutting down",
                          retryable=True, interrupted=True, started=False)
        if action.writes and self.steps.halted():
            return Result(action.label, action.kind, Outcome.FAILED, "interrupted: not started",
                          retryable=True, interrupted=True, started=False)
        if action.kind == Kind.BLOCKED or action.refused:
            return Result(action.label, action.kind, Outcome.BLOCKED, words.reason_text(action),
                          why=action.reason.why if action.reason else None, started=False)
        if not action.writes:
            return replace(_pending_result(action, [], 0.0), untouched=True, started=False)
        self.steps.begin()
        self.settings.observer.began(action.label, _activity(action))
        did: list[Deed] = []
        try:
            pending = self._carry_out(action, did)
        except Interrupted as stop:
            done = self.steps.done
            message = (f"interrupted after {done} step{'' if done == 1 else 's'}, before {stop}: "
                       "the next run finishes it" if done else "interrupted: not started")
            log.warning("action interrupted", vm=action.label, action=str(action.kind),
                        steps=done)
            return Result(action.label, action.kind, Outcome.FAILED, message,
                          self.settings.clock() - started, retryable=True, interrupted=True,
                          started=done > 0, did=tuple(did))
        except Exception as exc:  # one resource's surprise must not stop the others
            if isinstance(exc, ReconcilerError):
                error, retryable = str(exc), exc.retryable
            else:
                log.exception("action crashed", vm=action.label)
                error, retryable = f"internal error: {exc!r}", False
            seconds = self.settings.clock() - started
            # Debug only: the failure is the result, which the shell prints (or logs) once.
            log.debug("action failed", vm=action.label, action=str(action.kind),
                      error=error, seconds=round(seconds, 3), retryable=retryable)
            return Result(action.label, action.kind, Outcome.FAILED, error, seconds, retryable,
                          did=tuple(did))
        seconds = self.settings.clock() - started
        result = replace(_pending_result(action, pending, seconds), did=tuple(did))
        log.debug("action done", vm=action.name, action=str(action.kind),
                 result=str(result.outcome), seconds=round(seconds, 3))
        return result

    def settle(self, phase: list[Action], results: dict[int, Result]) -> None:
        """The balloon targets of the run's VMs, watched together (one settle window, not one
        per VM); what a guest did not take up makes its result pending restart."""
        changes = list(self.vm.settling)
        if not changes:
            return
        devices.settle(self.hv, changes, self.settings.clock, self.settings.balloon_wait)
        by_name = {a.name: a for a in phase}
        for change in changes:
            action = by_name.get(change.name)
            result = results.get(id(action)) if action is not None else None
            try:
                reasons = devices.finish(self.hv, change)
            except Interrupted:  # not recorded: the next run sets the balloon target again
                if result is not None and action is not None and result.ok:
                    results[id(action)] = replace(
                        result, outcome=Outcome.FAILED, retryable=True,
                        message="interrupted before the live memory was recorded: the next "
                                "run finishes it")
                continue
            except ReconcilerError as exc:
                reasons = [f"memory: the live change was not recorded ({exc})"]
            if result is None or not reasons or result.outcome == Outcome.FAILED:
                continue
            message = "; ".join(m for m in (result.message, *reasons) if m)
            results[id(action)] = replace(result, outcome=Outcome.PENDING_RESTART,
                                          message=message)
        self.vm.settling.clear()

    def _carry_out(self, action: Action, did: list[Deed]) -> list[str]:
        if action.resource == Resource.NETWORK:
            network.carry_out(action, self.hv, instance=self.settings.instance,
                              commit=self.settings.commit)
            did += _infra_did(action)
            return []
        if action.resource == Resource.POOL:
            pool.carry_out(action, self.hv, instance=self.settings.instance)
            did += _infra_did(action)
            return []
        if action.kind == Kind.MOVE:
            move.carry_out(action, self.hv, self.settings.routes, self.settings.clock)
            if finishing(action):
                did.append(Deed(Did.COPY_DELETED, to=f"{action.steps[0].new} "
                                f"({', '.join(deleted_here(action))})"))
                return []
            how = "live migration" if action.has(Op.MIGRATE) else "cold move"
            did.append(Deed(Did.MOVED, to=f"{action.steps[0].new} ({how})"))
            return []
        return vm.carry_out(action, self.vm, did)


def _activity(action: Action) -> Activity:
    if action.has(Op.ADOPT):
        return Activity.ADOPTING
    if action.kind == Kind.DESTROY:
        return Activity.DESTROYING
    if action.kind == Kind.CREATE or words.creating(action):
        return Activity.CREATING
    return Activity.UPDATING


def _infra_did(action: Action) -> list[Deed]:
    """What a network's or pool's carried-out action did."""
    if action.kind == Kind.DESTROY:
        return [Deed(Did.DESTROYED)]
    if action.kind == Kind.CREATE:
        return [Deed(Did.CREATED)]
    did = [Deed(Did.UPDATED)] if any(s.writes and s.op != Op.START for s in action.steps) else []
    return did + ([Deed(Did.STARTED)] if action.has(Op.START) else [])


def _pending_result(action: Action, pending: list[str], seconds: float) -> Result:
    causes = [*pending, *(words.restart_cause(s) for s in action.pending_restart)]
    if causes:
        return Result(action.label, action.kind, Outcome.PENDING_RESTART, "; ".join(causes),
                      seconds)
    return Result(action.label, action.kind, Outcome.CONVERGED, "", seconds)
