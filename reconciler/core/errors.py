"""The project's errors and problems: one flat hierarchy, each error says whether a retry helps."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Problem:
    """Something wrong with the input, pointing at its source."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}" if self.line else self.file
        field = f"{self.field}: " if self.field else ""
        return f"{where}: {field}{self.message}"

    def as_dict(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "column": self.column,
                "field": self.field, "message": self.message}


class ReconcilerError(Exception):
    """Base of every error the tool raises on purpose."""

    retryable = False


class TransientError(ReconcilerError):
    """A retry later may succeed (libvirtd restarting, a busy domain, a timeout)."""

    retryable = True


class PermanentError(ReconcilerError):
    """Retrying the same thing will fail the same way (bad XML, missing pool, no such network)."""


class NotFoundError(PermanentError):
    """The named domain, volume, pool or network does not exist."""


class LockedError(ReconcilerError):
    """Another writer (apply or run) holds the state-directory lock."""


def short(value: object, limit: int = 80) -> str:
    """A value as a message shows it: its repr, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."
