"""Per-VM retry bookkeeping: exponential backoff, capped, reset on success."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class Failure(Record):
    count: int
    error: str
    retry_at: float  # on the monotonic clock


class Backoff:
    def __init__(self, base: float = 2.0, cap: float = 300.0) -> None:
        self.base = base
        self.cap = cap
        self.failures: dict[str, Failure] = {}

    def delay(self, count: int) -> float:
        """Seconds to wait after the ``count``-th failure in a row: doubling from ``base``,
        at most ``cap`` (the exponent stops growing once past the cap: no float overflow)."""
        return min(self.cap, self.base * 2.0 ** min(count - 1, 64))

    def failed(self, name: str, error: str, now: float) -> Failure:
        count = self.failures[name].count + 1 if name in self.failures else 1
        failure = Failure(count, error, now + self.delay(count))
        self.failures[name] = failure
        return failure

    def succeeded(self, name: str) -> None:
        self.failures.pop(name, None)

    def waiting(self, name: str, now: float) -> Failure | None:
        """The failure that keeps ``name`` from being retried yet, if any."""
        failure = self.failures.get(name)
        return failure if failure and failure.retry_at > now else None

    def next_retry(self) -> float | None:
        return min((f.retry_at for f in self.failures.values()), default=None)

    def forget_except(self, names: set[str]) -> None:
        for name in set(self.failures) - names:
            del self.failures[name]
