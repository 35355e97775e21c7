"""The diff, table-driven: every case of tests/plan/cases/*.yaml (format: planbuild.py)."""

from __future__ import annotations

from typing import Any

import pytest
from jsonschema import Draft202012Validator
from planbuild import load_cases, run_case

from reconciler.core import render, schema, words
from reconciler.core.plan import Action

CASES = load_cases()
IDS = [case_id for case_id, _ in CASES]
# A case with ``bug: why`` shows a known bug: its expectations are what is right, and until the
# bug is fixed the test of its actions is a strict xfail.
KNOWN = [pytest.param(case, id=case_id,
                      marks=[pytest.mark.xfail(strict=True, reason=case["bug"])]
                      if "bug" in case else [])
         for case_id, case in CASES]


def _changes(action: Action, expected: list[list[str]]) -> list[list[str | None]]:
    """The action's changes as case rows: the note only where the case gives one, and "*" where
    the case does not care (a spec hash)."""
    out = []
    for i, step in enumerate(render.changed_fields(action)):
        change = render.change_json(step)
        row = [change["field"], change["old"], change["new"], change["mode"], change["note"]]
        want = expected[i] if i < len(expected) else []
        row = [w if w == "*" else g for g, w in zip(row, [*want, *[None] * 5], strict=False)]
        row = row[:max(4, len(want))]
        out.append(row)
    return out


@pytest.mark.parametrize("case", KNOWN)
def test_plan(case: dict[str, Any]) -> None:
    plan = run_case(case)
    got = [a.name for a in plan.actions]
    assert got == [e["name"] for e in case["expect"]], render.plan_text(plan)
    for action, want in zip(plan.actions, case["expect"], strict=True):
        assert str(action.kind) == want["kind"], action
        assert render.symbol(action) == want["symbol"], action
        assert action.restart is want.get("restart", False), action
        changes = [[str(x) if x is not None else None for x in row]
                   for row in want.get("changes", [])]
        assert _changes(action, changes) == changes, render.describe(action)
        if "reason" in want:
            assert words.reason_text(action) == want["reason"]
        if "reason_has" in want:
            assert want["reason_has"] in words.reason_text(action), words.reason_text(action)
        if "label" in want:
            assert action.label == want["label"]
        if "ops" in want:
            assert [str(s.op) for s in action.steps] == want["ops"], action.steps
    if "writes" in case:
        assert plan.has_changes is case["writes"], render.plan_text(plan)
    if "text" in case:
        assert render.plan_text(plan) == case["text"]


def test_cases_exist() -> None:
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", [c for _, c in CASES], ids=IDS)
def test_plan_json_follows_the_schema(case: dict[str, Any]) -> None:
    plan = run_case(case)
    doc = render.plan_json(plan)
    Draft202012Validator(schema.load("plan")).validate(doc)
    if "bug" not in case:
        assert [a["name"] for a in doc["actions"]] == [e["name"] for e in case["expect"]]
        assert [a["symbol"] for a in doc["actions"]] == [e["symbol"] for e in case["expect"]]
    assert doc["hasChanges"] is plan.has_changes
