"""Results are what a fresh observation shows (core/verify.py): "converged" only when a new plan
has nothing left to do for the resource."""

from __future__ import annotations

from planbuild import run_case

from reconciler.core.plan import Kind, Plan, Why
from reconciler.core.result import Outcome, Result
from reconciler.core.verify import observed

RESIZE = {
    "name": "vcpus resize",
    "desired": [{"name": "web-01", "vcpus": 4, "maxVcpus": 8, "memory": "2GiB"}],
    "live": [{"name": "web-01", "spec": {"vcpus": 2}}],
}


def _done(plan: Plan) -> tuple[Result, ...]:
    return tuple(Result(a.label, a.kind, Outcome.CONVERGED) for a in plan.actions)


def test_nothing_left_is_converged() -> None:
    plan = run_case(RESIZE)
    fresh = run_case({**RESIZE, "live": [{"name": "web-01"}]})
    assert fresh.actions == ()
    assert [r.outcome for r in observed(plan, _done(plan), fresh)] == [Outcome.CONVERGED]


def test_steps_left_are_not_converged_and_named() -> None:
    plan = run_case(RESIZE)
    (result,) = observed(plan, _done(plan), plan)  # libvirt did not take the change
    assert result.outcome == Outcome.FAILED and result.retryable
    assert result.message == "not converged: still to do: vcpus 2 -> 4 (live)"


def test_a_change_that_now_waits_for_a_restart_is_pending_restart() -> None:
    plan = run_case(RESIZE)
    fresh = run_case({**RESIZE, "live": [{"name": "web-01", "now": {"vcpus": 2},
                                          "hold": {"vcpus": 4, "reason": "not applied"}}]})
    (result,) = observed(plan, _done(plan), fresh)
    assert result.outcome == Outcome.PENDING_RESTART
    assert result.message == "vcpus 2 -> 4 needs a restart (not applied)"


def test_a_destroyed_vm_still_there_is_not_converged() -> None:
    case = {"name": "destroy", "desired": [], "guards": {"allow_empty": True},
            "live": [{"name": "old-01", "spec": {"vcpus": 1, "memory": "1GiB"}}]}
    plan = run_case(case)
    assert plan.actions[0].kind == Kind.DESTROY
    (result,) = observed(plan, _done(plan), plan)
    assert result.outcome == Outcome.FAILED
    assert result.message.startswith("not converged: still to do: ")


def test_failed_and_blocked_results_stay() -> None:
    plan = run_case(RESIZE)
    failed = (Result("web-01", Kind.UPDATE, Outcome.FAILED, "libvirt said no"),)
    assert observed(plan, failed, plan) == failed


def test_a_change_blocked_since_is_blocked() -> None:
    plan = run_case(RESIZE)
    fresh = run_case({**RESIZE, "desired": [{**RESIZE["desired"][0],  # type: ignore[dict-item]
                                              "annotations": {"reconciler/suspend": "true"}}]})
    (result,) = observed(plan, _done(plan), fresh)
    assert (result.outcome, result.why) == (Outcome.BLOCKED, Why.SUSPENDED)
