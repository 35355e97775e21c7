"""Loggers that import structlog when they first log. Importing structlog costs about 70 ms
(it imports asyncio, and rich for its tracebacks): more than the rest of an `apply` with nothing
to do, which logs nothing (bench/startup_bench.py).

A one-shot command defers structlog's setup (``shells.logs.configure``) with
``configure_on_first_log``: it runs before the first record of a logger made here, once, in
whichever thread logs first; the others wait for it. Code that imports structlog itself (the
daemon) configures it at once, as before."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_pending: list[Callable[[], None]] = []  # at most one: the setup still to run
_lock = threading.Lock()


def configure_on_first_log(configure: Callable[[], None]) -> None:
    """Run ``configure`` before the first record of any logger of ``get_logger`` (replacing a
    setup still pending)."""
    with _lock:
        _pending[:] = [configure]


def forget_pending() -> None:
    """Drop a setup that no record needed (a command that logged nothing leaves structlog as
    it found it)."""
    with _lock:
        _pending.clear()


def get_logger(name: str) -> Any:
    """A logger of structlog's (``structlog.get_logger(name)``), imported when it first logs."""
    return _LazyLogger(name)


class _LazyLogger:
    def __init__(self, name: str) -> None:
        self._name = name
        self._logger: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if _pending:  # the setup runs before any record; a thread that logs meanwhile waits
            with _lock:
                for configure in _pending:
                    configure()
                _pending.clear()
        if self._logger is None:
            import structlog

            self._logger = structlog.get_logger(self._name)
        return getattr(self._logger, attribute)
