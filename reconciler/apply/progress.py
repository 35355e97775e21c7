"""What the executor tells the shell while it works: which resource does what, since when, and
until when a graceful shutdown waits. The shell passes an ``Observer`` and renders it (a live
display on a terminal, periodic lines off one); the daemon passes none.

Calls come from the executor's worker threads, at once for different resources: an observer
must be thread-safe."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.core.result import Result


class Activity(StrEnum):
    """What a resource's worker is doing now, as "Still <activity>..." says it."""

    CREATING = "creating"
    UPDATING = "updating"
    DESTROYING = "destroying"
    ADOPTING = "adopting"
    STARTING = "starting"
    SHUTTING_DOWN = "shutting down"  # graceful ACPI shutdown: ``timeout`` seconds, then forced
    FORCING_OFF = "forcing off"


class Observer(Protocol):
    def began(self, name: str, activity: Activity, *, timeout: float | None = None) -> None:
        """``name`` (a resource's label) starts ``activity`` now; ``timeout``: seconds until
        it is cut short (a graceful shutdown's shutdownTimeout, then a forced power-off)."""

    def ended(self, result: Result) -> None:
        """The resource's action is over (before the fresh read that may still correct the
        result)."""


class Silent:
    """An observer that shows nothing (the daemon, and apply with nothing to show)."""

    def began(self, name: str, activity: Activity, *, timeout: float | None = None) -> None:
        return None

    def ended(self, result: Result) -> None:
        return None
