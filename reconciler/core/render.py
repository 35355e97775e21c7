"""Plans, results and problems as text or JSON: the only code that turns plan values into words.
Pure: values in, strings out."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from dataclasses import replace
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple

from reconciler import __version__
from reconciler.core.errors import Problem
from reconciler.core.model.network import DesiredNetwork
from reconciler.core.model.pool import DesiredPool
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import (
    Action,
    Effect,
    Header,
    Kind,
    Op,
    Plan,
    Step,
    Value,
    Why,
)
from reconciler.core.units import format_bytes

if TYPE_CHECKING:
    from reconciler.core.result import Result

_SYMBOL = {Kind.CREATE: "+", Kind.UPDATE: "~", Kind.DESTROY: "-", Kind.BLOCKED: "!",
           Kind.MOVE: ">"}
STILL_PENDING = "pending restart"  # the JSON kind of a VM only still waiting for a restart
STILL_PENDING_TITLE = ("Still pending restart (nothing to apply; each takes its saved changes "
                       "at its next start):")


class Tone(StrEnum):
    """What a line of a plan or of results is, for a shell that colours it (the core draws no
    colour): each action's kind, each result's outcome, the summary and the rest."""

    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    BLOCKED = "blocked"
    PENDING = "pending"  # still pending restart; a result pending restart
    DONE = "done"  # a result: converged
    FAILED = "failed"
    SUMMARY = "summary"
    PLAIN = "plain"  # titles, the header


class Line(NamedTuple):
    tone: Tone
    text: str


# The words inside a plan line that say how a change takes effect, for a shell that colours
# them: live on the running VM, or waiting for (or done by) a restart.
LIVE_TAGS = ("(live)",)
RESTART_TAGS = ("(restart)", "-- restarts the VM", "pending restart")

_TONE = {"+": Tone.CREATE, "~": Tone.UPDATE, "-": Tone.DESTROY, "!": Tone.BLOCKED,
         "=": Tone.PENDING, ">": Tone.UPDATE}


def symbol(action: Action) -> str:
    """``!`` what will not be done, ``=`` still pending restart (left as it is), else the
    kind's: ``+`` create, ``~`` update (a pending restart included), ``-`` destroy."""
    if action.blocked:
        return "!"
    return "=" if action.still_pending else _SYMBOL[action.kind]


def kind_of(action: Action) -> str:
    """The action's kind as plans count it: blocked when it will not be done."""
    if action.blocked:
        return str(Kind.BLOCKED)
    return STILL_PENDING if action.still_pending else str(action.kind)


def _describe_create(action: Action) -> str:
    want = action.desired
    if isinstance(want, DesiredPool):
        return f"dir pool at {want.spec.path}"
    if isinstance(want, DesiredNetwork):
        net = want.spec
        parts = [f"forward {net.forward}" if net.forward != "none" else "isolated"]
        if net.bridge:
            parts.append(f"bridge {net.bridge}")
        if net.ipv4:
            parts.append(f"{net.ipv4.address}/{net.ipv4.prefix}")
        return ", ".join(parts)
    assert isinstance(want, DesiredVM)
    spec = want.spec
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


def describe(action: Action) -> str:
    from reconciler.core import words  # imported once a plan has something to say

    if action.kind == Kind.CREATE and action.refused:
        return "blocked: " + "; ".join(words.note(s) for s in action.steps
                                       if s.effect == Effect.REFUSED)
    if action.kind == Kind.CREATE:
        reused = [words.reuse_text(s) for s in action.steps if s.op == Op.REUSE_VOLUME]
        return ", ".join([_describe_create(action), *reused])
    if action.kind == Kind.DESTROY:
        return f"destroy ({words.reason_text(action)})"
    if action.kind == Kind.MOVE:
        return words.move_text(action)
    if action.suspended and words.creating(action):
        return f"{words.reason_text(action)} -- would create: {_describe_create(action)}"
    if action.suspended and action.steps:  # and what it would do (restart included)
        update = describe(replace(action, kind=Kind.UPDATE, reason=None))
        return f"{words.reason_text(action)} -- would change: {update}"
    if action.kind == Kind.BLOCKED:
        return words.reason_text(action)
    policy = action.desired.spec.update_policy if isinstance(action.desired, DesiredVM) else "live"
    text = ", ".join(words.reuse_text(s) if s.op == Op.REUSE_VOLUME
                     else words.describe_step(s, policy=policy, restarting=action.restart)
                     for s in action.steps
                     if s.op not in words.VOLUME_OPS or s.op == Op.REUSE_VOLUME)
    return f"{text} -- restarts the VM" if action.restart else text


def plan_text(plan: Plan, header: Header | None = None) -> str:
    """The plan as lines of text: a line per action, the summary, and with ``header`` a last
    line naming what the plan was made for (see ``header_text``)."""
    return "".join(f"{line.text}\n" for line in plan_lines(plan, header))


def plan_lines(plan: Plan, header: Header | None = None) -> list[Line]:
    """``plan_text``'s lines (without line ends), each with its tone."""
    footer = [Line(Tone.PLAIN, header_text(header))] if header is not None else []
    partial = [Line(Tone.PLAIN, partial_text(plan))] if plan.partial is not None else []
    if not plan.actions:
        return [*partial, Line(Tone.SUMMARY, no_changes_text(plan)), *footer]
    width = max(len(a.label) for a in plan.actions)
    changes, waiting = plan.changes, plan.still_pending

    def line(action: Action) -> Line:
        mark = symbol(action)
        return Line(_TONE[mark], f"{mark} {action.label:<{width}}   {describe(action)}")

    lines = [*partial, *(line(a) for a in changes)]
    lines.append(Line(Tone.SUMMARY, summary_text(plan) if changes else "No changes to apply."))
    if waiting:
        lines.append(Line(Tone.PLAIN, STILL_PENDING_TITLE))
        lines += [line(a) for a in waiting]
    return lines + footer


def partial_text(plan: Plan) -> str:
    """A targeted run's line: ``Targeted run: 2 of 7 VMs (--target web-*); the others were
    not planned.``, with the networks and pools it planned when it planned any; empty for a
    run over everything."""
    part = plan.partial
    if part is None:
        return ""
    infra = [f"network/{n}" for n in part.networks] + [f"pool/{p}" for p in part.pools]
    also = f" and {', '.join(infra)}" if infra else ""
    return (f"Targeted run: {len(part.vms)} of {_count(part.total, 'VM')}{also} "
            f"({part.text}); the others were not planned.")


def no_changes_text(plan: Plan) -> str:
    """"No changes", for the whole instance or, on a targeted run, for what it planned only."""
    if plan.partial is not None:
        return "No changes for the targeted resources: they match their manifests."
    return "No changes. The live state matches the manifests."


def summary_text(plan: Plan) -> str:
    """``Plan: 1 to create, 2 to update (1 pending restart), 1 to destroy, 1 blocked.``"""
    restarts = plan.restart_count
    pending = f" ({restarts} pending restart)" if restarts else ""
    moves = plan.count(Kind.MOVE)
    moving = f", {moves} to move" if moves else ""  # many hosts only
    return (f"Plan: {plan.count(Kind.CREATE)} to create, {plan.count(Kind.UPDATE)} to update"
            f"{pending}, {plan.count(Kind.DESTROY)} to destroy{moving}, "
            f"{plan.blocked_count} blocked.")


def irreversible(plan: Plan) -> str:
    """What in the plan cannot be undone, for the question apply asks (empty when nothing):
    ``destroys 2 resources (web-01, network/lab) and deletes 1 volume (web-02-data)``; moves
    to other hosts too (each deletes the VM's volumes here at its end)."""
    from reconciler.core.model.vm import Disk, volume_name
    from reconciler.core.moves import deleted_here, finishing

    destroys = [a.label for a in plan.actions if a.kind == Kind.DESTROY and a.writes]
    volumes = [volume_name(a.name, s.old.name) for a in plan.actions if a.writes
               for s in a.writing(Op.DELETE_VOLUME) if isinstance(s.old, Disk)]
    # many hosts: the copy a stopped move left here
    volumes += [v.split("/", 1)[1] for a in plan.actions if a.writes and finishing(a)
                for v in deleted_here(a)]
    # many hosts: a move deletes the VM's volumes here once it is there
    moves = [f"{a.name} to {a.steps[0].new}" for a in plan.actions
             if a.kind == Kind.MOVE and a.writes and not finishing(a)]
    parts = []
    if destroys:
        parts.append(f"destroys {_count(len(destroys), 'resource')} ({', '.join(destroys)})")
    if volumes:
        parts.append(f"deletes {_count(len(volumes), 'volume')} ({', '.join(volumes)})")
    if moves:
        parts.append(f"moves {_count(len(moves), 'VM')} to another host, deleting its volumes "
                     f"here once it is there ({', '.join(moves)})")
    return " and ".join(parts)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def header_text(header: Header) -> str:
    """E.g. ``Made for instance default on hv-01 (qemu:///system), manifests at commit
    1a2b3c4d5e6f, from a snapshot taken 2026-11-30T17:50:00Z.``"""
    commit = (f"manifests at commit {header.commit[:12]}"
              + (" with changes not committed (dirty)" if header.dirty else "")
              if header.commit else f"warning: {header.git_problem or 'no commit'}")
    parts = [f"Made for instance {header.instance} on {header.host or header.uri}"
             + (f" ({header.uri})" if header.host and header.uri != header.host else ""), commit]
    if header.snapshot:
        parts.append(f"from a snapshot taken {header.snapshot}")
    return ", ".join(parts) + "."


def header_json(header: Header) -> dict[str, object]:
    return {"instance": header.instance, "host": header.host, "uri": header.uri,
            "commit": header.commit, "dirty": header.dirty, "gitProblem": header.git_problem,
            "snapshot": header.snapshot}


def changed_fields(action: Action) -> tuple[Step, ...]:
    """The steps that change a field of an existing resource (a create or destroy has none)."""
    from reconciler.core import words  # imported once a plan has something to say

    if action.kind in (Kind.CREATE, Kind.DESTROY) or words.creating(action):
        return ()
    return tuple(s for s in action.steps if s.op not in words.VOLUME_OPS)


def change_json(step: Step) -> dict[str, object]:
    from reconciler.core import words  # imported once a plan has something to say

    old, new = words.values(step)
    return {"field": words.field_name(step), "old": old, "new": new, "mode": str(step.effect),
            "note": words.note(step)}


def _json_value(value: Value) -> object:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def step_json(step: Step) -> dict[str, object]:
    """A step as data: the operation, its target, typed old and new values (bytes, seconds,
    booleans), its effect and cause."""
    target = step.target
    return {"op": str(step.op),
            "target": {"resource": str(target.resource), "name": target.name,
                       "part": str(target.part), "key": target.key},
            "old": _json_value(step.old), "new": _json_value(step.new),
            "effect": str(step.effect), "cause": str(step.cause) if step.cause else None}


def _observed(action: Action) -> dict[str, object] | None:
    """The domain's state as libvirt reported it when the plan was made."""
    live = action.live
    if not isinstance(live, LiveVM):
        return None
    return {"state": live.state, "reason": live.reason, "persistent": live.persistent,
            "managedSave": live.managed_save}


def _manifest_of(action: Action) -> str | None:
    return action.desired.source.file if action.desired else None


def _reason(action: Action) -> str:
    from reconciler.core import words

    return words.reason_text(action)


def plan_json(plan: Plan, problems: Iterable[Problem] = (), *,
              instance: str | None = None, header: Header | None = None) -> dict[str, object]:
    """The plan as ``schemas/plan.v1.json`` describes it; ``instance``: the reconciler instance
    it was made for (the header's, when a ``header`` is given)."""
    if header is not None:
        instance = header.instance
    return {
        "apiVersion": "reconciler/v1",
        "kind": "Plan",
        "version": __version__,
        **({"instance": instance} if instance is not None else {}),
        **({"header": header_json(header)} if header is not None else {}),
        "target": partial_json(plan),
        "fingerprint": plan.fingerprint,
        "observed": dict(plan.observed),
        "hasChanges": plan.has_changes,
        "summary": {"create": plan.count(Kind.CREATE), "update": plan.count(Kind.UPDATE),
                    "pendingRestart": plan.restart_count,
                    "destroy": plan.count(Kind.DESTROY), "move": plan.count(Kind.MOVE),
                    "blocked": plan.blocked_count,
                    "stillPendingRestart": len(plan.still_pending)},
        "problems": [p.as_dict() for p in problems],
        "actions": [
            {
                "name": a.name,
                "resource": str(a.resource),
                "kind": kind_of(a),
                "symbol": symbol(a),
                "text": describe(a),
                "changes": [change_json(s) for s in changed_fields(a)],
                "steps": [step_json(s) for s in a.steps],
                "restart": a.restart,
                "pendingRestart": bool(a.pending_restart),
                "reason": _reason(a),
                "why": str(a.reason.why) if a.reason else None,
                "observed": _observed(a),
                "manifest": _manifest_of(a),
            }
            for a in plan.actions
        ],
    }


def partial_json(plan: Plan) -> dict[str, object] | None:
    """A targeted run's options and what it planned (None: every object was planned)."""
    part = plan.partial
    if part is None:
        return None
    return {"targets": list(part.targets), "selector": part.selector, "text": part.text,
            "vms": list(part.vms), "networks": list(part.networks), "pools": list(part.pools),
            "totalVms": part.total}


def results_text(results: Iterable[Result]) -> str:
    """A line per result, the count, and once, apart, the VMs this run left untouched that
    still wait for a restart."""
    return "".join(f"{line.text}\n" for line in results_lines(results))


def result_text(r: Result) -> str:
    """What apply did, as it did it: ``web-01: created, started``, ``old-01: forced off after
    60s, destroyed``, ``web-02: updated, pending restart: CAUSE``; a failure with its error
    (and what was done before it), a blocked action with its reason (after what was done, when
    the read after it found it blocked: ``created, started; blocked: the domain is paused``)."""
    if r.outcome == "blocked":  # not attempted, or found blocked by the fresh read after it
        done = f"{r.done_text}; " if r.did else ""
        return f"{r.name}: {done}blocked" + (f": {r.message}" if r.message else "")
    if r.outcome == "failed":
        before = f" (done before: {r.done_text})" if r.did else ""
        return f"{r.name}: {r.kind} failed" + (f": {r.message}" if r.message else "") + before
    parts = [r.done_text] if r.did else []
    if r.outcome == "pending restart":
        parts.append("pending restart" + (f": {r.message}" if r.message else ""))
    elif r.message:
        parts.append(r.message)
    return f"{r.name}: {', '.join(parts) or 'in sync'}"


_RESULT_TONE = {"converged": Tone.DONE, "pending restart": Tone.PENDING,
                "failed": Tone.FAILED, "blocked": Tone.BLOCKED}


def results_lines(results: Iterable[Result]) -> list[Line]:
    """``results_text``'s lines (without line ends), each with its tone."""
    every = list(results)
    results = [r for r in every if not r.untouched]
    waiting = [r for r in every if r.untouched]
    lines = [Line(_RESULT_TONE[str(r.outcome)], result_text(r)) for r in results]
    failed = sum(1 for r in results if r.outcome == "failed")
    held = [r for r in results if r.outcome == "blocked"]
    suspended = sum(1 for r in held if r.why == Why.SUSPENDED)
    pending = sum(1 for r in results if r.outcome == "pending restart")
    done = len(results) - failed - len(held)
    lines.append(Line(Tone.SUMMARY,
                      f"Apply: {done} done ({pending} pending restart), {failed} failed, "
                      f"{len(held) - suspended} blocked"
                      + (f", {suspended} suspended." if suspended else ".")))
    if waiting:
        lines.append(Line(Tone.PLAIN, STILL_PENDING_TITLE))
        lines += [Line(Tone.PENDING, f"{r.name}: {r.message}") for r in waiting]
    return lines


def results_json(results: Iterable[Result]) -> list[dict[str, object]]:
    """Each result: ``outcome`` where it stands (converged, pending restart, failed, blocked);
    ``did`` what was done, in order (created, adopted, resumed, updated, resized live,
    hot-plugged, shut down, forced off, started, destroyed), with ``forcedOffAfter`` the
    shutdownTimeout in seconds that ran out (else null); ``text`` the line text output shows."""
    from reconciler.core.result import Did

    return [{"name": r.name, "kind": str(r.kind), "outcome": str(r.outcome),
             "message": r.message, "seconds": round(r.seconds, 3),
             "did": [str(d.did) for d in r.did],
             "forcedOffAfter": next((d.after for d in r.did if d.did == Did.FORCED_OFF), None),
             "text": result_text(r)} for r in results]


def github_annotations(problems: Iterable[Problem]) -> str:
    """Problems as GitHub Actions workflow commands (``::error file=F,line=L,col=C,title=T::M``),
    which show inline on the pull request's changed files. Values are escaped as the runner
    expects (``%`` ``\r`` ``\n``, and in properties also ``:`` and ``,``)."""

    def data(text: str) -> str:
        return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")

    def prop(text: str) -> str:
        return data(text).replace(":", "%3A").replace(",", "%2C")

    lines = []
    for p in problems:
        where = f"file={prop(p.file)}"
        if p.line:
            where += f",line={p.line},col={max(p.column, 1)}"
        title = prop(p.field or "manifest")
        lines.append(f"::error {where},title={title}::{data(p.message)}\n")
    return "".join(lines)


def problems_text(problems: Iterable[Problem]) -> str:
    return "".join(f"{p}\n" for p in problems)


def dumps(data: object) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"
