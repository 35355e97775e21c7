"""Progress of a long apply, on stderr (results go to stdout): what each resource is doing, for
how long, and when a graceful shutdown will be cut short.

- On a terminal: a live display (rich), one line per resource in flight, redrawn a few times a
  second and gone when apply is done (the results say the rest): the step, its time elapsed
  and the countdown to a forced power-off, ``web-01  shutting down  12s  forced off in 48s``,
  then what was done, ``web-01  destroying  61s  forced off after 60s``.
- Off a terminal: plain lines, one per resource every 10 s it has been at the same activity,
  as Terraform's "Still destroying... [10s elapsed]":
  ``web-01: Still shutting down... [10s elapsed, forced off in 50s]``. The period is
  ``RECONCILER_PROGRESS_INTERVAL`` (a duration, ``1s``, or seconds) when set.

Both are an ``Observer`` of the executor (``reconciler.apply.progress``)."""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TextIO

from reconciler.apply.progress import Activity, Observer, Silent

if TYPE_CHECKING:
    from reconciler.core.result import Deed, Result

INTERVAL_ENV = "RECONCILER_PROGRESS_INTERVAL"
DEFAULT_INTERVAL = 10.0


@dataclass
class _Row:
    action: Activity
    since: float  # the action's start
    step: Activity | None = None  # a long step in flight
    step_since: float = 0.0
    deadline: float | None = None  # when the step is cut short (a forced power-off)
    next_line: float = 0.0  # off a terminal: when its next "Still ..." line is due
    done: str = ""  # the long steps done: "forced off after 3s"

    def now_doing(self) -> tuple[Activity, float]:
        """The step in flight, else the action, and since when."""
        return (self.step, self.step_since) if self.step else (self.action, self.since)


class _Board:
    """The resources in flight, and what each is doing since when (thread-safe)."""

    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval, self.clock = interval, clock
        self.rows: dict[str, _Row] = {}
        self.lock = threading.Lock()

    def began(self, name: str, activity: Activity) -> None:
        now = self.clock()
        with self.lock:
            self.rows[name] = _Row(activity, now, next_line=now + self.interval)

    def step(self, name: str, activity: Activity, *, timeout: float | None = None) -> None:
        now = self.clock()
        with self.lock:
            row = self.rows.get(name)
            if row is not None:
                row.step, row.step_since = activity, now
                row.deadline = now + timeout if timeout is not None else None
                row.next_line = now + self.interval

    def did(self, name: str, deed: Deed) -> None:
        now = self.clock()
        with self.lock:
            row = self.rows.get(name)
            if row is not None:
                row.step, row.deadline = None, None
                row.done = ", ".join(d for d in (row.done, str(deed)) if d)
                row.next_line = now + self.interval

    def ended(self, result: Result) -> None:
        with self.lock:
            self.rows.pop(result.name, None)

    def snapshot(self) -> list[tuple[str, _Row]]:
        with self.lock:
            return [(name, replace(row)) for name, row in self.rows.items()]


def still(name: str, row: _Row, now: float) -> str:
    """``web-01: Still shutting down... [10s elapsed, forced off in 50s]``."""
    activity, since = row.now_doing()
    tail = (f", forced off in {_left(row.deadline, now)}s" if row.deadline is not None else "")
    return f"{name}: Still {activity}... [{int(now - since)}s elapsed{tail}]"


def _left(deadline: float, now: float) -> int:
    return max(0, math.ceil(deadline - now))


class _Lines(_Board):
    """Off a terminal: a "Still ..." line per resource every ``interval`` seconds."""

    def __init__(self, stream: TextIO, interval: float, clock: Callable[[], float]) -> None:
        super().__init__(interval, clock)
        self.stream = stream
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._tick, name="progress", daemon=True)

    def _tick(self) -> None:
        while not self.done.wait(min(0.1, self.interval)):
            now = self.clock()
            due = []
            with self.lock:
                for name, row in self.rows.items():
                    if now >= row.next_line:
                        # A countdown at 0 is a forced power-off under way: said by the result.
                        if row.deadline is None or _left(row.deadline, now) > 0:
                            due.append(still(name, row, now))
                        row.next_line += self.interval
            for line in due:
                self.stream.write(line + "\n")
                self.stream.flush()


class _Live(_Board):
    """On a terminal: rich's live display of the resources in flight."""

    def __rich__(self) -> Any:
        from rich.table import Table

        now = self.clock()
        table = Table.grid(padding=(0, 2))
        for name, row in self.snapshot():
            activity, since = row.now_doing()
            note = (f"forced off in {_left(row.deadline, now)}s" if row.deadline is not None
                    else row.done)
            table.add_row(name, str(activity), f"{int(now - since)}s", note)
        return table


def interval() -> float:
    """The period of the plain lines: ``RECONCILER_PROGRESS_INTERVAL``, else 10 s."""
    text = os.environ.get(INTERVAL_ENV, "").strip()
    if not text:
        return DEFAULT_INTERVAL
    try:
        value = float(text)
    except ValueError:
        from reconciler.core.units import parse_duration

        try:
            value = float(parse_duration(text))
        except ValueError:
            return DEFAULT_INTERVAL
    return value if value > 0 and math.isfinite(value) else DEFAULT_INTERVAL


@contextlib.contextmanager
def shown(*, enabled: bool = True,
          clock: Callable[[], float] = time.monotonic) -> Iterator[Observer]:
    """An observer that shows apply's progress on stderr while the block runs (a live display
    on a terminal, plain periodic lines off one); ``enabled`` False: one that shows nothing."""
    if not enabled:
        yield Silent()
        return
    stream = sys.stderr
    if _terminal(stream):
        from rich.console import Console
        from rich.live import Live

        from reconciler.shells import console as colours

        board = _Live(interval(), clock)
        screen = Console(file=stream, no_color=not colours.colour(stream))
        with Live(board, console=screen, refresh_per_second=4, transient=True,
                  redirect_stdout=False, redirect_stderr=False):
            yield board
        return
    lines = _Lines(stream, interval(), clock)
    lines.thread.start()
    try:
        yield lines
    finally:
        lines.done.set()
        lines.thread.join()


def _terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM", "") != "dumb"
    except (AttributeError, ValueError):
        return False
