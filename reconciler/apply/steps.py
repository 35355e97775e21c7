"""Step boundaries of apply: every call that changes the host is one step.

The executor talks to libvirt through ``Steps``, which lets reads through and counts each
write (define, create a volume, start, undefine, ...). Between two writes it may stop:

- ``halt`` (apply got SIGTERM or SIGINT): no new step starts; the action in flight raises
  ``Interrupted`` before its next write. A step that is part of the one in flight (the forced
  power-off that ends a graceful shutdown, see ``finishing``) still runs.
- ``RECONCILER_TEST_STOP_AFTER=N`` (a test hook): the process stops itself right after the Nth
  write of the run, with SIGKILL (or the signal ``RECONCILER_TEST_STOP_SIGNAL`` names: TERM,
  INT), so that tests can interrupt apply between any two steps.

Every multi-step action is ordered so that what an interruption leaves behind is still visible
and owned (the domain's mark records what is under way), and the next run finishes it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from reconciler.adapters.libvirt import Libvirt

STOP_AFTER_ENV = "RECONCILER_TEST_STOP_AFTER"
STOP_SIGNAL_ENV = "RECONCILER_TEST_STOP_SIGNAL"

# The adapter's calls that change the host: each one is a step. Every other public method of
# ``Libvirt`` only reads (tests/interrupt/test_steps.py checks that the two lists cover it).
WRITES = frozenset({
    "define", "start", "resume", "shutdown", "power_off", "undefine", "set_autostart",
    "set_vcpus_live", "set_memory_live", "set_hold", "set_mark", "attach_live", "detach_live",
    "block_resize", "eject_live",
    "create_volume", "resize_volume", "delete_volume", "upload_volume",
    "define_pool", "mark_pool", "start_pool", "set_pool_autostart", "remove_pool",
    "define_network", "start_network", "set_network_autostart", "remove_network",
    "migrate", "copy_volume_to",
})


class Interrupted(Exception):
    """Apply was asked to stop (SIGTERM, SIGINT): this action stopped between two steps, before
    the one its message names (``define``, ``create volume``, ...). Not
    a ``ReconcilerError``, so that code handling a failed call (an unplug the guest refused)
    never takes it for one."""


class Steps:
    """``hv`` with a boundary around each write (see the module's docstring). Thread-safe: the
    executor's workers share one."""

    def __init__(self, hv: Libvirt, *, halt: Callable[[], bool] | None = None,
                 stop_after: int | None = None, stop_signal: int = signal.SIGKILL) -> None:
        self._hv = hv
        self._halt = halt
        self._stop_after = stop_after
        self._stop_signal = stop_signal
        self._count = 0
        self._lock = threading.Lock()
        self._local = threading.local()  # per worker: steps done, the finishing depth

    @classmethod
    def from_env(cls, hv: Libvirt, halt: Callable[[], bool] | None = None) -> Steps:
        """Steps with the test hook as the environment sets it (no hook: never stops)."""
        value = os.environ.get(STOP_AFTER_ENV, "").strip()
        name = os.environ.get(STOP_SIGNAL_ENV, "KILL").strip().upper().removeprefix("SIG")
        stop_signal = getattr(signal, f"SIG{name}", signal.SIGKILL)
        return cls(hv, halt=halt, stop_after=int(value) if value.isdigit() else None,
                   stop_signal=stop_signal)

    @property
    def hv(self) -> Libvirt:
        """The adapter as the executor uses it: the same calls, each write a step."""
        return cast("Libvirt", self)

    @property
    def done(self) -> int:
        """Steps this thread carried out since ``begin``."""
        return int(getattr(self._local, "done", 0))

    def begin(self) -> None:
        """A worker starts an action: its step count starts at 0."""
        self._local.done = 0

    @contextlib.contextmanager
    def finishing(self) -> Iterator[None]:
        """The writes inside belong to the step in flight (the forced power-off after a graceful
        shutdown): they run even after a halt."""
        self._local.depth = getattr(self._local, "depth", 0) + 1
        try:
            yield
        finally:
            self._local.depth -= 1

    def halted(self) -> bool:
        return self._halt is not None and self._halt()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._hv, name)
        if name not in WRITES:
            return attr

        def step(*args: Any, **kwargs: Any) -> Any:
            if self.halted() and not getattr(self._local, "depth", 0):
                raise Interrupted(name.replace("_", " "))
            result = attr(*args, **kwargs)
            self._local.done = self.done + 1
            self._counted(name)
            return result

        return step

    def _counted(self, name: str) -> None:
        with self._lock:
            self._count += 1
            count = self._count
        if self._stop_after is None or count != self._stop_after:
            return
        print(f"{STOP_AFTER_ENV}: stopping after step {count} ({name}) with signal "
              f"{signal.Signals(self._stop_signal).name}", file=sys.stderr, flush=True)
        os.kill(os.getpid(), self._stop_signal)
        deadline = time.monotonic() + 5.0  # a caught signal: until its handler has run
        while self._halt is not None and not self._halt() and time.monotonic() < deadline:
            time.sleep(0.01)
