"""The daemon's pause (`reconciler suspend` / `resume`): a file per instance,
``<state dir>/suspended/<instance>.json`` (``{"since": ISO time, "by": user, "reason": text}``),
so the pause survives restarts of the daemon and of the host. While it exists the daemon keeps
observing and reporting, and applies nothing."""

from __future__ import annotations

import getpass
import json
import time
from pathlib import Path
from typing import Any

from reconciler.adapters import files, state
from reconciler.core.status import iso_time

FOLDER = "suspended"


def path(state_dir: Path, instance: str) -> Path:
    return state.instance_file(state_dir, FOLDER, instance)


def read(state_dir: Path, instance: str) -> dict[str, Any] | None:
    """The pause (since, by, reason), or None when the instance is not suspended. A pause file
    the tool did not write still pauses (it is there on purpose), with what could be read."""
    target = path(state_dir, instance)
    if not target.exists() and not target.is_symlink():
        return None
    try:
        data = json.loads(files.read_manifest(target, limit=64 << 10))
    except (files.Unreadable, ValueError):
        return {"since": None, "by": None, "reason": "(the pause file is unreadable)"}
    return data if isinstance(data, dict) else {"since": None, "by": None, "reason": None}


def suspend(state_dir: Path, instance: str, reason: str = "") -> dict[str, Any]:
    """Pause the instance's daemon (kept if already paused: the first pause's time stays)."""
    current = read(state_dir, instance)
    if current is not None:
        return current
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    record = {"since": iso_time(time.time()), "by": user, "reason": reason}
    state.write_json(path(state_dir, instance), record, indent=None)
    return record


def resume(state_dir: Path, instance: str) -> bool:
    """Lift the pause; False when there was none."""
    target = path(state_dir, instance)
    try:
        target.unlink()
    except FileNotFoundError:
        return False
    return True
