"""The pure parts of targeting (``core.targeting``): how patterns and selectors read, and what
a targeted apply leaves in the status file for the objects it did not plan."""

from __future__ import annotations

import pytest

from reconciler.core import status
from reconciler.core.plan import Partial, Plan
from reconciler.core.targeting import Requirement, Targeting, parse_pattern, parse_selector
from reconciler.core.validate.result import Validated


@pytest.mark.parametrize(("text", "terms"), [
    ("tier=web", [Requirement("tier", "=", "web")]),
    ("tier==web, env!=prod", [Requirement("tier", "=", "web"), Requirement("env", "!=", "prod")]),
    ("backup,!legacy", [Requirement("backup", "exists"), Requirement("legacy", "!exists")]),
    ("app.kubernetes.io/name=x", [Requirement("app.kubernetes.io/name", "=", "x")]),
])
def test_selectors_read_as_kubectl_reads_them(text: str, terms: list[Requirement]) -> None:
    assert list(parse_selector(text)) == terms


@pytest.mark.parametrize(("text", "message"), [
    ("tier=web,", "'tier=web,': empty term; write KEY=VALUE[,KEY=VALUE]"),
    ("=web", "'=web' is not a label requirement; write KEY=VALUE, KEY!=VALUE, KEY or !KEY"),
    ("a=b=c", "'a=b=c' is not a label requirement; write KEY=VALUE, KEY!=VALUE, KEY or !KEY"),
])
def test_a_selector_that_is_not_one_says_which_term(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_selector(text)
    assert str(caught.value) == message


@pytest.mark.parametrize(("labels", "selector", "matches"), [
    ({"tier": "web"}, "tier=web", True),
    ({"tier": "db"}, "tier=web", False),
    ({}, "tier!=web", True),
    ({"tier": "web"}, "tier!=web", False),
    ({"tier": "web"}, "tier,!legacy", True),
    ({"tier": "web", "legacy": "1"}, "tier,!legacy", False),
])
def test_every_term_must_match(labels: dict[str, str], selector: str, matches: bool) -> None:
    assert all(r.matches(labels) for r in parse_selector(selector)) is matches


def test_patterns_have_a_kind_prefix_or_name_vms() -> None:
    assert [(str(p.resource), p.glob) for p in (
        parse_pattern("web-*"), parse_pattern("Network/lab"), parse_pattern("pool/f?st"),
        parse_pattern("VirtualMachine/db"))] == [
        ("vm", "web-*"), ("network", "lab"), ("pool", "f?st"), ("vm", "db")]
    with pytest.raises(ValueError, match="unknown kind 'disk'"):
        parse_pattern("disk/root")
    assert Targeting.of(["web-*", "pool/x"], ["tier=web"]).text == (
        "--target web-* --target pool/x -l tier=web")
    assert not Targeting().active


def test_a_targeted_apply_keeps_the_others_status_and_never_calls_them_in_sync() -> None:
    plan = Plan((), "", partial=Partial("--target web", ("web",), "", ("web",), (), (), 3))
    previous = [{"name": "web", "status": "pending"},
                {"name": "db", "status": "failed", "detail": "create", "last_error": "boom"}]
    inputs = Validated((), ())  # nothing declared: only the earlier entries
    got = status.partial_statuses([status.VMStatus("web", "in sync")], plan, inputs, previous)
    assert got == [
        status.VMStatus("db", "failed", f"create; {status.NOT_PLANNED}", None, "boom"),
        status.VMStatus("web", "in sync"),
    ]
