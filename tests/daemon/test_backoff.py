"""Retry bookkeeping of the daemon: exponential, capped, and never an overflow however long a
fault lasts (libvirtd away for days)."""

from __future__ import annotations

from reconciler.shells.backoff import Backoff


def test_delays_double_up_to_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    assert [backoff.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_fault_that_lasts_for_days_keeps_the_cap() -> None:
    backoff = Backoff(base=1.0, cap=30.0)
    assert backoff.delay(1025) == 30.0  # 2.0 ** 1024 overflows a float
    failure = None
    for second in range(3000):  # libvirt unreachable, retried every 30 s: about a day
        failure = backoff.failed("libvirt", "unreachable", second * 30.0)
    assert failure is not None and failure.retry_at == 2999 * 30.0 + 30.0
