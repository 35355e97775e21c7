"""The daemon's libvirt connection: opened within a bounded time, with its events and
keepalive, and opened again with backoff (1 s up to 30 s) after it was lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager

import structlog

from reconciler.adapters.libvirt import Libvirt
from reconciler.adapters.libvirt.events import EventHandler
from reconciler.core.errors import ReconcilerError
from reconciler.shells.backoff import Backoff
from reconciler.shells.bounded import Blocked, Lane, Stopped
from reconciler.shells.metrics import Metrics

log = structlog.get_logger("reconciler.run")

# Seconds for libvirt.open and the registrations: a libvirtd that is starting up (or hangs)
# accepts a connection and answers nothing, and libvirt's keepalive does not cover the open.
CONNECT_TIMEOUT = 10.0


class Link:
    """``hv``: the open connection, or None. ``on_event`` and ``on_lost``: see
    ``Libvirt.watch``. ``bounded``: see ``bounded.Lane``."""

    def __init__(self, uri: str, metrics: Metrics, *, on_event: EventHandler,
                 on_lost: Callable[[str], None], wake: Callable[[], None],
                 bounded: Callable[[float], AbstractContextManager[None]]) -> None:
        self.uri = uri
        self.metrics = metrics
        self.on_event = on_event
        self.on_lost = on_lost
        self.hv: Libvirt | None = None
        self.retry = Backoff(base=1.0, cap=30.0)
        self.retry_at = 0.0  # when to try again (monotonic) after a failure
        # A connection that opened after its caller gave up on it is closed.
        self._lane = Lane("connecting to libvirt", on_done=wake, bounded=bounded,
                          on_late=lambda hv: hv.close(within=0))

    @property
    def busy(self) -> bool:
        """An open is still under way (it did not return in time)."""
        return self._lane.busy

    def connect(self, stop: Callable[[], bool]) -> str | None:
        """Open the connection; None when it is open, else why not (then ``retry_at`` says
        when to try again). Gives up after CONNECT_TIMEOUT, or when ``stop()``."""
        uri = self.uri

        def connect() -> Libvirt:
            hv = Libvirt(uri)
            try:
                hv.watch(self.on_event, self.on_lost)
            except BaseException:
                hv.close(within=0)
                raise
            return hv

        try:
            self.hv = self._lane.call(connect, timeout=CONNECT_TIMEOUT, stop=stop)
        except Stopped:
            return "stopping"
        except Blocked as exc:
            self.metrics.blocked.labels("connect").inc()
            return self.failed(f"cannot connect to {uri}: {exc}")
        except ReconcilerError as exc:
            return self.failed(str(exc))
        self.retry.succeeded("libvirt")
        self.metrics.connected.set(1)
        log.info("connected to libvirt", uri=uri)
        return None

    def failed(self, error: str) -> str:
        """The connection is unusable: closed, retried later. The message for the user."""
        self.disconnect()
        failure = self.retry.failed("libvirt", error, time.monotonic())
        self.retry_at = failure.retry_at
        delay = self.retry.delay(failure.count)
        log.warning("libvirt unreachable; will retry", error=error, retry_in=delay)
        return f"not ready: libvirt unreachable, retrying in {delay:.0f}s"

    def disconnect(self) -> None:
        if self.hv is not None:
            self.hv.close(within=0)  # a libvirtd that hangs would not answer the close either
        self.hv = None
        self.metrics.connected.set(0)

    def dead(self) -> bool:
        """The connection was closed under us (libvirtd gone, keepalive gave up)."""
        return self.hv is not None and not self.hv.alive()


class LivePoll:
    """Calls ``changed()`` when a running VM's vCPUs or memory change without an event
    (``virsh setvcpus --live`` sends none): a poll every ``period`` seconds, in its own
    thread, of the VMs last given to ``watch``."""

    def __init__(self, link: Link, changed: Callable[[], None], period: float) -> None:
        self.link = link
        self.changed = changed
        self.period = period
        self._names: set[str] = set()
        self._snapshot: dict[str, tuple[int, int, int]] = {}
        self._generation = 0  # bumped by ``watch``
        self._lock = threading.Lock()

    def watch(self, names: set[str]) -> None:
        """Poll these from now on, from a new baseline (after the daemon's own changes)."""
        with self._lock:
            self._names, self._snapshot = names, {}
            self._generation += 1

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.period):
            hv, names, generation = self.link.hv, self._names, self._generation
            if hv is None or not names:
                continue
            try:
                values = hv.live_values(set(names))
            except ReconcilerError:
                continue
            with self._lock:
                if generation != self._generation:
                    continue  # read before the daemon's own changes: no baseline
                changed = bool(self._snapshot) and values != self._snapshot
                self._snapshot = values
            if changed:
                self.changed()
