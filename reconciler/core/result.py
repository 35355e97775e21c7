"""What apply did to each resource, as the executor reports it."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.plan import Kind, Why
from reconciler.core.record import Record


class Outcome(StrEnum):
    """Where the resource stands after apply, read back from the host (status, history, the
    webhook and metrics count these)."""

    CONVERGED = "converged"
    PENDING_RESTART = "pending restart"  # persisted; the running VM takes it at its next start
    BLOCKED = "blocked"  # not attempted: conflict, refusal, destroy guard
    FAILED = "failed"


class Did(StrEnum):
    """One thing apply did to a resource, in the order it was done: what a result line says
    (``created, started``; ``forced off after 60s, destroyed``)."""

    CREATED = "created"  # defined (a VM), or defined and started (a network, a pool)
    ADOPTED = "adopted"  # the mark recorded on an existing domain, nothing else
    RESUMED = "resumed"  # a paused domain running again
    UPDATED = "updated"  # the persistent definition (or volumes) changed, nothing live
    RESIZED_LIVE = "resized live"  # vcpus, memory or a disk changed on the running VM
    HOTPLUGGED = "hot-plugged"  # a disk or NIC added to or removed from the running VM
    SHUT_DOWN = "shut down"  # the guest powered off on the ACPI request
    FORCED_OFF = "forced off"  # ... or did not within shutdownTimeout: powered off
    STARTED = "started"
    DESTROYED = "destroyed"  # undefined (a VM), or stopped and undefined (a network, a pool)
    MOVED = "moved"  # many hosts: now on another host (live migration or cold move)
    # many hosts: the copy of its volumes a stopped move to another host left here, deleted
    COPY_DELETED = "deleted the copy of its volumes a move left here"


@dataclass(frozen=True, eq=False, repr=False)
class Deed(Record):
    """``did``, and for ``FORCED_OFF`` the shutdownTimeout in seconds that ran out; for
    ``MOVED`` the host it went to and how (``to``: "hv-b (live migration)")."""

    did: Did
    after: int | None = None
    to: str | None = None

    def __str__(self) -> str:
        if self.did == Did.FORCED_OFF and self.after is not None:
            return f"{self.did} after {_seconds(self.after)}"
        if self.did == Did.MOVED and self.to:
            return f"{self.did} to {self.to}"
        if self.did == Did.COPY_DELETED and self.to:  # to: "hv-b (default/web-01-root)"
            host, _, volumes = self.to.partition(" ")
            return f"deleted the copy of its volumes its move to {host} left here {volumes}"
        return str(self.did)


def _seconds(seconds: int) -> str:
    from reconciler.core.units import format_duration

    return format_duration(seconds)


@dataclass(frozen=True, eq=False, repr=False)
class Result(Record):
    name: str
    kind: Kind
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    retryable: bool = False
    why: Why | None = None  # blocked: the plan's reason code
    # Not started because the run was stopped first (SIGTERM): nothing was done, and the next
    # run does it (status shows it pending, not failed).
    interrupted: bool = False
    # Nothing to do this run but the restart an earlier apply left pending: listed apart.
    untouched: bool = False
    # Whether the action was carried out (all of it or some steps): False when it was blocked,
    # had nothing to do, or was not started (stopped first, a destroy held back).
    started: bool = True
    # What was done, in order (also for a failed action: what was done before it failed).
    did: tuple[Deed, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CONVERGED, Outcome.PENDING_RESTART)

    @property
    def done_text(self) -> str:
        """``created, started``; empty when nothing was done."""
        return ", ".join(str(d) for d in self.did)
