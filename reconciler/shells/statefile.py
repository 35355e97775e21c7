"""The daemon's writes of the state file (``adapters.state``), never waited for long: the
write ends in an fsync, which a state directory on a file system that hangs does not finish."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from pathlib import Path

import structlog

from reconciler.adapters import state as state_file
from reconciler.core.status import VMStatus
from reconciler.shells.bounded import Blocked, Lane
from reconciler.shells.metrics import Metrics

log = structlog.get_logger("reconciler.run")

STATE_TIMEOUT = 5.0  # seconds a write of the state file may take


class StateFile:
    def __init__(self, state_dir: Path, metrics: Metrics, *, instance: str,
                 bounded: Callable[[float], AbstractContextManager[None]] | None = None) -> None:
        self.state_dir = state_dir
        self.instance = instance
        self.metrics = metrics
        self._lane = Lane(f"writing {state_file.path(state_dir, instance)}", bounded=bounded)

    @property
    def busy(self) -> bool:
        return self._lane.busy

    def write(self, statuses: Iterable[VMStatus], **daemon: object) -> bool:
        """Replace the state file (``command="run"`` and ``daemon`` recorded); whether it was
        written. A write that does not finish within STATE_TIMEOUT, or fails, is logged and
        counted; while one is still blocked, later ones are skipped."""
        listed = list(statuses)
        try:
            self._lane.call(lambda: state_file.write(self.state_dir, listed,
                                                     instance=self.instance, command="run",
                                                     **daemon), timeout=STATE_TIMEOUT)
        except Blocked as exc:
            self.metrics.blocked.labels("state").inc()
            log.error("state file not written", error=str(exc))
            return False
        except OSError as exc:
            log.error("state file not written", error=str(exc))
            return False
        return True
