"""The plan as users read it: text as in SPEC section 3, JSON as schemas/plan.v1.json says."""

from __future__ import annotations

from jsonschema import Draft202012Validator
from planbuild import load_cases, run_case

from reconciler.core import render, schema
from reconciler.core.errors import Problem
from reconciler.core.plan import Kind, Why
from reconciler.core.result import Deed, Did, Outcome, Result
from reconciler.core.words import SUSPENDED

# SPEC section 3, verbatim.
SPEC_LINES = [
    "~ web-01   vcpus 2 -> 4 (live), memory 2GiB -> 4GiB (live)",
    "+ db-01    2 vcpus, 4GiB, disks root 40GiB",
    "- old-01   destroy (volumes retained: old-01-root)",
    "~ web-02   maxMemory 4GiB -> 8GiB needs a restart (updatePolicy: live) -- pending restart",
    "Plan: 1 to create, 2 to update (1 pending restart), 1 to destroy, 0 blocked.",
]


def _case(name: str) -> dict:
    return next(case for _, case in load_cases() if case["name"] == name)


def test_text_plan_reads_as_the_spec_shows() -> None:
    lines = render.plan_text(run_case(_case("the plan of SPEC section 3"))).splitlines()
    assert sorted(lines[:-1]) == sorted(SPEC_LINES[:-1])
    assert lines[-1] == SPEC_LINES[-1]


def test_no_changes_says_so() -> None:
    text = render.plan_text(run_case({"name": "empty", "expect": []}))
    assert text == "No changes. The live state matches the manifests.\n"


def test_json_plan_follows_the_schema_and_agrees_with_the_text() -> None:
    plan = run_case(_case("the plan of SPEC section 3"))
    problems = [Problem("manifests/bad.yaml", 12, 5, "spec.memory",
                        "'2GB' is not a quantity; write 2GiB or 2048MiB")]
    doc = render.plan_json(plan, problems)
    Draft202012Validator(schema.load("plan")).validate(doc)
    assert doc["summary"] == {"create": 1, "update": 2, "pendingRestart": 1, "destroy": 1,
                              "move": 0, "blocked": 0, "stillPendingRestart": 0}
    assert doc["hasChanges"] is True
    assert doc["fingerprint"] == plan.fingerprint
    assert doc["problems"] == [{"file": "manifests/bad.yaml", "line": 12, "column": 5,
                                "field": "spec.memory",
                                "message": "'2GB' is not a quantity; write 2GiB or 2048MiB"}]
    text_lines = render.plan_text(plan).splitlines()
    for action in doc["actions"]:
        assert f"{action['symbol']} {action['name']:<6}   {action['text']}" in text_lines
    by_name = {a["name"]: a for a in doc["actions"]}
    assert by_name["web-02"]["pendingRestart"] is True
    assert (by_name["web-02"]["kind"], by_name["web-02"]["symbol"]) == ("update", "~")
    assert by_name["web-02"]["changes"] == [
        {"field": "maxMemory", "old": "4GiB", "new": "8GiB", "mode": "restart", "note": ""}]
    assert by_name["db-01"]["manifest"] == "manifests/db-01.yaml"
    assert by_name["old-01"]["manifest"] is None
    assert by_name["old-01"]["reason"] == "volumes retained: old-01-root"


def test_json_plan_of_a_guarded_destroy_carries_the_reason() -> None:
    plan = run_case(_case("more destroys than max_destroy destroy none and say why"))
    doc = render.plan_json(plan)
    Draft202012Validator(schema.load("plan")).validate(doc)
    assert doc["summary"] == {"create": 0, "update": 0, "destroy": 0, "move": 0, "blocked": 3,
                              "pendingRestart": 0, "stillPendingRestart": 0}
    assert doc["hasChanges"] is False
    assert all("--max-destroy 2" in a["reason"] for a in doc["actions"])


def test_apply_results_text() -> None:
    results = [
        Result("web-01", Kind.UPDATE, Outcome.CONVERGED, did=(Deed(Did.RESIZED_LIVE),)),
        Result("web-02", Kind.UPDATE, Outcome.PENDING_RESTART, "maxMemory 4GiB -> 8GiB",
               did=(Deed(Did.UPDATED),)),
        Result("db-01", Kind.CREATE, Outcome.FAILED, "pool default-pool: not found"),
        Result("old-01", Kind.BLOCKED, Outcome.BLOCKED, "not destroyed: protect"),
    ]
    assert render.results_text(results) == (
        "web-01: resized live\n"
        "web-02: updated, pending restart: maxMemory 4GiB -> 8GiB\n"
        "db-01: create failed: pool default-pool: not found\n"
        "old-01: blocked: not destroyed: protect\n"
        "Apply: 2 done (1 pending restart), 1 failed, 1 blocked.\n"
    )


def test_results_say_what_was_done_never_converged() -> None:
    """Issue 13.2: a result says what happened (created, started, forced off after the
    shutdownTimeout, adopted), from the steps carried out; never "converged"."""
    results = [
        Result("build-01", Kind.CREATE, Outcome.CONVERGED,
               did=(Deed(Did.CREATED), Deed(Did.STARTED))),
        Result("old-01", Kind.DESTROY, Outcome.CONVERGED,
               did=(Deed(Did.FORCED_OFF, after=60), Deed(Did.DESTROYED))),
        Result("kept-01", Kind.UPDATE, Outcome.CONVERGED, did=(Deed(Did.ADOPTED),)),
        Result("web-03", Kind.UPDATE, Outcome.CONVERGED,
               did=(Deed(Did.UPDATED), Deed(Did.SHUT_DOWN), Deed(Did.STARTED))),
        Result("gone-01", Kind.DESTROY, Outcome.FAILED, "undefine: domain is locked",
               did=(Deed(Did.FORCED_OFF, after=300),)),
        Result("efi-01", Kind.CREATE, Outcome.BLOCKED, "the domain is paused",
               did=(Deed(Did.CREATED), Deed(Did.STARTED))),
    ]
    assert render.results_text(results).splitlines()[:-1] == [
        "build-01: created, started",
        "old-01: forced off after 1m, destroyed",
        "kept-01: adopted",
        "web-03: updated, shut down, started",
        "gone-01: destroy failed: undefine: domain is locked (done before: forced off after "
        "5m)",
        "efi-01: created, started; blocked: the domain is paused",
    ]
    assert "converged" not in render.results_text(results)
    doc = render.results_json(results)
    assert [(r["outcome"], r["did"], r["forcedOffAfter"]) for r in doc] == [
        ("converged", ["created", "started"], None),
        ("converged", ["forced off", "destroyed"], 60),
        ("converged", ["adopted"], None),
        ("converged", ["updated", "shut down", "started"], None),
        ("failed", ["forced off"], 300),
        ("blocked", ["created", "started"], None),
    ]
    assert doc[1]["text"] == "old-01: forced off after 1m, destroyed"


def test_plan_and_result_lines_carry_their_tone() -> None:
    """What a shell colours: each plan line by its action's symbol, each result by outcome."""
    plan = run_case(_case("the plan of SPEC section 3"))
    tones = {line.text.split()[1]: line.tone for line in render.plan_lines(plan)
             if line.tone != render.Tone.SUMMARY}
    assert tones == {"web-01": "update", "db-01": "create", "old-01": "destroy",
                     "web-02": "update"}
    assert render.plan_lines(plan)[-1].tone == render.Tone.SUMMARY
    results = [Result("a", Kind.CREATE, Outcome.CONVERGED, did=(Deed(Did.CREATED),)),
               Result("b", Kind.UPDATE, Outcome.PENDING_RESTART, "x"),
               Result("c", Kind.CREATE, Outcome.FAILED, "y"),
               Result("d", Kind.BLOCKED, Outcome.BLOCKED, "z")]
    assert [line.tone for line in render.results_lines(results)] == [
        "done", "pending", "failed", "blocked", "summary"]


def test_apply_results_count_suspended_vms_apart() -> None:
    reason = f"{SUSPENDED}: left as it is until the annotation is removed"
    results = [
        Result("web-01", Kind.UPDATE, Outcome.CONVERGED),
        Result("db-01", Kind.BLOCKED, Outcome.BLOCKED, reason, why=Why.SUSPENDED),
    ]
    assert render.results_text(results).splitlines()[-1] == (
        "Apply: 1 done (0 pending restart), 0 failed, 0 blocked, 1 suspended.")


def test_a_vm_only_still_pending_restart_is_listed_apart_and_not_counted() -> None:
    """Issue 13.3: what apply leaves as it is is neither an update nor blocked."""
    plan = run_case(_case("after apply the config has the new maxVcpus, the running VM waits; "
                          "nothing to write"))
    assert render.plan_text(plan).splitlines() == [
        "No changes to apply.",
        "Still pending restart (nothing to apply; each takes its saved changes at its next "
        "start):",
        "= web-02   maxVcpus 4 -> 8 pending restart"]
    doc = render.plan_json(plan)
    Draft202012Validator(schema.load("plan")).validate(doc)
    assert doc["summary"] == {"create": 0, "update": 0, "pendingRestart": 0, "destroy": 0,
                              "move": 0, "blocked": 0, "stillPendingRestart": 1}
    assert [(a["kind"], a["symbol"]) for a in doc["actions"]] == [("pending restart", "=")]


def test_json_kind_and_symbol_agree_with_the_text_counts() -> None:
    """A refused update is shown ``!`` and counted blocked: its JSON kind says blocked too."""
    for _, case in load_cases():
        doc = render.plan_json(run_case(case))
        for action in doc["actions"]:
            assert {"+": "create", "~": "update", "-": "destroy", "!": "blocked",
                    "=": "pending restart"}[action["symbol"]] == action["kind"], case["name"]
        blocked = sum(1 for a in doc["actions"] if a["kind"] == "blocked")
        assert doc["summary"]["blocked"] == blocked, case["name"]


def test_apply_results_list_vms_untouched_and_still_pending_once_apart() -> None:
    results = [
        Result("web-01", Kind.UPDATE, Outcome.CONVERGED, did=(Deed(Did.UPDATED),)),
        Result("web-02", Kind.UPDATE, Outcome.PENDING_RESTART,
               "maxMemory 4GiB -> 8GiB needs a restart", untouched=True),
    ]
    assert render.results_text(results) == (
        "web-01: updated\n"
        "Apply: 1 done (0 pending restart), 0 failed, 0 blocked.\n"
        "Still pending restart (nothing to apply; each takes its saved changes at its next "
        "start):\n"
        "web-02: maxMemory 4GiB -> 8GiB needs a restart\n")
