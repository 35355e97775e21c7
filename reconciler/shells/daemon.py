"""`reconciler run`: reconcile on file changes, libvirt events, a timer and SIGHUP.

Level-based: an event only wakes the loop; every cycle re-reads the manifests and the whole
live state and plans afresh. Reconciles never overlap (one loop thread).
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from reconciler import pipeline
from reconciler.adapters import config as configuration
from reconciler.adapters import git as gitinfo
from reconciler.adapters import libvirt as libvirt_adapter
from reconciler.adapters import lock
from reconciler.adapters import state as state_file
from reconciler.adapters.cache import Cache
from reconciler.adapters.libvirt import Libvirt
from reconciler.apply.executor import Settings, execute
from reconciler.core import defaults, status
from reconciler.core.errors import ReconcilerError, TransientError
from reconciler.core.plan import Action, Kind, Plan, Resource
from reconciler.core.result import Outcome, Result
from reconciler.shells import accounting, watch
from reconciler.shells.backoff import Backoff
from reconciler.shells.metrics import Metrics
from reconciler.shells.sdnotify import Notifier

log = structlog.get_logger("reconciler.run")

EVENT_COALESCE = 0.05  # seconds: a burst of libvirt events gives one reconcile


@dataclass(frozen=True)
class Options:
    path: Path
    connect: str
    state_dir: Path
    interval: float = defaults.RESYNC_INTERVAL
    debounce: float = defaults.DEBOUNCE
    metrics_addr: str | None = defaults.METRICS_ADDR
    max_destroy: int = defaults.MAX_DESTROY
    allow_empty: bool = False
    parallel: int = defaults.PARALLEL
    config_file: Path | None = None
    instance: str = defaults.INSTANCE
    storage_roots: tuple[str, ...] = defaults.STORAGE_ROOTS
    live_poll: float = 5.0  # seconds between polls of running VMs' vCPUs and memory; 0: off

    @property
    def source(self) -> pipeline.Source:
        return pipeline.Source(self.path, self.instance, self.storage_roots, self.max_destroy,
                               self.allow_empty)


class Daemon:
    def __init__(self, options: Options, notifier: Notifier | None = None) -> None:
        self.options = options
        self.notifier = notifier or Notifier()
        self.metrics = Metrics()
        self.backoff = Backoff()
        # A permanent failure is not retried while its inputs stay as they were: name ->
        # (digest of the manifest and of what was read of the domain, the error).
        self._stuck: dict[str, tuple[str, str]] = {}
        self._inputs: dict[str, str] = {}
        self.hv: Libvirt | None = None
        self.ready = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._lost = threading.Event()
        self._files_dirty_at: float | None = None
        self._libvirt_dirty = False
        self._next_resync = 0.0
        self._reconnect = Backoff(base=1.0, cap=30.0)
        self._reconnect_at = 0.0
        self._managed_before: dict[str, str] = {}  # name -> applied spec hash, last cycle
        self._suspended: list[str] = []  # VMs whose manifest says reconciler/suspend
        self._problems_backoff = Backoff(base=2.0, cap=options.interval)
        self._running_managed: set[str] = set()
        self._live_snapshot: dict[str, tuple[int, int, int]] = {}
        self._memo = Cache(None, memory=True)  # parsed manifests and domains, in memory

    # --- wake-ups (any thread) -----------------------------------------------------------------

    def files_changed(self) -> None:
        self._files_dirty_at = time.monotonic()
        self._wake.set()

    def libvirt_event(self, name: str, what: str) -> None:
        log.debug("libvirt event", vm=name, kind=what)
        self._libvirt_dirty = True
        self._wake.set()

    def connection_lost(self, reason: str) -> None:
        log.warning("libvirt connection lost", reason=reason)
        self._lost.set()
        self._wake.set()

    def stop(self, *_: object) -> None:
        self._stop.set()
        self._wake.set()

    def reload(self, *_: object) -> None:
        self._reload.set()
        self._wake.set()

    # --- the loop ------------------------------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)
        with lock.exclusive(self.options.instance, command="run",
                            state_dir=self.options.state_dir):
            if self.options.metrics_addr:
                self.metrics.serve(self.options.metrics_addr)
            libvirt_adapter.start_event_loop()
            observer = watch.watch(self.options.path, self.files_changed)
            if observer is None:
                log.error("cannot watch the manifest directory; relying on the periodic resync",
                          path=str(self.options.path))
            pinger = threading.Thread(target=self._watchdog, name="sd-watchdog", daemon=True)
            pinger.start()
            if self.options.live_poll > 0:
                poller = threading.Thread(target=self._poll_live, name="live-poll", daemon=True)
                poller.start()
            log.info("started", path=str(self.options.path), connect=self.options.connect,
                     interval=self.options.interval, debounce=self.options.debounce)
            try:
                self._loop()
            finally:
                self.notifier.send(STOPPING=1, STATUS="stopping")
                if observer is not None:
                    observer.stop()
                if self.hv is not None:
                    self.hv.close()
                log.info("stopped")
        return 0

    def _loop(self) -> None:
        self._cycle("start")
        while not self._stop.is_set():
            self._wake.wait(self._sleep_time())
            self._wake.clear()
            if self._stop.is_set():
                break
            if self._reload.is_set():
                self._reload.clear()
                self._reload_config()
                self._cycle("SIGHUP")
                continue
            now = time.monotonic()
            if self._files_dirty_at is not None and now < self._files_dirty_at + \
                    self.options.debounce:
                continue  # still settling: wait out the debounce
            reason = self._due_reason(now)
            if reason:
                if reason == "libvirt event":
                    time.sleep(EVENT_COALESCE)
                self._cycle(reason)

    def _due_reason(self, now: float) -> str | None:
        if self._files_dirty_at is not None:
            return "files changed"
        if self._libvirt_dirty:
            return "libvirt event"
        if self._lost.is_set() or (self.hv is None and now >= self._reconnect_at):
            return "reconnect"
        if now >= self._next_resync:
            return "resync"
        retry = self.backoff.next_retry()
        if retry is not None and now >= retry:
            return "retry"
        problems_retry = self._problems_backoff.next_retry()
        if problems_retry is not None and now >= problems_retry:
            return "manifest retry"
        return None

    def _sleep_time(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_resync]
        if self._files_dirty_at is not None:
            deadlines.append(self._files_dirty_at + self.options.debounce)
        if self.hv is None:
            deadlines.append(self._reconnect_at)
        for retry in (self.backoff.next_retry(), self._problems_backoff.next_retry()):
            if retry is not None:
                deadlines.append(retry)
        return max(0.01, min(deadlines) - now)

    def _watchdog(self) -> None:
        period = self.notifier.watchdog_seconds
        if not period:
            return
        while not self._stop.wait(period / 2):
            self.notifier.send(WATCHDOG=1)

    def _poll_live(self) -> None:
        """Wake the loop when a running VM's vCPUs or memory change without an event."""
        while not self._stop.wait(self.options.live_poll):
            hv = self.hv
            if hv is None or not self._running_managed:
                continue
            try:
                values = hv.live_values(set(self._running_managed))
            except ReconcilerError:
                continue
            if self._live_snapshot and values != self._live_snapshot:
                self.libvirt_event("", "live values changed")
            self._live_snapshot = values

    def _reload_config(self) -> None:
        try:
            cfg = configuration.load(self.options.config_file)
        except ReconcilerError as exc:
            log.error("config reload failed; keeping the old config", error=str(exc))
            return
        new = replace(self.options, max_destroy=cfg.maxDestroy, parallel=cfg.parallel,
                      storage_roots=tuple(cfg.storageRoots))
        if cfg.connect != self.options.connect and self.options.config_file is not None:
            new = replace(new, connect=cfg.connect)
            self._disconnect()
        self.options = new
        log.info("config reloaded", config=str(self.options.config_file or
                                              configuration.DEFAULT_PATH))

    # --- one cycle -----------------------------------------------------------------------------

    def _cycle(self, reason: str) -> None:
        self._files_dirty_at = None
        self._libvirt_dirty = False
        self._next_resync = time.monotonic() + self.options.interval
        if self._lost.is_set():
            self._lost.clear()
            self._disconnect()
        if self.hv is None and not self._connect():
            return
        started = time.monotonic()
        try:
            results, plan, in_sync, problems = self._reconcile()
        except TransientError as exc:
            log.warning("libvirt unreachable during reconcile", error=str(exc))
            self._disconnect()
            self._connect_later(str(exc))
            self.metrics.runs.labels("error").inc()
            return
        except ReconcilerError as exc:
            log.error("reconcile failed", error=str(exc))
            self.metrics.runs.labels("error").inc()
            return
        except Exception:  # a bug must not take the host's reconciler down: log, go on
            log.exception("reconcile crashed; will try again at the next wake-up")
            self.metrics.runs.labels("error").inc()
            return
        seconds = time.monotonic() - started
        self.metrics.duration.observe(seconds)
        failed = [r for r in results if r.outcome == Outcome.FAILED]
        self.metrics.runs.labels("failed" if failed else "ok").inc()
        if not failed and not problems:
            self.metrics.last_success.set_to_current_time()
        self._report(plan, results, in_sync, problems, reason, seconds)

    def _connect(self) -> bool:
        try:
            hv = Libvirt(self.options.connect)
            hv.watch(self.libvirt_event, self.connection_lost)
        except ReconcilerError as exc:
            self._connect_later(str(exc))
            return False
        self.hv = hv
        self._reconnect.succeeded("libvirt")
        self.metrics.connected.set(1)
        log.info("connected to libvirt", uri=self.options.connect)
        return True

    def _connect_later(self, error: str) -> None:
        failure = self._reconnect.failed("libvirt", error, time.monotonic())
        self._reconnect_at = failure.retry_at
        self.metrics.connected.set(0)
        delay = self._reconnect.delay(failure.count)
        log.warning("libvirt unreachable; will retry", error=error, retry_in=delay)
        self.notifier.send(STATUS=f"not ready: libvirt unreachable, retrying in {delay:.0f}s")
        state_file.write(self.options.state_dir, self._last_statuses(),
                         instance=self.options.instance, command="run", ready=False,
                         connected=False, error=error)

    def _disconnect(self) -> None:
        if self.hv is not None:
            self.hv.close()
        self.hv = None
        self.metrics.connected.set(0)

    def _reconcile(self) -> tuple[tuple[Result, ...], Plan, list[str], int]:
        assert self.hv is not None
        # Files and domains unchanged since the last reconcile are not parsed again (every
        # volume size is still read, so drift in sizes is seen).
        planned = pipeline.make_plan(self.options.source, self.hv, memo=self._memo,
                                     every_size=True)
        plan, inputs, live = planned.plan, planned.inputs, planned.live.vms
        for problem in inputs.problems:
            log.error("manifest problem", problem=str(problem))
        if inputs.problems:
            # A file written halfway (git pull) is read again soon, not only at the next resync.
            self._problems_backoff.failed("manifests", "invalid", time.monotonic())
        else:
            self._problems_backoff.succeeded("manifests")
        now = time.monotonic()
        self._inputs = {a.label: accounting.inputs_key(a, planned.live.read) for a in plan.actions}
        runnable = tuple(a for a in plan.actions if not self.backoff.waiting(a.label, now)
                         and self._stuck.get(a.label, ("",))[0] != self._inputs[a.label])
        if any(a.kind == Kind.DESTROY and a.resource == Resource.VM and a not in runnable
               for a in plan.actions):  # a VM destroy waits: what it uses stays with it
            runnable = tuple(a for a in runnable
                             if a.resource == Resource.VM or a.kind != Kind.DESTROY)
        settings = Settings(parallel=self.options.parallel,
                            commit=gitinfo.head_commit(self.options.path),
                            stop=self._stop.is_set, instance=self.options.instance)
        ran = replace(plan, actions=runnable)
        results = execute(ran, self.hv, settings)
        # Reported as a fresh read of the host shows it (the next cycle would find the same).
        _, results = pipeline.verify(self.options.source, self.hv,
                                     replace(planned, plan=ran), results, memo=self._memo)
        for action, result in zip(runnable, results, strict=True):
            self._account(action, result, now)
        self.backoff.forget_except({a.label for a in plan.actions})
        self._stuck = {n: v for n, v in self._stuck.items()
                       if n in self._inputs and v[0] == self._inputs[n]}
        in_sync = status.in_sync(inputs, plan)  # VMs, networks and pools
        self._managed_before = {vm.name: vm.mark.spec_hash for vm in live if vm.mark}
        self._running_managed = {vm.name for vm in live if vm.mark and vm.running}
        self._live_snapshot = {}  # re-baseline after our own changes
        self._plan, self._results, self._in_sync = plan, results, in_sync
        self._suspended = [d.spec.name for d in inputs.vms if d.suspend]
        return results, plan, in_sync, len(inputs.problems)

    def _account(self, action: Action, result: Result, now: float) -> None:
        if result.outcome == Outcome.FAILED and not result.retryable:
            # Retrying the same thing fails the same way: not until the manifest or the
            # domain changes (then its inputs' digest does).
            self._stuck[action.label] = (self._inputs.get(action.label, ""), result.message)
            self.backoff.succeeded(action.label)
            log.warning("not retried until its manifest or domain changes", vm=action.label)
            return
        if result.outcome == Outcome.FAILED:
            failure = self.backoff.failed(action.label, result.message, now)
            log.warning("will retry", vm=action.label,
                        retry_in=self.backoff.delay(failure.count))
            return
        self.backoff.succeeded(action.label)
        if result.ok and accounting.is_drift(action, self._managed_before):
            self.metrics.drift.inc()
            log.info("drift repaired", vm=action.name)

    def _last_statuses(self) -> list[status.VMStatus]:
        plan = getattr(self, "_plan", None)
        if plan is None:
            return []
        return status.vm_statuses(plan, self._results, self._in_sync, self._waiting(),
                                  self._suspended)

    def _waiting(self) -> dict[str, tuple[str, float | None]]:
        """Failed resources held back: the error, and the wall-clock time of the next retry
        (None: a permanent error, retried once its manifest or domain changes)."""
        now, wall = time.monotonic(), time.time()
        waiting: dict[str, tuple[str, float | None]] = {
            name: (f.error, wall + (f.retry_at - now)) for name, f in self.backoff.failures.items()}
        waiting.update({name: (error, None) for name, (_, error) in self._stuck.items()})
        return waiting

    def _report(self, plan: Plan, results: tuple[Result, ...], in_sync: list[str],
                problems: int, reason: str, seconds: float) -> None:
        statuses = status.vm_statuses(plan, results, in_sync, self._waiting(),
                                      self._suspended)
        self.metrics.record(results, statuses)
        self.metrics.problems.set(problems)
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s.status] = counts.get(s.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no VMs"
        if problems:
            summary += f"; {problems} manifest problem(s)"
        state_file.write(self.options.state_dir, statuses, instance=self.options.instance,
                         command="run", ready=True, connected=True, problems=problems,
                         reason=reason, seconds=round(seconds, 3))
        if results or reason == "start":
            log.info("reconciled", reason=reason, seconds=round(seconds, 3), summary=summary)
        if not self.ready:
            self.ready = True
            self.notifier.send(READY=1, STATUS=summary)
        else:
            self.notifier.send(STATUS=summary)


