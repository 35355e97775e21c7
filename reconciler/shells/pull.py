"""Pull mode (`reconciler run --git URL`): a thread of its own fetches the branch every
``--git-interval`` seconds and on SIGHUP, exports each new commit into a directory of its own,
validates it with the loader and only then makes it the commit in force (``adapters.gitsync``,
``adapters.checkouts``). A commit with problems is not switched to: the commit in force stays,
and the pull state (``<state dir>/git/<instance>.json``, shown by `reconciler status`) holds
both commits and the problems. A fetch that hangs is killed at its timeout and never holds up
the reconcile loop or SIGTERM.

The loop reads the checkout in force as it was when its cycle began (``pin``): a switch in the
middle of a reconcile changes nothing under it, and the commit it records in the domains it
changes is the one it read. Checkouts are pruned to the one in force, the previous good one
and the one the loop reads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import structlog

from reconciler import pipeline
from reconciler.adapters import checkouts, gitsync, manifests
from reconciler.adapters.gitsync import GitError, Remote
from reconciler.core.errors import PermanentError, Problem, ReconcilerError
from reconciler.core.record import Record
from reconciler.core.status import iso_time

__all__ = ["Local", "NotYet", "Puller", "Remote", "manifest_path", "of"]

log = structlog.get_logger("reconciler.pull")
JOIN_TIMEOUT = 2.0  # seconds the daemon waits for the pull thread at exit (git is killed)


class NotYet(ReconcilerError):
    """No commit is in force yet: the first fetch has not succeeded, or every commit fetched
    so far was rejected. The daemon reconciles nothing meanwhile."""


@dataclass(frozen=True, eq=False, repr=False)
class Commit(Record):
    sha: str
    checkout: str  # its directory in the checkouts
    subject: str
    time: str  # committed (ISO 8601)
    since: str  # in force (or fetched) since (ISO 8601, UTC)

    def as_dict(self) -> dict[str, str]:
        return {"commit": self.sha, "checkout": self.checkout, "subject": self.subject,
                "time": self.time, "since": self.since}


def manifest_path(path: Path | None, remote: Remote | None, state_dir: Path,
                  instance: str) -> Path | None:
    """The daemon's PATH: ``path`` as given, or in pull mode the manifest folder of the
    checkout in force (``<state dir>/git/<instance>/current/<git-path>``). Raises
    PermanentError when both or an invalid remote are given."""
    if remote is None:
        return path
    if path is not None:
        raise PermanentError(f"PATH ({path}) and --git exclude each other: in pull mode the "
                             "manifests are the repository's --git-path")
    gitsync.check(remote)
    return checkouts.Layout(state_dir.absolute(), instance).current / remote.path


class Local:
    """Not pull mode: PATH is read as it is (its commit is asked of git when needed)."""

    commit: str | None = None

    def __init__(self, state_dir: Path, instance: str) -> None:
        self.state_dir = state_dir
        self.instance = instance

    def start(self) -> None:
        """A pull state left by an earlier run in pull mode would be shown as current: gone."""
        try:
            checkouts.forget(self.state_dir, self.instance)
        except OSError as exc:
            log.warning("cannot remove the old pull state", error=str(exc))

    def stop(self) -> None:
        pass

    def fetch_now(self) -> None:
        pass

    def pin(self, source: pipeline.Source) -> pipeline.Source:
        return source


def of(remote: Remote | None, *, state_dir: Path, instance: str,
       roots: Callable[[], Sequence[str]], wake: Callable[[], None]) -> Local | Puller:
    """The daemon's manifests: ``Local`` without a remote, else a ``Puller``."""
    if remote is None:
        return Local(state_dir, instance)
    return Puller(remote, state_dir=state_dir, instance=instance, roots=roots, wake=wake)


class Puller:
    """The pull thread. ``roots()``: the storage roots commits are validated with (the
    daemon's, as the config says now); ``wake()``: called after each switch (any thread)."""

    def __init__(self, remote: Remote, *, state_dir: Path, instance: str,
                 roots: Callable[[], Sequence[str]], wake: Callable[[], None],
                 environ: dict[str, str] | None = None) -> None:
        self.remote = remote
        self.roots = roots
        self.wake = wake
        self.layout = checkouts.Layout(state_dir.absolute(), instance)
        self.git = gitsync.Git(self.layout.repo,
                               gitsync.access(remote, os.environ if environ is None else environ))
        self._lock = threading.Lock()  # guards the commits below (the loop pins one)
        self._good: Commit | None = None  # in force
        self._previous: Commit | None = None  # in force before it
        self._pinned: Commit | None = None  # the one the loop reads
        self._latest: dict[str, Any] | None = None  # the last fetched commit, as judged
        self._judged: tuple[str, tuple[str, ...]] | None = None  # rejected: (commit, roots)
        self._fetch: dict[str, Any] = {"last": None, "ok": None, "error": None,
                                       "last_ok": None}
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="git pull", daemon=True)

    # --- the daemon's side (any thread) -------------------------------------------------------

    @property
    def commit(self) -> str | None:
        """The commit the loop read at the start of its cycle (``pin``)."""
        pinned = self._pinned
        return pinned.sha if pinned else None

    def start(self) -> None:
        log.info("pull mode", url=redacted(self.remote), branch=self.remote.branch,
                 path=self.remote.path, interval=self.remote.interval)
        self._thread.start()

    def stop(self) -> None:
        """End the thread: a git command running now is killed."""
        self._stop.set()
        self._kick.set()
        self.git.kill()
        if self._thread.is_alive():
            self._thread.join(JOIN_TIMEOUT)

    def fetch_now(self) -> None:
        """Fetch at once (SIGHUP); the config read meanwhile may change the storage roots, so a
        rejected commit is judged again."""
        self._judged = None
        self._kick.set()

    def pin(self, source: pipeline.Source) -> pipeline.Source:
        """``source`` reading the checkout in force, which stays on disk until the next pin.
        Raises NotYet when none is in force."""
        with self._lock:
            good = self._good
            if good is None:
                raise NotYet(self._why_none())
            self._pinned = good
        return replace(source, path=self.layout.checkouts / good.checkout / self.remote.path)

    def _why_none(self) -> str:
        where = f"{redacted(self.remote)} (branch {self.remote.branch})"
        latest, fetch = self._latest, self._fetch
        if latest and latest.get("problems"):
            return (f"no commit in force: commit {latest['commit'][:12]} of {where} was "
                    f"rejected ({len(latest['problems'])} problem(s), see reconciler status)")
        if fetch.get("error"):
            return f"no commit in force: fetching {where} failed: {fetch['error']}"
        return f"no commit in force yet: waiting for the first fetch of {where}"

    # --- the thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._adopt()
        except Exception:  # a bug: the fetches still go on
            log.exception("the commit in force before the start could not be taken up")
        self._save()
        while not self._stop.is_set():
            try:
                self._sync()
            except Exception:
                log.exception("pull failed; trying again at the next interval")
            self._kick.wait(self.remote.interval)
            self._kick.clear()

    def _adopt(self) -> None:
        """Take up the commit in force when the daemon last ran, once it is valid still (the
        manifest folder or the storage roots may have changed since)."""
        name = self.layout.in_force()
        saved = _saved(self.layout)
        if isinstance(saved.get("fetch"), dict):
            self._fetch = {**self._fetch, "last_ok": saved["fetch"].get("last_ok")}
        if name is None:
            return
        sha = name[:40]
        if name != checkouts.checkout_name(sha, self.remote.path):
            self._consider(sha, time.time())  # exported anew for this manifest folder
            return
        problems = self._validate(name)
        if problems:
            log.error("the commit in force before the start is not valid now; waiting for a "
                      "good one", commit=sha, problems=problems)
            self._latest = {"commit": sha, "subject": "", "time": "",
                            "fetched": None, "problems": problems}
            self._save()
            return
        good: dict[str, Any] = saved.get("good") or {}
        if not isinstance(good, dict) or good.get("commit") != sha:
            good = {}
        previous = _commit(saved.get("previous"))
        with self._lock:
            self._good = Commit(sha, name, str(good.get("subject", "")),
                                str(good.get("time", "")),
                                str(good.get("since") or iso_time(time.time())))
            if previous is not None and (self.layout.checkouts / previous.checkout).is_dir():
                self._previous = previous
        self.layout.prune(self._keep())
        self._save()
        self.wake()

    def _sync(self) -> None:
        now = time.time()
        try:
            self.git.ensure()
            sha = self.git.fetch(self.remote.branch)
        except gitsync.Killed:
            return
        except (GitError, OSError) as exc:
            self._failed(str(exc), now)
            return
        self._fetch = {"last": iso_time(now), "ok": True, "error": None,
                       "last_ok": iso_time(now)}
        good, latest = self._good, self._latest
        if good is not None and good.sha == sha and good.checkout == checkouts.checkout_name(
                sha, self.remote.path):
            if latest is None or latest.get("commit") != sha:
                self._latest = {**good.as_dict(), "fetched": iso_time(now), "problems": []}
            self._save()
            return
        if (latest is not None and latest.get("commit") == sha
                and self._judged == (sha, tuple(self.roots()))):
            self._save()  # rejected already, and nothing it was judged by changed
            return
        self._consider(sha, now)

    def _consider(self, sha: str, now: float) -> None:
        """Export commit ``sha``, validate it, and switch to it when it has no problem."""
        name = checkouts.checkout_name(sha, self.remote.path)
        roots = tuple(self.roots())
        try:
            subject, committed = self.git.describe(sha)
            problems = self._export(sha, name)
        except gitsync.Killed:
            return
        except (GitError, OSError) as exc:
            self._failed(f"cannot export commit {sha[:12]}: {exc}", now)
            return
        problems = problems or self._validate(name)
        self._latest = {"commit": sha, "subject": subject, "time": committed,
                        "fetched": iso_time(now), "problems": problems}
        if problems:
            self._judged = (sha, roots)
            good = self._good
            log.error("commit rejected: it is not applied, the commit in force stays",
                      commit=sha, subject=subject, problems=problems,
                      in_force=good.sha if good else None)
            self.layout.prune(self._keep())
            self._save()
            return
        self.layout.switch(name)
        with self._lock:
            previous, self._good = self._good, Commit(sha, name, subject, committed,
                                                      iso_time(now))
            if previous is not None and previous.checkout != name:
                self._previous = previous
        log.info("switched to a new commit", commit=sha, subject=subject,
                 previous=previous.sha if previous else None)
        self.layout.prune(self._keep())
        self._save()
        self.wake()

    def _export(self, sha: str, name: str) -> list[str]:
        """The commit's manifest folder in checkout ``name`` (kept when there already: an
        export is complete once it has its name); the problem when the commit has none."""
        if (self.layout.checkouts / name).is_dir():
            return []
        staged = self.layout.staging(name)
        try:
            self.git.export(sha, self.remote.path, staged)
        except gitsync.NoFolder as exc:
            self.layout.discard(staged)
            return [f"{self.remote.path}: {exc}"]
        except BaseException:
            self.layout.discard(staged)
            raise
        self.layout.keep(staged, name)
        return []

    def _validate(self, name: str) -> list[str]:
        """The problems of checkout ``name``'s manifests, as `reconciler validate` finds them,
        one line each, files named as in the repository."""
        root = self.layout.checkouts / name
        inputs = manifests.load_desired(root / self.remote.path, tuple(self.roots()))
        return [_in_repository(p, root) for p in inputs.problems]

    def _keep(self) -> set[str]:
        with self._lock:
            return {c.checkout for c in (self._good, self._previous, self._pinned) if c}

    def _failed(self, error: str, now: float) -> None:
        before = self._fetch.get("error")
        self._fetch = {**self._fetch, "last": iso_time(now), "ok": False, "error": error}
        (log.warning if error != before else log.debug)(
            "fetch failed; the commit in force stays", error=error,
            in_force=self._good.sha if self._good else None)
        self._save()

    def _save(self) -> None:
        good, previous = self._good, self._previous
        document = {
            "url": redacted(self.remote), "branch": self.remote.branch,
            "path": self.remote.path, "interval": self.remote.interval,
            "good": good.as_dict() if good else None,
            "previous": previous.as_dict() if previous else None,
            "latest": self._latest, "fetch": self._fetch,
        }
        try:
            checkouts.write_state(self.layout, document)
        except OSError as exc:
            log.error("pull state not written", error=str(exc))


def redacted(remote: Remote) -> str:
    return gitsync.redact(remote.url)


def _saved(layout: checkouts.Layout) -> dict[str, Any]:
    """The pull state the last run left (empty when none, or unreadable)."""
    try:
        return checkouts.read_state(layout.state.parent.parent, layout.base.name) or {}
    except (PermanentError, OSError):
        return {}


def _commit(saved: object) -> Commit | None:
    """A commit as the pull state records it, or None."""
    if not isinstance(saved, dict) or not all(isinstance(saved.get(k), str) for k in (
            "commit", "checkout", "subject", "time", "since")):
        return None
    return Commit(saved["commit"], saved["checkout"], saved["subject"], saved["time"],
                  saved["since"])


def _in_repository(problem: Problem, root: Path) -> str:
    """A problem's line, its file named from the repository's root."""
    full = os.path.normpath(os.path.join(os.getcwd(), problem.file))
    message, file = problem.message, problem.file
    for folder in {str(root), os.path.realpath(root)}:
        message = message.replace(folder + os.sep, "")
        if full == folder:
            file = "."
        elif full.startswith(folder + os.sep):
            file = full[len(folder) + 1:]
    return str(replace(problem, file=file, message=message))
