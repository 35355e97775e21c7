"""The state `reconciler status` reads: each managed object's sync status, and the exit status
that sums it up. Pure."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.core.plan import Kind, Plan, Why
from reconciler.core.record import Record
from reconciler.core.result import Outcome, Result
from reconciler.core.validate.result import Validated
from reconciler.core.words import SUSPENDED, reason_text


@dataclass(frozen=True, eq=False, repr=False)
class VMStatus(Record):
    name: str  # VMs bare, networks and pools prefixed (network/lab), as plans show them
    status: str  # in sync | pending | pending restart | failed | blocked | conflict | suspended
    detail: str = ""
    manifest: str | None = None
    last_error: str | None = None
    next_retry: str | None = None  # ISO 8601, UTC


def vm_statuses(plan: Plan, results: Iterable[Result], in_sync: Iterable[str],
                waiting: Mapping[str, tuple[str, float | None]] = {},
                suspended: Iterable[str] = ()) -> list[VMStatus]:
    """Each managed or declared object's status after a run (VMs, networks, pools, named as
    plans name them). ``in_sync``: the objects the plan has nothing for (see ``in_sync``).
    ``waiting``: name -> (last error, wall-clock time of the next retry; None: a permanent
    error, retried once the manifest or the object changes) for objects held back.
    ``suspended``: VMs whose manifest has reconciler/suspend: "true" (suspended whether or not
    they differ, unless a conflict or a refusal says more). An action the run was stopped
    before starting (``Result.interrupted``) is pending, not failed. Pure."""
    by_name = {r.name: r for r in results}
    out = {name: VMStatus(name, "in sync") for name in in_sync}
    for action in plan.actions:
        manifest = action.desired.source.file if action.desired else None
        result = by_name.get(action.label)
        if result is not None and result.interrupted:  # the next run does it (or finishes it)
            detail = INTERRUPTED if "not started" in result.message else result.message
            out[action.label] = VMStatus(action.label, "pending", detail, manifest)
        elif action.label in waiting:
            error, retry_at = waiting[action.label]
            if retry_at is None:
                out[action.label] = VMStatus(
                    action.label, "failed", "not retried until its manifest or domain changes",
                    manifest, error)
            else:
                out[action.label] = VMStatus(action.label, "failed", "waiting to retry",
                                            manifest, error, iso_time(retry_at))
        elif action.reason is not None and action.reason.why == Why.PENDING_DESTROY:
            out[action.label] = VMStatus(action.label, "pending destroy", reason_text(action),
                                        manifest)
        elif action.reason is not None and action.reason.why == Why.ORPHANED:
            out[action.label] = VMStatus(action.label, "orphaned", reason_text(action), manifest)
        elif action.reason is not None and action.reason.why == Why.ARRIVING:
            # many hosts: another host moves it here; work pending, nothing failed here
            out[action.label] = VMStatus(action.label, "pending", reason_text(action), manifest)
        elif action.conflict:
            out[action.label] = VMStatus(action.label, "conflict", reason_text(action), manifest)
        elif action.suspended:
            out[action.label] = VMStatus(action.label, "suspended", reason_text(action), manifest)
        elif result is None:
            out[action.label] = VMStatus(action.label, "pending", "not applied yet", manifest)
        elif result.outcome == Outcome.FAILED:
            out[action.label] = VMStatus(action.label, "failed", str(action.kind), manifest,
                                        result.message)
        elif result.outcome == Outcome.BLOCKED:
            out[action.label] = VMStatus(action.label, "blocked", result.message, manifest)
        elif result.outcome == Outcome.PENDING_RESTART:
            out[action.label] = VMStatus(action.label, "pending restart", result.message,
                                        manifest)
        elif action.kind == Kind.DESTROY:
            out.pop(action.label, None)
        else:
            out[action.label] = VMStatus(action.label, "in sync", "", manifest)
    for name in suspended:
        now = out.get(name)
        if now is None or now.status not in ("conflict", "blocked", "suspended"):
            out[name] = VMStatus(name, "suspended", SUSPENDED, now.manifest if now else None)
    return sorted(out.values(), key=lambda s: s.name)


NOT_PLANNED = "not planned by the last apply (a targeted run); its status is from before"
UNKNOWN = "not planned yet (the last apply was a targeted run)"


def partial_statuses(statuses: Iterable[VMStatus], plan: Plan, inputs: Validated,
                     previous: Iterable[Mapping[str, Any]]) -> list[VMStatus]:
    """After a targeted apply (``plan.partial``): the statuses of what it planned, and for
    every other declared or earlier listed object its entry from before (``previous``: the
    state file's ``vms``), else "pending", never "in sync" on no evidence. Pure."""
    part = plan.partial
    if part is None:
        return list(statuses)
    planned = {*part.vms, *(f"network/{n}" for n in part.networks),
               *(f"pool/{p}" for p in part.pools)}
    out = {s.name: s for s in statuses if s.name in planned}
    for entry in previous:
        name = entry.get("name")
        if isinstance(name, str) and name not in planned:
            detail = str(entry.get("detail") or "")
            out[name] = VMStatus(name, str(entry.get("status", "pending")),
                                 f"{detail}; {NOT_PLANNED}" if detail else NOT_PLANNED,
                                 entry.get("manifest"), entry.get("last_error"),
                                 entry.get("next_retry"))
    for name in in_sync(inputs, Plan((), "")):  # every declared object
        if name not in out:
            out[name] = VMStatus(name, "pending", UNKNOWN)
    return sorted(out.values(), key=lambda s: s.name)


def in_sync(inputs: Validated, plan: Plan) -> list[str]:
    """The declared VMs, networks and pools the plan has nothing for, as plans name them
    (``web-01``, ``network/lab``, ``pool/fast``). Pure."""
    acted = {a.label for a in plan.actions}
    names = [*(d.spec.name for d in inputs.vms), *(f"network/{n.spec.name}" for n in
                                                    inputs.networks),
             *(f"pool/{p.spec.name}" for p in inputs.pools)]
    return [name for name in names if name not in acted]


# `reconciler status` exits with (README "Status"): 0 everything in sync (or suspended on
# purpose); 1 anything failed, blocked or in conflict, invalid manifests, libvirt unreachable
# at the last reconcile, or no state at all; 2 nothing of that, but work still pending
# (pending, pending restart, pending destroy, interrupted).
EXIT_IN_SYNC, EXIT_PROBLEM, EXIT_PENDING = 0, 1, 2
PROBLEMS = frozenset({"failed", "blocked", "conflict"})
SETTLED = frozenset({"in sync", "suspended", "orphaned"})  # orphaned: prune off, on purpose
INTERRUPTED = "interrupted before it started (the run was stopped); the next run does it"


def exit_code(document: Mapping[str, Any] | None) -> int:
    """The exit status of `reconciler status` for a state document (None: there is none).
    Pure."""
    if document is None:
        return EXIT_PROBLEM
    writer = document.get("daemon") or {}
    objects = [v for v in document.get("vms", []) if isinstance(v, Mapping)]
    if (writer.get("problems") or writer.get("connected") is False
            or any(v.get("status") in PROBLEMS for v in objects)):
        return EXIT_PROBLEM
    if any(v.get("status") not in SETTLED for v in objects):
        return EXIT_PENDING
    return EXIT_IN_SYNC


def iso_time(when: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when))


def table(document: Mapping[str, Any]) -> str:
    """The state as the `status` command prints it."""
    rows = [("NAME", "STATUS", "DETAIL")]
    for vm in document.get("vms", []):
        detail = vm.get("detail") or ""
        if vm.get("last_error"):
            detail = f"{detail}: {vm['last_error']}" if detail else vm["last_error"]
        if vm.get("next_retry"):
            detail += f" (next retry {vm['next_retry']})"
        rows.append((vm["name"], vm["status"], detail))
    width = [max(len(r[i]) for r in rows) for i in range(2)]
    lines = [f"{n:<{width[0]}}  {s:<{width[1]}}  {d}".rstrip() for n, s, d in rows]
    daemon = document.get("daemon", {})
    summary = f"Instance {document.get('instance', '?')}: updated {document.get('updated', '?')}"
    if daemon.get("command"):
        summary += f" by {daemon['command']}"
    if daemon.get("problems"):
        summary += f"; {daemon['problems']} manifest problem(s)"
    if daemon.get("connected") is False:
        summary += "; libvirt unreachable"
    if daemon.get("commit"):
        summary += f"; manifests at {str(daemon['commit'])[:12]}"
        summary += " (dirty)" if daemon.get("dirty") else ""
    elif daemon.get("git_problem"):
        summary += f"; warning: {daemon['git_problem']}"
    paused = daemon.get("suspended")
    if isinstance(paused, Mapping):
        summary += (f"; changes suspended since {paused.get('since')} by {paused.get('by')} "
                    "(reconciler resume)")
    return "\n".join([*lines, summary]) + "\n"
