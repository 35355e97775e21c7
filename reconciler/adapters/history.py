"""The revisions applied to each object, for `reconciler status NAME`: one file per instance,
``<state dir>/history/<instance>.json``, ``{name: [entry, ...]}`` with the last ``KEEP``
entries of each object, newest last. An entry: ``{"time": ISO time, "commit": 40 hex or null,
"dirty": bool, "spec": the manifest's spec digest or null, "action": create | update | destroy,
"result": converged | pending restart | failed | blocked, "did": what was done, as results say
it ("created, started"; empty in entries written before it was recorded), "message": text}``.
Written by the instance's one writer (`apply`, `run`) after each run that carried out actions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from reconciler.adapters import files, state
from reconciler.core.status import iso_time

FOLDER = "history"
KEEP = 10  # entries per object


def path(state_dir: Path, instance: str) -> Path:
    return state.instance_file(state_dir, FOLDER, instance)


def read(state_dir: Path, instance: str) -> dict[str, list[dict[str, Any]]]:
    """Every object's entries; empty when there are none yet. A file that is not one the tool
    wrote reads as empty (the history is a convenience: it never stops a run)."""
    target = path(state_dir, instance)
    try:
        data = json.loads(files.read_manifest(target, limit=16 << 20))
    except (files.Unreadable, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {str(k): [e for e in v if isinstance(e, dict)] for k, v in data.items()
            if isinstance(v, list)}


def append(state_dir: Path, instance: str, entries: Iterable[tuple[str, dict[str, Any]]],
           ) -> None:
    """Add (object name, entry) pairs (``time`` is set when missing), keeping the last
    ``KEEP`` of each object."""
    entries = list(entries)
    if not entries:
        return
    now = iso_time(time.time())
    data = read(state_dir, instance)
    for name, entry in entries:
        data.setdefault(name, []).append({"time": now, **entry})
        data[name] = data[name][-KEEP:]
    state.write_json(path(state_dir, instance), data)
