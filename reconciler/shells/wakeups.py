"""What wakes the daemon's loop: file changes, libvirt events, the connection lost, SIGHUP and
SIGTERM, set from any thread and read by the loop. Events of libvirt objects that are none of
this instance's business (other tenants' domains, networks and pools, and another reconciler
instance's) wake nothing."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from reconciler.core.live import LiveState
from reconciler.core.record import Record
from reconciler.core.validate.result import Validated
from reconciler.shells.backoff import Backoff


@dataclass(frozen=True, eq=False, repr=False)
class Interest(Record):
    """The names, by kind (``domain``, ``network``, ``pool``), whose events wake the loop."""

    domains: frozenset[str]
    networks: frozenset[str]
    pools: frozenset[str]

    def wants(self, kind: str, name: str) -> bool:
        names = {"domain": self.domains, "network": self.networks, "pool": self.pools}
        return name in names.get(kind, frozenset())


def interest(inputs: Validated, live: LiveState, instance: str) -> Interest:
    """What this instance manages (its mark: ``live`` shows other instances' objects as
    unmanaged), and what a manifest names, managed or not (a name taken by someone else is a
    conflict that its owner may end at any moment). Pure."""
    return Interest(
        domains=frozenset({d.spec.name for d in inputs.vms}
                          | {vm.name for vm in live.vms if vm.mark is not None}),
        networks=frozenset({n.spec.name for n in inputs.networks}
                           | {n.name for n in live.networks if n.mark is not None}),
        pools=frozenset({p.spec.name for p in inputs.pools}
                        | {p.name for p in live.pools if p.owner == instance}),
    )


class Wakeups:
    """The loop's reasons to run, and its timers (monotonic seconds): the periodic resync,
    manifests read again soon after a problem (``problems``: 2 s doubling up to the resync
    interval), a read that did not return tried again (``reads``: 1 s up to 30 s)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.next_resync = 0.0
        self.problems = Backoff(base=2.0, cap=interval)
        self.reads = Backoff(base=1.0, cap=30.0)
        self.read_retry_at: float | None = None
        self.read_returned = False  # the read that did not return has now: try again
        self.wake = threading.Event()  # something below changed: the loop looks
        self.stop = threading.Event()
        self.reload = threading.Event()
        self.lost = threading.Event()  # the libvirt connection dropped
        self.files_dirty_at: float | None = None  # monotonic time of the last file change
        self.libvirt_dirty = False
        # None until the first plan: until then every event wakes the loop.
        self.interest: Interest | None = None

    def files_changed(self) -> None:
        self.files_dirty_at = time.monotonic()
        self.wake.set()

    def libvirt_event(self, kind: str, name: str) -> bool:
        """Whether the event of object ``name`` (of ``kind``) woke the loop. An empty name
        (the daemon's own poll of live values) always does."""
        known = self.interest
        if name and known is not None and not known.wants(kind, name):
            return False
        self.libvirt_dirty = True
        self.wake.set()
        return True

    def read_done(self) -> None:
        """A read ended (any thread): if it was one given up on, its lane is free again."""
        if self.read_retry_at is not None:
            self.read_returned = True
            self.wake.set()

    def read_blocked(self, error: str) -> float:
        """A read did not return: when it is tried again (seconds from now)."""
        failure = self.reads.failed("read", error, time.monotonic())
        self.read_retry_at = failure.retry_at
        return self.reads.delay(failure.count)

    def cycle_started(self) -> None:
        self.files_dirty_at = None
        self.libvirt_dirty = False
        self.next_resync = time.monotonic() + self.interval
        self.read_retry_at, self.read_returned = None, False

    def due(self, now: float, *, reconnect_at: float | None, retry_at: float | None
            ) -> str | None:
        """Why the loop should reconcile now, if it should. ``reconnect_at``: when to open
        the libvirt connection again (None: it is open); ``retry_at``: the next retry of a
        failed action."""
        if self.files_dirty_at is not None:
            return "files changed"
        if self.libvirt_dirty:
            return "libvirt event"
        if self.lost.is_set() or (reconnect_at is not None and now >= reconnect_at):
            return "reconnect"
        if now >= self.next_resync:
            return "resync"
        if self.read_retry_at is not None and (now >= self.read_retry_at
                                               or self.read_returned):
            return "read retry"
        if retry_at is not None and now >= retry_at:
            return "retry"
        problems = self.problems.next_retry()
        if problems is not None and now >= problems:
            return "manifest retry"
        return None

    def sleep_time(self, now: float, debounce: float, *, reconnect_at: float | None,
                   retry_at: float | None) -> float:
        """Seconds until the next timer (see ``due``)."""
        deadlines = [self.next_resync]
        if self.files_dirty_at is not None:
            deadlines.append(self.files_dirty_at + debounce)
        for deadline in (reconnect_at, retry_at, self.problems.next_retry(),
                         self.read_retry_at):
            if deadline is not None:
                deadlines.append(deadline)
        return max(0.01, min(deadlines) - now)

    def connection_lost(self) -> None:
        self.lost.set()
        self.wake.set()

    def stopping(self) -> None:
        self.stop.set()
        self.wake.set()

    def reloading(self) -> None:
        self.reload.set()
        self.wake.set()
