"""structlog setup: a console renderer on a TTY, JSON lines otherwise. The console renderer
colours only as ``console.colour`` decides for stderr (a terminal, no --no-color, no
NO_COLOR)."""

from __future__ import annotations

import logging
import sys


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
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
