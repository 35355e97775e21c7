"""The git revision of the manifest directory: the commit recorded in each changed domain's
metadata and shown with plans and in status, whether the work tree differs from it, and why
there is none when git cannot say. The git CLI, one call (``git status --porcelain=v2
--branch``), about 3 ms: a library such as dulwich costs 35-100 ms to import, a third of a
cached plan."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TIMEOUT = 10.0  # seconds; a repository on a hung network file system must not hang a plan


@dataclass(frozen=True)
class Revision:
    """``commit``: HEAD's id (40 hex digits), None when there is none; ``dirty``: the manifest
    files differ from it (changed, added, deleted or untracked files below the manifest path);
    ``problem``: why there is no commit (one line, with what to do), None when there is one."""

    commit: str | None = None
    dirty: bool = False
    problem: str | None = None

    @property
    def short(self) -> str:
        """``1a2b3c4d5e6f``, ``1a2b3c4d5e6f (dirty)``, or ``no commit``."""
        if not self.commit:
            return "no commit"
        return self.commit[:12] + (" (dirty)" if self.dirty else "")


def revision(path: Path) -> Revision:
    """The revision of the work tree holding ``path`` (a folder or a file). Never raises: a
    path git cannot read gives a ``Revision`` with its ``problem`` (not a repository, dubious
    ownership, git missing, no commit yet, a timeout).

    git runs with optional locks off (it never writes the index of a checkout that a deploy
    job may be updating) and without the file-system monitor hook."""
    folder = path if path.is_dir() else path.parent
    spec = "." if path.is_dir() else path.name
    command = ["git", "--no-optional-locks", "-c", "core.fsmonitor=false", "-C", str(folder),
               "status", "--porcelain=v2", "--branch", "--untracked-files=normal", "--", spec]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT,
                             env=env, check=False)
    except FileNotFoundError:
        return Revision(problem="git is not installed: no commit is recorded; install git")
    except subprocess.TimeoutExpired:
        return Revision(problem=f"git did not answer within {TIMEOUT:.0f} s for {folder}: no "
                                "commit is recorded")
    except OSError as exc:
        return Revision(problem=f"git cannot run: {exc.strerror or exc}")
    if out.returncode != 0:
        return Revision(problem=_problem(folder, out.stderr))
    oid = next((line.split()[2] for line in out.stdout.splitlines()
                if line.startswith("# branch.oid ")), "")
    if len(oid) != 40:  # "(initial)": a repository with no commit yet
        return Revision(problem=f"the git repository at {folder} has no commit yet")
    dirty = any(line and not line.startswith("#") for line in out.stdout.splitlines())
    return Revision(commit=oid, dirty=dirty)


def _problem(folder: Path, stderr: str) -> str:
    if "dubious ownership" in stderr:
        return (f"git refuses to read {folder}: the repository belongs to another user "
                "(dubious ownership), so no commit is recorded; as the user reconciler runs "
                f"as, trust it: git config --global --add safe.directory {folder}")
    if "not a git repository" in stderr:
        return f"{folder} is not in a git repository: no commit is recorded"
    first = next((line.strip() for line in stderr.splitlines() if line.strip()), "")
    return f"git cannot read {folder}: {first or 'it failed'}; no commit is recorded"

