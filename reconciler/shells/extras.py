"""What the daemon does around each reconcile besides planning and applying (``daemon``): the
pause (`reconciler suspend`), the manifests' git revision (its commit, dirty or not, or why
there is none: warned once), the history of applied revisions, the webhook, the
``reconciler_info`` metric and the snapshot file (``--snapshot-file``, for CI). Each is bounded
or never blocks: a git that does not answer, a webhook that is down, a state directory that
hangs cost a warning, not the loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from reconciler.adapters import git as gitinfo
from reconciler.adapters import pause
from reconciler.adapters.config import Notify
from reconciler.adapters.git import Revision
from reconciler.core.status import VMStatus, iso_time
from reconciler.shells.bounded import Blocked, Lane
from reconciler.shells.metrics import Metrics

if TYPE_CHECKING:
    from reconciler import pipeline
    from reconciler.adapters.libvirt import Libvirt
    from reconciler.adapters.webhook import Webhook
    from reconciler.core.result import Result

log = structlog.get_logger("reconciler.run")

GIT_TIMEOUT = 5.0  # seconds for `git status` (the revision)
SNAPSHOT_EVERY = 60.0  # seconds: the snapshot file is refreshed at most this often (and after
# changes)
Bounded = Callable[[float], AbstractContextManager[None]]


class Extras:
    def __init__(self, *, path: Path, state_dir: Path, instance: str, metrics: Metrics,
                 notify: Notify | None = None, snapshot_file: Path | None = None,
                 storage_roots: tuple[str, ...] = (), bounded: Bounded | None = None) -> None:
        self.path, self.state_dir, self.instance = path, state_dir, instance
        self.metrics = metrics
        self.snapshot_file, self.storage_roots = snapshot_file, storage_roots
        self._git = Lane("git status (the manifests' revision)", bounded=bounded)
        self._said: str | None = None  # the git problem last warned about
        self.revision = Revision()
        self._snapshot_at = 0.0
        self._counted: dict[str, int] = {}  # webhook deliveries already in the metrics
        self.webhook: Webhook | None = None
        if notify is not None:
            from reconciler.adapters.webhook import Webhook

            self.webhook = Webhook(notify.url, secret=notify.secret, timeout=notify.timeout)

    # --- before a reconcile ----------------------------------------------------------------------

    def paused(self) -> dict[str, Any] | None:
        """The pause in force (since, by, reason), or None. An unreadable state directory
        reads as not paused (and is logged)."""
        try:
            record = pause.read(self.state_dir, self.instance)
        except OSError as exc:
            log.error("cannot read the pause file", error=str(exc))
            record = None
        self.metrics.suspended.set(1 if record is not None else 0)
        return record

    def read_revision(self, pinned: str | None = None) -> Revision:
        """The manifests' revision (bounded); a problem is warned about once, when it starts
        or changes, and shown in status. ``pinned``: the commit in force in pull mode (its
        checkout is an export, exactly that commit: never dirty, no git to ask)."""
        try:
            revision = (Revision(commit=pinned) if pinned else
                        self._git.call(lambda: gitinfo.revision(self.path), timeout=GIT_TIMEOUT))
        except Blocked as exc:
            self.metrics.blocked.labels("git").inc()
            revision = Revision(problem=f"git did not answer within {GIT_TIMEOUT:.0f} s: {exc}")
        if revision.problem and revision.problem != self._said:
            log.warning("no commit is recorded", reason=revision.problem)
        self._said = revision.problem
        if revision.commit != self.revision.commit or revision.dirty != self.revision.dirty:
            self.metrics.revision(revision.commit, revision.dirty, self.instance)
        self.revision = revision
        return revision

    def state_fields(self, paused: dict[str, Any] | None) -> dict[str, object]:
        """What the state file's writer section says about the revision and the pause."""
        return {"commit": self.revision.commit, "dirty": self.revision.dirty,
                "git_problem": self.revision.problem, "suspended": paused}

    @staticmethod
    def suspended_statuses(statuses: list[VMStatus], paused: dict[str, Any] | None,
                           ) -> list[VMStatus]:
        """While paused, what waits to be done is shown as suspended, with the pause."""
        if paused is None:
            return statuses
        detail = (f"the daemon is suspended since {paused.get('since')} by {paused.get('by')}"
                  + (f" ({paused['reason']})" if paused.get("reason") else "")
                  + ": nothing is applied until `reconciler resume`")
        return [VMStatus(s.name, "suspended", detail, s.manifest)
                if s.status in ("pending", "pending restart", "pending destroy") else s
                for s in statuses]

    # --- after a reconcile -----------------------------------------------------------------------

    def carried_out(self, planned: pipeline.Planned, results: tuple[Result, ...],
                    host: str) -> None:
        """Record the history of what was carried out, and tell the webhook."""
        from reconciler.shells.status import record_history

        record_history(self.state_dir, self.instance, planned, results, self.revision)
        if self.webhook is None:
            return
        from reconciler.adapters.webhook import report, worth_sending

        if not worth_sending(results):
            return
        before = (self.webhook.sent, self.webhook.failed, self.webhook.dropped)
        self.webhook.send(report(instance=self.instance, host=host, time=iso_time(time.time()),
                                 commit=self.revision.commit, dirty=self.revision.dirty,
                                 problem=self.revision.problem, results=results))
        if self.webhook.dropped > before[2]:
            self.metrics.webhook.labels("dropped").inc()
            log.warning("webhook document dropped: deliveries are behind",
                        last_error=self.webhook.last_error)

    def count_deliveries(self) -> None:
        """Move the webhook's counts into the metrics (called each reconcile)."""
        hook = self.webhook
        if hook is None:
            return
        for result, total in (("sent", hook.sent), ("failed", hook.failed)):
            seen = self._counted.get(result, 0)
            if total > seen:
                self.metrics.webhook.labels(result).inc(total - seen)
                self._counted[result] = total
                if result == "failed":
                    log.warning("webhook delivery failed", error=hook.last_error)

    def snapshot(self, hv: Libvirt, *, changed: bool) -> None:
        """Refresh the snapshot file (``--snapshot-file``) after changes, or when the last is
        SNAPSHOT_EVERY seconds old. Its failure is logged; the reconcile goes on."""
        if self.snapshot_file is None:
            return
        now = time.monotonic()
        if not changed and now - self._snapshot_at < SNAPSHOT_EVERY:
            return
        from reconciler.adapters import snapshot as snapshots
        from reconciler.adapters.libvirt.snapshot import take
        from reconciler.core.errors import ReconcilerError

        try:
            snapshots.write(take(hv, self.storage_roots), self.snapshot_file)
        except (ReconcilerError, OSError) as exc:
            log.error("snapshot file not written", path=str(self.snapshot_file),
                      error=str(exc))
            return
        self._snapshot_at = now

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close(wait=2.0)
