"""Approved destroys (`reconciler approve NAME`, for ``prune: confirm``): one file per instance,
``<state dir>/approvals/<instance>.json``, a JSON list of ``{"name": label, "uuid": domain
UUID ("" for a network or pool), "approved": ISO time}``, written atomically. The plan reads it
(``Guards.approved``); an approval holds for the domain it was given for (its UUID), so a later
domain of the same name is never destroyed on an old approval."""

from __future__ import annotations

import time
from pathlib import Path

from reconciler.adapters import state
from reconciler.core.errors import PermanentError
from reconciler.core.status import iso_time

FOLDER = "approvals"


def path(state_dir: Path, instance: str) -> Path:
    return state.instance_file(state_dir, FOLDER, instance)


def read(state_dir: Path, instance: str) -> frozenset[tuple[str, str]]:
    """The approved (label, UUID) pairs; none when there is no file. Raises PermanentError for
    a file the tool did not write (not a regular file, not the JSON list it writes)."""
    return frozenset((e["name"], e["uuid"]) for e in _entries(state_dir, instance))


def _entries(state_dir: Path, instance: str) -> list[dict[str, str]]:
    target = path(state_dir, instance)
    entries = state.read_json(target, "the approvals", "an approvals file")
    if entries is None:
        return []
    if not isinstance(entries, list) or not all(
            isinstance(e, dict) and all(isinstance(e.get(k, ""), str)
                                        for k in ("name", "uuid", "approved"))
            and "name" in e for e in entries):
        raise PermanentError(f"{target}: not an approvals file; remove it")
    return [{"name": e["name"], "uuid": e.get("uuid", ""), "approved": e.get("approved", "")}
            for e in entries]


def _write(state_dir: Path, instance: str, entries: list[dict[str, str]]) -> None:
    state.write_json(path(state_dir, instance), entries)


def approve(state_dir: Path, instance: str, label: str, uuid: str) -> None:
    """Record that ``label`` (that domain: ``uuid``) may be destroyed."""
    kept = [e for e in _entries(state_dir, instance) if e["name"] != label]
    _write(state_dir, instance,
           [*kept, {"name": label, "uuid": uuid, "approved": iso_time(time.time())}])


def forget(state_dir: Path, instance: str, labels: set[str]) -> None:
    """Drop the approvals of ``labels`` (done: destroyed; or no longer pending)."""
    entries = _entries(state_dir, instance)
    if any(e["name"] in labels for e in entries):
        _write(state_dir, instance, [e for e in entries if e["name"] not in labels])
