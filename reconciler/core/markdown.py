"""The plan as a pull-request comment (GitHub- and GitLab-flavoured markdown). Pure.

The comment starts with a hidden marker (``MARKER`` and the instance and host), so that a CI
job finds its own earlier comment and edits it instead of adding one per push."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core import words
from reconciler.core.errors import Problem
from reconciler.core.plan import Action, Header, Kind, Plan
from reconciler.core.render import (
    change_json,
    changed_fields,
    describe,
    no_changes_text,
    partial_text,
    summary_text,
    symbol,
)

MARKER = "<!-- reconciler-plan"


def _cell(text: str) -> str:
    """Text safe inside a table cell: one line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text.replace('`', '')}`"


def _change(action: Action) -> str:
    """An update's changes, each tagged with how it is made (live, restart, config, refused,
    pending); a create's, destroy's or blocked action's description."""
    fields = changed_fields(action)
    if action.kind != Kind.UPDATE or not fields or action.blocked:
        text = describe(action)
        return f"**{text}**" if action.blocked or action.kind == Kind.DESTROY else text
    parts = []
    for step in fields:
        change = change_json(step)
        old, new = change["old"], change["new"]
        value = f"{old} → {new}" if old is not None and new is not None else (new or old or "")
        tail = f" ({change['note']})" if change["note"] else ""
        parts.append(f"{change['field']} {value} `{change['mode']}`{tail}")
    if action.restart:
        parts.append("**restarts the VM**")
    return "; ".join(parts)


def plan_markdown(plan: Plan, problems: Iterable[Problem] = (),
                  header: Header | None = None) -> str:
    """The comment: the marker, a title with the summary, the header table (host, instance,
    commit, snapshot time), a counts table, a warning naming every destroy and deleted
    volume, a table of the actions, and the manifest problems."""
    problems = list(problems)
    title_host = f" for `{header.host or header.uri}`" if header else ""
    lines = [f"{MARKER} instance={header.instance if header else ''} "
             f"host={header.host if header else ''} -->",
             f"### reconciler plan{title_host}", ""]
    if header is not None:
        commit = (_code(header.commit[:12]) + (" (dirty)" if header.dirty else "")
                  if header.commit else f"⚠️ {_cell(header.git_problem or 'no commit')}")
        lines += ["| Host | Instance | Commit | Snapshot taken |", "| --- | --- | --- | --- |",
                  f"| {_cell(header.host or '-')} ({_code(header.uri)}) | "
                  f"{_code(header.instance)} | {commit} | {header.snapshot or 'live read'} |",
                  ""]
    if plan.partial is not None:
        lines += ["> [!NOTE]", f"> **{_cell(partial_text(plan))}**", ""]
    if not plan.actions:
        lines.append("**No changes.** The live state matches the manifests." if plan.partial
                     is None else f"**{_cell(no_changes_text(plan))}**")
    else:
        lines += ["| Create | Update | Destroy | Blocked |", "| ---: | ---: | ---: | ---: |",
                  f"| {plan.count(Kind.CREATE)} | {plan.count(Kind.UPDATE)}"
                  + (f" ({plan.restart_count} pending restart)" if plan.restart_count else "")
                  + " | "
                  f"{plan.count(Kind.DESTROY)} | {plan.blocked_count} |", ""]
        destroys = [a for a in plan.actions if a.kind == Kind.DESTROY and a.writes]
        if destroys:
            lines += ["> [!WARNING]",
                      f"> **This plan destroys {len(destroys)} "
                      f"{'resource' if len(destroys) == 1 else 'resources'}:** "
                      + ", ".join(f"{_code(a.label)} ({_cell(words.reason_text(a))})"
                                  for a in destroys),
                      ""]
        lines += ["| | Resource | Change |", "| --- | --- | --- |"]
        lines += [f"| {_code(symbol(a))} | {_code(a.label)} | {_cell(_change(a))} |"
                  for a in plan.actions]
        lines += ["", summary_text(plan)]
    if problems:
        lines += ["", "#### Problems in the manifests", ""]
        lines += [f"- {_code(f'{p.file}:{p.line}:{p.column}')}: {_cell(p.message)}"
                  for p in problems]
    return "\n".join(lines) + "\n"
