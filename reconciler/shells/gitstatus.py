"""`reconciler status` in pull mode: the instance's state with its pull state (``shells.pull``)
below it: the repository, the commit in force, the latest fetched commit and why it is not
applied, the last fetch and its error."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click

from reconciler.adapters import checkouts
from reconciler.core import render, status


def show(document: dict[str, Any], *, state_dir: Path, instance: str, fmt: str) -> int:
    """Print ``document`` (the instance's state) as `reconciler status` does, with the pull
    state when the instance has one (JSON: under ``git``), and return the exit status: as
    ``core.status.exit_code``, but 1 (a problem) while the latest fetched commit is rejected,
    the last fetch failed or no commit is in force, and 2 (pending) while the last reconcile
    read another commit than the one in force (the statuses are not about it yet). Raises
    ``ReconcilerError`` when the pull state file is not one the tool wrote."""
    pulled = checkouts.read_state(state_dir, instance)
    code = status.exit_code(document)
    if pulled is None:
        click.echo(render.dumps(document) if fmt == "json" else status.table(document), nl=False)
        return code
    reconciled = (document.get("daemon") or {}).get("commit")
    if fmt == "json":
        click.echo(render.dumps({**document, "git": pulled}), nl=False)
    else:
        click.echo(status.table(document) + text(pulled, reconciled), nl=False)
    if problem(pulled) or code == status.EXIT_PROBLEM:
        return status.EXIT_PROBLEM
    return status.EXIT_PENDING if reconciled != pulled["good"].get("commit") else code


def problem(pulled: Mapping[str, Any]) -> bool:
    """The latest fetched commit is rejected, the last fetch failed, or none is in force."""
    latest = pulled.get("latest") or {}
    fetch = pulled.get("fetch") or {}
    return bool(latest.get("problems")) or bool(fetch.get("error")) or not pulled.get("good")


def _commit(entry: Mapping[str, Any]) -> str:
    subject = f"  {entry['subject']}" if entry.get("subject") else ""
    return f"{str(entry.get('commit'))[:12]}{subject}"


def text(pulled: Mapping[str, Any], reconciled: str | None = None) -> str:
    """The pull state as lines under the status table; ``reconciled``: the commit the last
    reconcile read."""
    path = pulled.get("path") or "."
    lines = [f"Git:       {pulled.get('url')} branch {pulled.get('branch')}"
             + ("" if path == "." else f", folder {path}")
             + f", fetched every {pulled.get('interval')} s"]
    good = pulled.get("good")
    latest = pulled.get("latest") or {}
    if good:
        lines.append(f"In force:  {_commit(good)} (since {good.get('since')})")
        if reconciled != good.get("commit"):
            lines.append(f"           not reconciled yet: the last reconcile read "
                         f"{str(reconciled)[:12] if reconciled else 'no commit'}")
    else:
        lines.append("In force:  none: nothing is reconciled until a commit passes validation")
    problems = latest.get("problems") or []
    if latest and (not good or latest.get("commit") != good.get("commit")):
        verdict = (f"rejected, {len(problems)} problem(s); not applied"
                   + (": the commit in force stays" if good else "")) if problems else "valid"
        fetched = f"fetched {latest['fetched']}, " if latest.get("fetched") else ""
        lines.append(f"Latest:    {_commit(latest)} ({fetched}{verdict})")
        lines += [f"  {p}" for p in problems]
    elif latest:
        lines.append("Latest:    the commit in force")
    fetch = pulled.get("fetch") or {}
    if fetch.get("error"):
        ok = fetch.get("last_ok")
        lines.append(f"Fetch:     failed at {fetch.get('last')}: {fetch['error']}"
                     + (f" (last success {ok})" if ok else ""))
    elif fetch.get("last"):
        lines.append(f"Fetch:     ok at {fetch['last']}")
    else:
        lines.append("Fetch:     not yet")
    return "\n".join(lines) + "\n"
