"""The git commit of the manifest directory, recorded in each managed domain's metadata."""

from __future__ import annotations

import subprocess
from pathlib import Path


def head_commit(path: Path) -> str | None:
    """HEAD of the work tree holding ``path``, or None when it is not in one."""
    folder = path if path.is_dir() else path.parent
    try:
        out = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"],
                             capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and len(commit) == 40 else None
