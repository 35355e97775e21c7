"""The state file that `reconciler status` reads, written atomically to the state directory."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reconciler.adapters import atomic
from reconciler.core.status import VMStatus, iso_time

STATE_FILE = "status.json"


def write(state_dir: Path, statuses: Iterable[VMStatus], **daemon: object) -> None:
    """Replace the state file atomically (write a temporary file, fsync, rename)."""
    document = {
        "updated": iso_time(time.time()),
        "daemon": daemon,
        "vms": [asdict(s) for s in statuses],
    }
    state_dir.mkdir(parents=True, exist_ok=True)
    atomic.write(state_dir / STATE_FILE, json.dumps(document, indent=2).encode(), sync=True)


def read(state_dir: Path) -> dict[str, Any] | None:
    try:
        document: dict[str, Any] = json.loads((state_dir / STATE_FILE).read_text())
        return document
    except FileNotFoundError:
        return None

