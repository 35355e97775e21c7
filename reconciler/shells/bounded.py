"""Calls that may block for good, waited for a bounded time.

A file system that hangs (NFS, a FIFO where a manifest should be), a libvirtd that accepts a
connection and never answers it (while it starts up, or stopped), a child process stuck in
the kernel: each such call runs in a helper thread of its lane, and the caller waits at most
its timeout. A call that does not return in time is left to finish in its thread, and its
lane stays busy until it does: a call on a busy lane fails at once, so stuck threads never
pile up. Only calls that change nothing may be left behind like this (reads); writes are
never run here.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import wait as wait_for
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

T = TypeVar("T")
STEP = 0.1  # seconds between looks at ``stop`` while waiting


class Blocked(Exception):
    """A call did not return within its timeout, or its lane is still busy with an earlier
    one. ``what``: the lane; ``seconds``: how long the call has been running."""

    def __init__(self, what: str, seconds: float, *, earlier: bool = False) -> None:
        self.what = what
        self.seconds = seconds
        when = "an earlier one still running after" if earlier else "no answer within"
        super().__init__(f"{what}: {when} {seconds:.0f} s")


class Stopped(Exception):
    """``stop()`` became true while waiting (SIGTERM)."""


class Lane:
    """One kind of blocking call (``what``: e.g. "reading the manifests and libvirt").
    ``on_late(value)``: given the value of a call that returned after its caller gave up
    (e.g. a connection, to close it); ``on_done()``: called whenever a call ends;
    ``bounded(seconds)``: a context the caller waits in (the daemon's watchdog counts a wait
    with a timeout as progress)."""

    def __init__(self, what: str, *, on_late: Callable[[Any], None] | None = None,
                 on_done: Callable[[], None] | None = None,
                 bounded: Callable[[float], AbstractContextManager[None]] | None = None) -> None:
        self.what = what
        self.on_late = on_late
        self.on_done = on_done
        self.bounded = bounded
        self._future: Future[Any] | None = None
        self._started = 0.0
        self._abandoned = False

    @property
    def busy(self) -> bool:
        return self._future is not None and not self._future.done()

    def call(self, fn: Callable[[], T], *, timeout: float,
             stop: Callable[[], bool] | None = None) -> T:
        """``fn()``'s value (or its exception), waited for at most ``timeout`` seconds.

        Raises Blocked when it did not return in time (it goes on in its thread) or when an
        earlier call of this lane still runs, and Stopped when ``stop()`` turns true."""
        if self.busy:
            raise Blocked(self.what, time.monotonic() - self._started, earlier=True)
        future: Future[T] = Future()

        def run() -> None:
            future.set_running_or_notify_cancel()
            try:
                future.set_result(fn())
            except BaseException as exc:  # handed to the caller as it is
                future.set_exception(exc)
            if self.on_done is not None:
                self.on_done()

        self._future, self._started = future, time.monotonic()
        threading.Thread(target=run, name=f"lane: {self.what}", daemon=True).start()
        with (self.bounded or nullcontext)(timeout):
            return self._wait(future, timeout, stop)

    def _wait(self, future: Future[T], timeout: float, stop: Callable[[], bool] | None) -> T:
        deadline = self._started + timeout
        while True:
            done, _ = wait_for([future], timeout=max(0.0, min(STEP, deadline - time.monotonic())))
            if done:
                return future.result()
            if stop is not None and stop():
                self._abandon(future)
                raise Stopped(self.what)
            if time.monotonic() >= deadline:
                self._abandon(future)
                raise Blocked(self.what, time.monotonic() - self._started)

    def _abandon(self, future: Future[Any]) -> None:
        """What the call returns after all goes to ``on_late`` (at once if it just did)."""
        on_late = self.on_late
        if on_late is not None:
            future.add_done_callback(
                lambda f: on_late(f.result()) if f.exception() is None else None)
