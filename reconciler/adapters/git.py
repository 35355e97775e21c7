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

from reconciler.core.record import Record

TIMEOUT = 10.0  # seconds; a repository on a hung network file system must not hang a plan


@dataclass(frozen=True, eq=False, repr=False)
class Revision(Record):
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
    with Asked(path) as asked:
        return asked.revision()


class Asked:
    """``revision(path)`` in two halves: git starts here and runs while the caller does other
    work (apply reads the host meanwhile: 2-3 ms of its start-up), ``revision()`` waits for its
    answer. ``close()`` (or leaving the ``with`` block) ends a git that was not waited for."""

    def __init__(self, path: Path) -> None:
        self.folder = path if path.is_dir() else path.parent
        spec = "." if path.is_dir() else path.name
        command = ["git", "--no-optional-locks", "-c", "core.fsmonitor=false", "-C",
                   str(self.folder), "status", "--porcelain=v2", "--branch",
                   "--untracked-files=normal", "--", spec]
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
        self._process: subprocess.Popen[str] | None = None
        self._answer: Revision | None = None
        try:
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL,
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                             text=True, env=env)
        except FileNotFoundError:
            self._answer = Revision(problem="git is not installed: no commit is recorded; "
                                            "install git")
        except OSError as exc:
            self._answer = Revision(problem=f"git cannot run: {exc.strerror or exc}")

    def revision(self) -> Revision:
        """git's answer (see ``revision``), waited for at most ``TIMEOUT`` seconds."""
        if self._answer is None:
            self._answer = self._wait()
        return self._answer

    def _wait(self) -> Revision:
        if self._process is None:  # (it did not start: the answer says why)
            return Revision(problem="git did not run: no commit is recorded")
        try:
            out, err = self._process.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.close()
            return Revision(problem=f"git did not answer within {TIMEOUT:.0f} s for "
                                    f"{self.folder}: no commit is recorded")
        return _parse(self.folder, self._process.returncode, out, err)

    def close(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            self._process.communicate()

    def __enter__(self) -> Asked:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _parse(folder: Path, code: int, out: str, err: str) -> Revision:
    if code != 0:
        return Revision(problem=_problem(folder, err))
    oid = next((line.split()[2] for line in out.splitlines()
                if line.startswith("# branch.oid ")), "")
    if len(oid) != 40:  # "(initial)": a repository with no commit yet
        return Revision(problem=f"the git repository at {folder} has no commit yet")
    dirty = any(line and not line.startswith("#") for line in out.splitlines())
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

