"""Prometheus metrics of the daemon (prometheus-client), on their own registry."""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)

from reconciler.core.errors import PermanentError
from reconciler.core.result import Result
from reconciler.core.status import VMStatus

# No *_created series: they only add noise here. (prometheus-client leaves the function
# unannotated.)
disable_created_metrics()  # type: ignore[no-untyped-call]
STATUSES = ("in sync", "pending", "pending restart", "failed", "blocked", "conflict",
            "suspended")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.runs = Counter("reconciler_reconcile_runs_total", "Reconcile runs by result",
                            ["result"], registry=r)
        self.duration = Histogram("reconciler_reconcile_duration_seconds",
                                  "Time one reconcile run took", registry=r,
                                  buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
        self.actions = Counter("reconciler_actions_total", "Actions carried out",
                               ["kind", "result"], registry=r)
        self.drift = Counter("reconciler_drift_repairs_total",
                             "Managed VMs set back after a change made outside the manifests",
                             registry=r)
        self.vms = Gauge("reconciler_managed_vms", "VMs by sync status", ["status"], registry=r)
        self.problems = Gauge("reconciler_manifest_errors", "Manifest problems in the last run",
                              registry=r)
        self.last_success = Gauge("reconciler_last_success_timestamp_seconds",
                                  "When a reconcile last finished without failures", registry=r)
        self.connected = Gauge("reconciler_libvirt_connected", "1 while libvirt answers",
                               registry=r)

    def serve(self, address: str) -> None:
        """Serve /metrics at ``host:port`` (a daemon thread). Raises PermanentError when the
        address is taken (on a shared host, another instance's daemon may have it) or wrong."""
        host, _, port = address.rpartition(":")
        try:
            start_http_server(int(port), addr=host.strip("[]") or "127.0.0.1",
                              registry=self.registry)
        except (OSError, ValueError) as exc:
            raise PermanentError(
                f"cannot serve metrics at {address}: {getattr(exc, 'strerror', None) or exc}; "
                "each reconciler instance on a host needs its own --metrics-addr (or `off`)"
            ) from exc

    def record(self, results: Iterable[Result], statuses: Iterable[VMStatus]) -> None:
        for result in results:
            self.actions.labels(str(result.kind), str(result.outcome)).inc()
        counts = Tally(s.status for s in statuses)
        for status in STATUSES:
            self.vms.labels(status).set(counts.get(status, 0))
