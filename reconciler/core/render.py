"""Plans, results and problems as text or JSON. Pure: strings in, strings out."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING

from reconciler import __version__
from reconciler.core.errors import Problem
from reconciler.core.plan import SUSPENDED, Action, Change, Kind, Mode, Plan
from reconciler.core.units import format_bytes

if TYPE_CHECKING:
    from reconciler.core.result import Result

_SYMBOL = {Kind.CREATE: "+", Kind.UPDATE: "~", Kind.DESTROY: "-", Kind.BLOCKED: "!"}


def symbol(action: Action) -> str:
    return "!" if action.blocked else _SYMBOL[action.kind]


def describe_change(change: Change, *, policy: str = "live", restarting: bool = False) -> str:
    if change.field == "adopt":
        return "adopt"
    if change.note.startswith("add"):
        text = f"{change.field} {change.new} (add)"
    elif change.note.startswith("remove"):
        text = f"{change.field} ({change.note})"
    else:
        text = f"{change.field} {change.old} -> {change.new}"
    if change.mode == Mode.LIVE:
        return f"{text} (live)" if change.field != "state" else text
    if change.mode == Mode.RESTART:
        if restarting:
            return f"{text} (restart)"
        return f"{text} needs a restart (updatePolicy: {policy}) -- pending restart"
    if change.mode == Mode.PENDING:
        if restarting:
            return f"{text} (restart)"
        why = f": {change.note}" if change.note else ""
        return f"{text} pending restart{why}"
    if change.mode == Mode.REFUSED:
        return f"{text} refused: {change.note}"
    return text


def _describe_infra_create(spec: object) -> str:
    if hasattr(spec, "path"):
        return f"dir pool at {spec.path}"  # type: ignore[attr-defined]
    parts = [f"forward {spec.forward}" if spec.forward != "none"  # type: ignore[attr-defined]
             else "isolated"]
    if spec.bridge:  # type: ignore[attr-defined]
        parts.append(f"bridge {spec.bridge}")  # type: ignore[attr-defined]
    if spec.ipv4:  # type: ignore[attr-defined]
        parts.append(f"{spec.ipv4.address}/{spec.ipv4.prefix}")  # type: ignore[attr-defined]
    return ", ".join(parts)


def describe(action: Action) -> str:
    if action.kind == Kind.CREATE and action.infra is not None:
        return _describe_infra_create(action.infra.spec)  # type: ignore[attr-defined]
    if action.kind == Kind.CREATE:
        assert action.desired
        spec = action.desired.spec
        parts = [f"{spec.vcpus} vcpu{'' if spec.vcpus == 1 else 's'}", format_bytes(spec.memory)]
        if spec.disks:
            parts.append("disks " + ", ".join(f"{d.name} {format_bytes(d.size)}"
                                              for d in spec.disks))
        if spec.nics:
            parts.append("nics " + ", ".join(n.source for n in spec.nics))
        if spec.cloud_init:
            parts.append(f"cloudInit {spec.cloud_init.digest}")  # the hash, never the content
        if spec.state != "running":
            parts.append(str(spec.state))
        return ", ".join(parts)
    if action.kind == Kind.DESTROY:
        return f"destroy ({action.reason})"
    if action.suspended and action.changes:  # and what it would do (restart included)
        return f"{action.reason} -- would change: {describe(replace(action, kind=Kind.UPDATE))}"
    if action.suspended and action.live is None:
        return f"{action.reason} -- would create: {describe(replace(action, kind=Kind.CREATE))}"
    if action.kind == Kind.BLOCKED:
        return action.reason
    policy = action.desired.spec.update_policy if action.desired else "live"
    text = ", ".join(describe_change(c, policy=policy, restarting=action.restart)
                     for c in action.changes)
    return f"{text} -- restarts the VM" if action.restart else text


def plan_text(plan: Plan) -> str:
    if not plan.actions:
        return "No changes. The live state matches the manifests.\n"
    width = max(len(a.label) for a in plan.actions)
    lines = [f"{symbol(a)} {a.label:<{width}}   {describe(a)}" for a in plan.actions]
    lines.append(
        f"Plan: {plan.count(Kind.CREATE)} to create, {plan.count(Kind.UPDATE)} to update, "
        f"{plan.count(Kind.DESTROY)} to destroy, {plan.blocked_count} blocked."
    )
    return "\n".join(lines) + "\n"


def _change_json(change: Change) -> dict:
    return {"field": change.field, "old": change.old, "new": change.new,
            "mode": str(change.mode), "note": change.note}


def _manifest_of(action: Action) -> str | None:
    source = action.desired.source if action.desired else getattr(action.infra, "source", None)
    return source.file if source else None


def plan_json(plan: Plan, problems: Iterable[Problem] = ()) -> dict:
    """The plan as ``schemas/plan.v1.json`` describes it."""
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Plan",
        "version": __version__,
        "fingerprint": plan.fingerprint,
        "hasChanges": plan.has_changes,
        "summary": {"create": plan.count(Kind.CREATE), "update": plan.count(Kind.UPDATE),
                    "destroy": plan.count(Kind.DESTROY), "blocked": plan.blocked_count},
        "problems": [p.as_dict() for p in problems],
        "actions": [
            {
                "name": a.name,
                "resource": a.resource,
                "kind": str(a.kind),
                "symbol": symbol(a),
                "text": describe(a),
                "changes": [_change_json(c) for c in a.changes],
                "restart": a.restart,
                "pendingRestart": bool(a.pending_restart),
                "reason": a.reason,
                "manifest": _manifest_of(a),
            }
            for a in plan.actions
        ],
    }


def results_text(results: Iterable[Result]) -> str:
    results = list(results)
    lines = []
    for r in results:
        tail = f": {r.message}" if r.message else ""
        what = str(r.outcome) if r.kind == Kind.BLOCKED else f"{r.kind} {r.outcome}"
        lines.append(f"{r.name}: {what}{tail}")
    failed = sum(1 for r in results if r.outcome == "failed")
    held = [r for r in results if r.outcome == "blocked"]
    suspended = sum(1 for r in held if r.message.startswith(SUSPENDED))
    pending = sum(1 for r in results if r.outcome == "pending restart")
    done = len(results) - failed - len(held)
    lines.append(f"Apply: {done} done ({pending} pending restart), {failed} failed, "
                 f"{len(held) - suspended} blocked"
                 + (f", {suspended} suspended." if suspended else "."))
    return "\n".join(lines) + "\n"


def results_json(results: Iterable[Result]) -> list[dict]:
    return [{"name": r.name, "kind": str(r.kind), "outcome": str(r.outcome),
             "message": r.message, "seconds": round(r.seconds, 3)} for r in results]


def problems_text(problems: Iterable[Problem]) -> str:
    return "".join(f"{p}\n" for p in problems)


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
