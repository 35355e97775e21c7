"""structlog setup: a console renderer on a TTY, JSON lines otherwise; under systemd each line
starts with its syslog priority, so the journal files it at its level. The console renderer
colours only as ``console.colour`` decides for stderr (a terminal, no --no-color, no
NO_COLOR)."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, MutableMapping

# Syslog priorities (sd-daemon(3)) of structlog's method names.
PRIORITIES = {"debug": 7, "info": 6, "warning": 4, "warn": 4, "error": 3, "exception": 3,
              "critical": 2, "fatal": 2}


def configure(fmt: str = "auto", level: int = logging.INFO) -> None:
    import structlog  # here: commands that log nothing do not pay for importing it

    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    from reconciler.shells import console

    renderer = (structlog.processors.JSONRenderer() if fmt == "json"
                # Tracebacks without their frames' variables (rich shows them by default):
                # they may hold credentials or cloud-init user data.
                else structlog.dev.ConsoleRenderer(
                    colors=console.colour(sys.stderr),
                    exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            # A logged exception carries its traceback as text (JSON): "exc_info": true alone
            # would say that something crashed, not what.
            *([structlog.processors.format_exc_info] if fmt == "json" else []),
            with_priority(renderer) if under_journal() else renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )


def under_journal() -> bool:
    """Whether stderr is the journal's stream: systemd sets ``JOURNAL_STREAM=<device>:<inode>``
    of the stream it connects (systemd.exec(5)); a process that inherited the variable but
    writes elsewhere (a pipe, a file) has another device or inode on fd 2."""
    device, _, inode = os.environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(2)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def prefixed(text: str, priority: int) -> str:
    """``text`` with ``<priority>`` before each of its lines (journald's stream reads a
    prefix per line: SyslogLevelPrefix=yes, the default)."""
    return "\n".join(f"<{priority}>{line}" for line in text.split("\n"))


def error_line(text: str) -> str:
    """A line of a command's error (not a log record) as stderr should carry it: with priority
    err under the journal."""
    return prefixed(text, PRIORITIES["error"]) if under_journal() else text


def with_priority(render: Callable[[Any, str, MutableMapping[str, Any]], Any]
                  ) -> Callable[[Any, str, MutableMapping[str, Any]], str]:
    """``render`` (structlog's last processor), each line of what it gives prefixed with the
    record's priority: a multi-line record (a console traceback) stays at its level."""

    def render_with_priority(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
        return prefixed(str(render(logger, method, event)), PRIORITIES.get(method, 6))

    return render_with_priority
