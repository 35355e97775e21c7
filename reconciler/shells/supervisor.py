"""The daemon's main thread: it runs no reconcile, so it never blocks in one. It pings systemd's
watchdog while the reconcile loop (a thread of its own) makes progress or waits idle, and on
SIGTERM gives the loop a bounded time to finish before the process exits.

The watchdog (systemd.service(5), ``WatchdogSec=``): systemd restarts a service that sends no
``WATCHDOG=1`` for that long; the service should send one at least every half of it
(sd_watchdog_enabled(3), ``$WATCHDOG_USEC``). Here a ping is sent every half period only while
the loop is idle (waiting for a wake-up), in a wait bounded by a timeout, or has passed a step
since the last ping; a loop stuck in one call sends none, and systemd restarts the daemon.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

from reconciler.shells.sdnotify import Notifier

STOP_GRACE = 10.0  # seconds the work in flight gets after SIGTERM before the process exits
HARD_STOP = 20.0  # seconds after SIGTERM when the process exits whatever it is doing


class Progress:
    """What the loop thread tells the main thread about itself (any thread may call)."""

    def __init__(self) -> None:
        self.idle = False
        self.doing = "starting"
        self.since = time.monotonic()  # when ``doing`` began
        self.beat_at = self.since  # when the loop last passed a step
        self.until = 0.0  # the end of the bounded wait the loop is in, if any

    @contextlib.contextmanager
    def bounded(self, seconds: float) -> Iterator[None]:
        """A wait that ends within ``seconds`` (a call with a timeout): progress meanwhile."""
        self.until = time.monotonic() + seconds
        try:
            yield
        finally:
            self.until = 0.0
            self.beat()

    @property
    def moving(self) -> bool:
        """Idle, or in a wait bounded by a timeout."""
        return self.idle or time.monotonic() < self.until

    def beat(self) -> None:
        """A step was passed: a call returned, an action started or polled its guest."""
        self.beat_at = time.monotonic()

    def busy(self, doing: str) -> None:
        self.idle, self.doing = False, doing
        self.since = self.beat_at = time.monotonic()

    def waiting(self) -> None:
        """Idle: waiting for the next wake-up."""
        self.busy("waiting")
        self.idle = True

    def clock(self) -> float:
        """``time.monotonic()``, counted as a step (the executor reads its clock between
        calls and while it polls a guest)."""
        self.beat()
        return self.beat_at


class Supervisor:
    """``supervise(loop)`` runs in the main thread until the loop thread ends, or until
    ``stop`` is set and the loop has had ``grace`` seconds to end. ``hard_stop``: seconds
    after ``stop`` when the process exits whatever it does (None: never; a process that is
    not the daemon's own must not be ended so)."""

    def __init__(self, notifier: Notifier, progress: Progress, stop: threading.Event,
                 grace: float = STOP_GRACE, hard_stop: float | None = None) -> None:
        self.notifier = notifier
        self.progress = progress
        self.stop = stop
        self.grace = grace
        self.hard_stop = hard_stop
        self._pinged_at = 0.0

    def supervise(self, loop: threading.Thread) -> bool:
        """True when the loop ended; False when it was still busy at the deadline (then
        ``self.progress`` says in what)."""
        period = self.notifier.watchdog_seconds
        tick = min(1.0, period / 4) if period else 1.0
        while loop.is_alive() and not self.stop.is_set():
            self.stop.wait(tick)
            if period:
                self._watchdog(period)
        if self.stop.is_set() and self.hard_stop is not None:
            self._hard_stop_timer(self.hard_stop)
        if loop.is_alive():
            loop.join(self.grace)
        return not loop.is_alive()

    def _watchdog(self, period: float) -> None:
        now = time.monotonic()
        if now - self._pinged_at < period / 2:
            return
        if self.progress.moving or self.progress.beat_at > self._pinged_at:
            self._pinged_at = now
            self.notifier.send(WATCHDOG=1)

    @staticmethod
    def _hard_stop_timer(seconds: float) -> None:
        """The last resort: whatever blocks the main thread too (a log write to a stalled
        stderr), the process exits ``seconds`` after SIGTERM."""
        timer = threading.Timer(seconds, exit_now, args=(0,))
        timer.daemon = True
        timer.start()


def exit_now(code: int, last_words: Callable[[], None] | None = None) -> None:
    """Exit at once, without waiting for threads stuck in a call (os._exit; the kernel drops
    the writer lock, a flock). ``last_words``: run first (the state, STOPPING)."""
    try:
        if last_words is not None:
            last_words()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(code)
