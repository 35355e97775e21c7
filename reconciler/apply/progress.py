"""What the executor tells the shell while it works: which resource does what, since when, and
until when a graceful shutdown waits. The shell passes an ``Observer`` and renders it (a live
display on a terminal, periodic lines off one); the daemon passes none.

Calls come from the executor's worker threads, at once for different resources: an observer
must be thread-safe."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from reconciler.core.result import Deed, Result


class Activity(StrEnum):
    """What a resource's worker is doing now, as "Still <activity>..." says it."""

    CREATING = "creating"
    UPDATING = "updating"
    DESTROYING = "destroying"
    ADOPTING = "adopting"
    STARTING = "starting"
    # Steps of an action that may take long.
    SHUTTING_DOWN = "shutting down"  # graceful ACPI shutdown: ``timeout`` seconds, then forced
    FORCING_OFF = "forcing off"


class Observer(Protocol):
    def began(self, name: str, activity: Activity) -> None:
        """The action on ``name`` (a resource's label) begins: creating, updating, destroying
        or adopting."""

    def step(self, name: str, activity: Activity, *, timeout: float | None = None) -> None:
        """A step of ``name``'s action that may take long begins (starting, shutting down,
        forcing off); ``timeout``: seconds until it is cut short (a graceful shutdown's
        shutdownTimeout, then a forced power-off)."""

    def did(self, name: str, deed: Deed) -> None:
        """A step of ``name``'s action is done (``forced off after 60s``); the action goes
        on."""

    def ended(self, result: Result) -> None:
        """The resource's action is over (before the fresh read that may still correct the
        result)."""


class Silent:
    """An observer that shows nothing (the daemon, and apply with nothing to show)."""

    def began(self, name: str, activity: Activity) -> None:
        return None

    def step(self, name: str, activity: Activity, *, timeout: float | None = None) -> None:
        return None

    def did(self, name: str, deed: Deed) -> None:
        return None

    def ended(self, result: Result) -> None:
        return None
