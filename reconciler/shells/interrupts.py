"""Signals during `reconciler apply`: SIGTERM and SIGINT stop it cleanly, never with a traceback
(see ``Interrupts``)."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any


class Stopped(BaseException):
    """A signal came while apply was still reading (planning): it stops at once."""


class Interrupts:
    """SIGTERM and SIGINT during `apply`. While it only reads (plans, asks), the run stops at
    once and changes nothing. Once it changes the host, the first signal lets the step in flight
    finish (a libvirt call; a graceful shutdown for up to its shutdownTimeout) and starts no new
    one; every action then says whether it was interrupted and how far it got, and apply exits
    1. A second signal exits at once (as kill -9 would: the next run finishes the work, see
    ``reconciler.apply.steps``)."""

    def __init__(self) -> None:
        self.signal: str | None = None
        self.changing = False
        self._old: dict[int, Any] = {}

    def received(self) -> bool:
        return self.signal is not None

    def summary(self, messages: list[str]) -> tuple[str, bool]:
        """What apply says last after a signal, and whether any action was left unfinished;
        ``messages``: its results' messages."""
        left = sum(1 for m in messages if m.startswith("interrupted"))
        if not left:
            return (f"reconciler: {self.signal} came after the last step: every action was "
                    "carried out", False)
        return (f"reconciler: interrupted by {self.signal}: stopped between two steps; {left} "
                f"action{'' if left == 1 else 's'} not finished (above); run apply again to "
                "finish", True)

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():  # (only there, in Python)
            for number in (signal.SIGTERM, signal.SIGINT):
                self._old[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for number, handler in self._old.items():
            signal.signal(number, handler)

    def _handle(self, number: int, _frame: object) -> None:
        name = signal.Signals(number).name
        if self.signal is not None:
            _say(f"reconciler: {name} again: exiting now; the next apply finishes what this "
                 "one started\n")
            os._exit(1)  # apply's exit status for a run that did not finish
        self.signal = name
        if not self.changing:
            raise Stopped(name)
        _say(f"reconciler: {name}: finishing the step in flight, starting no new one (send it "
             "again to exit now)\n")


def _say(text: str) -> None:
    """Write to stderr from a signal handler (no buffered stream: it may be mid-write)."""
    with contextlib.suppress(OSError):
        os.write(2, text.encode())
