"""Networks and pools in the plan as users read it, beyond the case tables
(tests/plan/cases/{network,pool}.yaml)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from planbuild import load_cases, run_case

from reconciler.core import render, schema, words
from reconciler.core.plan import Effect, Kind, Op, Resource

INFRA = [(case_id, case) for case_id, case in load_cases()
         if case_id.startswith(("network:", "pool:"))]


def _case(name: str) -> dict[str, Any]:
    return next(case for _, case in INFRA if case["name"] == name)


def test_every_kind_has_its_cases() -> None:
    assert sum(1 for case_id, _ in INFRA if case_id.startswith("network:")) >= 20
    assert sum(1 for case_id, _ in INFRA if case_id.startswith("pool:")) >= 15


@pytest.mark.parametrize("name", [
    "an active network's forward mode waits for the network's restart",
    "an active network's bridge waits for the network's restart",
    "an active network's address and DHCP range wait for the network's restart",
])
def test_an_active_network_change_is_written_and_waits_for_the_network(name: str) -> None:
    (action,) = run_case(_case(name)).actions
    assert action.resource == Resource.NETWORK
    assert action.kind == Kind.UPDATE and action.writes and not action.restart
    assert [s.effect for s in action.steps] == [Effect.RESTART]
    assert action.pending_restart == action.steps
    doc = render.plan_json(run_case(_case(name)))
    Draft202012Validator(schema.load("plan")).validate(doc)
    (shown,) = doc["actions"]
    assert shown["pendingRestart"] is True and shown["resource"] == "network"


@pytest.mark.parametrize("name", [
    "an active network's forward mode waits for the network's restart",
    "an active network's bridge waits for the network's restart",
])
def test_a_network_waiting_for_its_restart_reads_as_a_network(name: str) -> None:
    text = render.plan_text(run_case(_case(name)))
    assert "updatePolicy" not in text
    assert "takes effect when the network restarts" in text


def test_a_refused_pool_move_writes_nothing_and_names_the_refusal() -> None:
    plan = run_case(_case("a refused path change holds back the autostart change beside it"))
    (action,) = plan.actions
    assert action.refused and not action.writes and not plan.has_changes
    assert [s.op for s in action.steps] == [Op.MOVE_POOL, Op.SET_AUTOSTART]
    assert words.refusals(action) == "path: a pool cannot move; declare a new pool instead"


def test_removals_name_their_resource_in_json() -> None:
    plan = run_case(_case("pools and networks come first, then VMs, then the removals"))
    doc = render.plan_json(plan)
    assert [(a["resource"], a["kind"], a["name"]) for a in doc["actions"]] == [
        ("pool", "create", "fast"), ("network", "create", "lab"), ("vm", "create", "web-01"),
        ("vm", "destroy", "old-01"), ("pool", "destroy", "old-pool"),
        ("network", "destroy", "old-net")]
    assert doc["summary"] == {"create": 3, "update": 0, "destroy": 3, "move": 0, "blocked": 0,
                              "pendingRestart": 0, "stillPendingRestart": 0}
    assert [a["manifest"] for a in doc["actions"][:3]] == [
        "manifests/fast.yaml", "manifests/lab.yaml", "manifests/web-01.yaml"]


def test_the_fingerprint_covers_the_plans_own_networks_and_pools_only() -> None:
    case = _case("a pool in sync plans nothing")
    base = run_case(case).fingerprint
    inactive = {**case, "pools": {**case["pools"], "live": [{"name": "fast", "active": False}]}}
    assert run_case(inactive).fingerprint != base
    # Someone else's network that nothing here declares or uses is not the plan's business...
    with_net = {**case, "networks": {"live": [{"name": "lab", "mark": None}]}}
    assert run_case(with_net).fingerprint == base
    # ... a network the manifests declare is, present or not.
    declared = {**case, "networks": {"desired": [{"name": "lab"}]}}
    declared_there = {**case, "networks": {"desired": [{"name": "lab"}],
                                           "live": [{"name": "lab", "mark": None}]}}
    assert run_case(declared).fingerprint != run_case(declared_there).fingerprint
    assert "network lab" in dict(run_case(declared_there).observed)
    assert run_case(case).fingerprint == base
