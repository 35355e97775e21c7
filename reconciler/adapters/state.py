"""The state file that `reconciler status` reads: one per instance, ``<state dir>/status/
<instance>.json``, written atomically by the instance's one writer (`run` or `apply`, under
its lock), so instances that share a state directory never overwrite each other's."""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconciler.adapters import atomic, files
from reconciler.core import instance as instance_name
from reconciler.core.errors import PermanentError
from reconciler.core.status import VMStatus, iso_time

FOLDER = "status"
MAX_BYTES = 64 << 20  # a state file larger than this is not one the tool wrote


def instance_file(state_dir: Path, folder: str, instance: str) -> Path:
    """``<state dir>/<folder>/<instance>.json``: where an instance keeps a file of its own in
    the state directory (its state, approvals, pause, history). Raises PermanentError for a
    name that is no safe file name (``core.instance``)."""
    problem = instance_name.problem(instance)
    if problem:
        raise PermanentError(problem)
    return state_dir / folder / f"{instance}.json"


def write_json(target: Path, data: object, *, indent: int | None = 1,
               sort_keys: bool = False) -> None:
    """``data`` as JSON in an instance's file (``instance_file``), written atomically (a
    temporary file, fsync, rename), its folder made first."""
    target.parent.mkdir(parents=True, exist_ok=True)
    atomic.write(target, json.dumps(data, indent=indent, sort_keys=sort_keys).encode(),
                 sync=True)


def read_json(target: Path, what: str, kind: str, *, limit: int = 1 << 20) -> object:
    """The JSON in an instance's file, or None when there is no file. Raises PermanentError
    for a file the tool did not write (not a regular file, more than ``limit`` bytes, not
    JSON): "cannot read ``what``", "not ``kind``; remove it". The caller checks its shape."""
    if not target.exists():
        return None
    try:
        return json.loads(files.read_manifest(target, limit=limit))
    except files.Unreadable as exc:
        raise PermanentError(f"{target}: cannot read {what}: {exc}") from exc
    except ValueError as exc:
        raise PermanentError(f"{target}: not {kind} ({exc}); remove it") from exc


def path(state_dir: Path, instance: str) -> Path:
    """Where ``instance``'s state file is (see ``instance_file``)."""
    return instance_file(state_dir, FOLDER, instance)


def write(state_dir: Path, statuses: Iterable[VMStatus], *, instance: str,
          **writer: object) -> None:
    """Replace ``instance``'s state file atomically (a temporary file, fsync, rename).
    ``writer``: about the run that writes it (``command``: run or apply, ``connected``, ...)."""
    target = path(state_dir, instance)
    document = {
        "instance": instance,
        "updated": iso_time(time.time()),
        "daemon": writer,
        "vms": [asdict(s) for s in statuses],
    }
    write_json(target, document, indent=2)


def read(state_dir: Path, instance: str) -> dict[str, Any] | None:
    """``instance``'s state as last written, or None when there is none. Raises PermanentError
    when the file is not one the tool wrote (not a regular file, not JSON)."""
    target = path(state_dir, instance)
    try:
        fd = os.open(target, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise PermanentError(f"cannot read the state file {target}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as file:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_BYTES:
            raise PermanentError(f"{target} is not a state file reconciler wrote")
        data = file.read(MAX_BYTES + 1)
    try:
        document = json.loads(data)
    except ValueError as exc:
        raise PermanentError(f"{target} is not a state file reconciler wrote: {exc}") from exc
    if not isinstance(document, dict) or not isinstance(document.get("vms"), list):
        raise PermanentError(f"{target} is not a state file reconciler wrote")
    return document
