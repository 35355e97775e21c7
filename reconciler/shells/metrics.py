"""Prometheus metrics of the daemon (prometheus-client), on their own registry, served by a
threaded HTTP server of their own."""

from __future__ import annotations

import platform
import socket
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import structlog
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    make_wsgi_app,
)

from reconciler import __version__
from reconciler.core.result import Result
from reconciler.core.status import VMStatus
from reconciler.shells.bounded import Blocked, Lane

log = structlog.get_logger("reconciler.run")

# No *_created series: they only add noise here. (prometheus-client leaves the function
# unannotated.)
disable_created_metrics()  # type: ignore[no-untyped-call]
STATUSES = ("in sync", "pending", "pending restart", "pending destroy", "failed", "blocked",
            "conflict", "suspended", "orphaned")
ABSENT = "absent"  # reconciler_vm_info's state of a declared VM that has no domain
CLIENT_TIMEOUT = 10.0  # seconds a scraper may take to send its request or read the answer
BIND_TIMEOUT = 2.0  # seconds a retry to bind the metrics address may take


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.server: WSGIServer | None = None
        self._binding = Lane("binding the metrics address")
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
        self.events = Counter("reconciler_libvirt_events_total",
                              "libvirt events received, by whether they woke the loop",
                              ["effect"], registry=r)
        self.blocked = Counter("reconciler_blocked_calls_total",
                               "Calls given up on after their timeout (they did not return)",
                               ["call"], registry=r)
        self.notify_dropped = Counter("reconciler_notify_dropped_total",
                                      "systemd notifications dropped: systemd's queue was "
                                      "full or nobody listened", registry=r)
        self.info = Gauge("reconciler_info", "The revision of the manifests in force (1)",
                          ["commit", "dirty", "instance"], registry=r)
        self.suspended = Gauge("reconciler_suspended",
                               "1 while `reconciler suspend` pauses the daemon", registry=r)
        self.webhook = Counter("reconciler_webhook_deliveries_total",
                               "Webhook documents by fate (sent, failed, dropped)", ["result"],
                               registry=r)
        self.vm_info = Gauge("reconciler_vm_info",
                             "1 per VM of this instance: its libvirt state and sync status",
                             ["name", "state", "sync"], registry=r)
        self._vm_series: set[tuple[str, str, str]] = set()
        self.build_info = Gauge("reconciler_build_info",
                                "1: the versions of reconciler, Python and the libvirt library",
                                ["version", "python", "libvirt"], registry=r)

    def build(self, libvirt: str) -> None:
        """``reconciler_build_info{version, python, libvirt} 1``."""
        self.build_info.labels(__version__, platform.python_version(), libvirt).set(1)

    def revision(self, commit: str | None, dirty: bool, instance: str) -> None:
        """``reconciler_info{commit=..., dirty=..., instance=...} 1`` for the revision in force
        (the previous one's series removed)."""
        self.info.clear()
        self.info.labels(commit or "", "true" if dirty else "false", instance).set(1)

    def serve(self, address: str) -> None:
        """Serve /metrics at ``host:port`` (``[v6]:port`` for IPv6) from a daemon thread.

        Raises ValueError for an address that is not host:port, and OSError when the
        address cannot be bound (the port is taken: EADDRINUSE; not this host's)."""
        host, _, port = address.rpartition(":")
        if not port.isdigit():
            raise ValueError(f"{address!r} is not host:port")
        host = host.strip("[]") or "127.0.0.1"
        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        class Server(ThreadingMixIn, WSGIServer):
            address_family = family
            daemon_threads = True

        server = make_server(host, int(port), make_wsgi_app(self.registry), Server,
                             handler_class=_Handler)
        threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
        self.server = server

    def try_serve(self, address: str | None, *, first: bool = False) -> None:
        """Serve at ``address`` (None: not wanted) unless served already. An address that
        cannot be bound (the port is taken) is a one-line warning, the first time; the
        daemon runs without metrics meanwhile and calls this again at each reconcile."""
        if not address or self.server is not None:
            return
        try:
            if first:
                self.serve(address)
            else:  # from the reconcile loop: a host name's lookup may hang (DNS)
                self._binding.call(lambda: self.serve(address), timeout=BIND_TIMEOUT)
        except Blocked:
            return
        except (OSError, ValueError) as exc:
            if first:
                log.warning("metrics not served; running without them, trying again at each "
                            "reconcile (each reconciler instance on a host needs its own "
                            "--metrics-addr, or `off`)", address=address, error=str(exc))
            return
        if not first:
            log.info("metrics served", address=address)

    def record(self, carried_out: Iterable[Result], statuses: Iterable[VMStatus],
               states: Mapping[str, str] = {}) -> None:
        """``carried_out``: the results of the actions carried out (``accounting.taken``).
        ``statuses``: every object's status; ``states``: domain name -> libvirt's state word,
        as last read. Each VM's ``reconciler_vm_info`` series is set, and those of VMs gone
        (or whose state or status changed) removed."""
        for result in carried_out:
            self.actions.labels(word(result.kind), word(result.outcome)).inc()
        statuses = list(statuses)
        counts = Tally(s.status for s in statuses)
        for status in STATUSES:
            self.vms.labels(word(status)).set(counts.get(status, 0))
        # VMs only: networks and pools are named network/NAME, pool/NAME (a VM's name has no
        # slash).
        series = {(s.name, word(states.get(s.name, ABSENT)), word(s.status))
                  for s in statuses if "/" not in s.name}
        for labels in series:
            self.vm_info.labels(*labels).set(1)
        for gone in self._vm_series - series:
            self.vm_info.remove(*gone)
        self._vm_series = series


def word(value: str) -> str:
    """A label value as one snake_case word (``pending restart`` -> ``pending_restart``,
    ``shut off`` -> ``shut_off``): label values never hold spaces."""
    return "_".join(str(value).split())


class _Handler(WSGIRequestHandler):
    """No access log; a scraper that sends nothing is dropped after CLIENT_TIMEOUT."""

    timeout = CLIENT_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:
        return
