"""`reconciler run`: reconcile on file changes, libvirt events, a timer and SIGHUP.

Level-based: an event only wakes the loop; every cycle re-reads the manifests and the whole
live state and plans afresh. Reconciles never overlap: one loop thread runs them. The main
thread only supervises it (``supervisor``): it pings systemd's watchdog while the loop makes
progress and ends the process in bounded time after SIGTERM, whatever the loop is blocked in.
Reads that may block for good (files, libvirt, git, the state directory) are waited for a
bounded time (``bounded``); libvirt's keepalive ends calls to a libvirtd that hangs.
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
from reconciler.adapters import libvirt as libvirt_adapter
from reconciler.adapters import lock
from reconciler.adapters.cache import Cache
from reconciler.adapters.config import Notify
from reconciler.apply.executor import Settings, execute
from reconciler.core import defaults, status
from reconciler.core.errors import ReconcilerError, TransientError
from reconciler.core.plan import Action, Plan
from reconciler.core.record import Record
from reconciler.core.result import Outcome, Result
from reconciler.shells import accounting, pull, watch
from reconciler.shells.bounded import Blocked, Lane, Stopped
from reconciler.shells.extras import Extras
from reconciler.shells.link import Link, LivePoll
from reconciler.shells.metrics import Metrics
from reconciler.shells.options import destinations_of, peers_of, routes_of
from reconciler.shells.retries import Retries
from reconciler.shells.sdnotify import Notifier
from reconciler.shells.statefile import StateFile
from reconciler.shells.supervisor import HARD_STOP, Progress, Supervisor, exit_now
from reconciler.shells.wakeups import Wakeups, interest

log = structlog.get_logger("reconciler.run")

EVENT_COALESCE = 0.05  # seconds: a burst of libvirt events gives one reconcile
READ_TIMEOUT = 30.0  # seconds for reading the manifests and the host (keepalive ends a
# libvirt call to a libvirtd that hangs after 20 s: this is for what keepalive does not cover)
CONFIG_TIMEOUT = 5.0  # seconds for reading the config file (SIGHUP)
CLOSE_TIMEOUT = 2.0  # seconds to close the libvirt connection at exit


@dataclass(frozen=True, eq=False, repr=False)
class Options(Record):
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
    prune: str = "auto"  # auto | confirm | off; approvals are read from state_dir
    notify: Notify | None = None  # the webhook (config notify)
    snapshot_file: Path | None = None  # kept fresh for CI (`reconciler snapshot`'s format)
    git: pull.Remote | None = None  # pull mode (shells.pull): PATH is the checkout in force
    host: str | None = None  # many hosts: this host's Host name (config host)
    max_moves: int = defaults.MAX_MOVES  # many hosts: moves one cycle starts (config maxMoves)

    @property
    def source(self) -> pipeline.Source:
        return pipeline.Source(self.path, self.instance, self.storage_roots, self.max_destroy,
                               self.allow_empty, self.prune, self.state_dir, host=self.host,
                               max_moves=self.max_moves)


@dataclass(frozen=True, eq=False, repr=False)
class Cycle(Record):
    plan: Plan  # everything the host needs
    ran: tuple[Action, ...]  # what was carried out this time (not waiting for a retry)
    results: tuple[Result, ...]  # of ``ran``, as a fresh read shows them
    in_sync: list[str]
    problems: int
    states: dict[str, str]  # domain name -> libvirt's state word, as last read


class Daemon:
    def __init__(self, options: Options, notifier: Notifier | None = None) -> None:
        self.options = options
        self.metrics = Metrics()
        self.metrics.build(libvirt=libvirt_adapter.library_version())
        self.notifier = notifier or Notifier()
        self.notifier.on_drop = self._notify_dropped
        self.retries = Retries()
        self.ready = False
        self.wakeups = Wakeups(options.interval)
        self.progress = Progress()
        self.link = Link(options.connect, self.metrics, on_event=self.libvirt_event,
                         on_lost=self.connection_lost, wake=self.wakeups.wake.set,
                         bounded=self.progress.bounded)
        self.state = StateFile(options.state_dir, self.metrics, instance=options.instance,
                               bounded=self.progress.bounded)
        self._managed_before: dict[str, str] = {}  # name -> applied spec hash, last cycle
        self._suspended: list[str] = []  # VMs whose manifest says reconciler/suspend
        self.live = LivePoll(self.link, lambda: self.libvirt_event("domain", "", "live values"),
                             options.live_poll)
        self._memo = Cache(None, memory=True)  # parsed manifests and domains, in memory
        self._last: Cycle | None = None
        self._crashed = False
        self._reading = self._read_lane()
        self.extras = Extras(path=options.path, state_dir=options.state_dir,
                             instance=options.instance, metrics=self.metrics,
                             notify=options.notify, snapshot_file=options.snapshot_file,
                             storage_roots=options.storage_roots, bounded=self.progress.bounded)
        self._paused: dict[str, object] | None = None
        self._config = Lane("reading the config file", bounded=self.progress.bounded)
        self.manifests = pull.of(options.git, state_dir=options.state_dir,
                                 instance=options.instance, wake=self.files_changed,
                                 roots=lambda: self.options.storage_roots)

    def _read_lane(self) -> Lane:
        return Lane("reading the manifests and the host", on_done=self.wakeups.read_done,
                    bounded=self.progress.bounded)

    # --- wake-ups (any thread) -----------------------------------------------------------------

    def files_changed(self) -> None:
        self.wakeups.files_changed()

    def libvirt_event(self, kind: str, name: str, what: str) -> None:
        woke = self.wakeups.libvirt_event(kind, name)
        self.metrics.events.labels("woke" if woke else "ignored").inc()
        if woke:
            log.debug("libvirt event", kind=kind, name=name, what=what)

    def connection_lost(self, reason: str) -> None:
        log.warning("libvirt connection lost", reason=reason)
        self.wakeups.connection_lost()

    def stop(self, *_: object) -> None:
        self.wakeups.stopping()

    def reload(self, *_: object) -> None:
        self.wakeups.reloading()
        self.manifests.fetch_now()

    def _notify_dropped(self) -> None:
        self.metrics.notify_dropped.inc()
        if self.notifier.dropped == 1:
            log.warning("systemd does not read its notify socket: notifications are dropped "
                        "(counted in reconciler_notify_dropped_total)")

    @staticmethod
    def _watch_failed(message: str) -> None:
        log.error("cannot watch the manifest directory; relying on the periodic resync",
                  error=message)

    # --- the process (the main thread) ---------------------------------------------------------

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.reload)
        with lock.exclusive(self.options.instance, command="run",
                            state_dir=self.options.state_dir):
            self.metrics.try_serve(self.options.metrics_addr, first=True)
            libvirt_adapter.start_event_loop()
            watcher = watch.Watch(self.options.path, self.files_changed,
                                  on_error=self._watch_failed)
            watcher.start()
            self.manifests.start()
            if self.options.live_poll > 0:
                threading.Thread(target=self.live.run, args=(self.wakeups.stop,),
                                 name="live-poll", daemon=True).start()
            log.info("started", path=str(self.options.path), connect=self.options.connect,
                     interval=self.options.interval, debounce=self.options.debounce)
            loop = threading.Thread(target=self._run_loop, name="reconcile", daemon=True)
            loop.start()
            ended = Supervisor(self.notifier, self.progress, self.wakeups.stop,
                               hard_stop=HARD_STOP).supervise(loop)
            watcher.stop()
            self.manifests.stop()
            code = 1 if self._crashed else 0
            if not ended:
                log.error("stopping while a reconcile is blocked; the next start finishes it",
                          blocked_in=self.progress.doing,
                          seconds=round(time.monotonic() - self.progress.since, 1),
                          result="abandoned")
                exit_now(code, self._stopping)
            self._stopping()
            hv = self.link.hv
            closed = hv is None or hv.close(within=CLOSE_TIMEOUT)
            log.info("stopped")
            self.extras.close()
            if not closed or any(x.busy for x in (self._reading, self.link, self.state)):
                exit_now(code)  # a thread still waits for an answer: do not wait for it
        return code

    def _stopping(self) -> None:
        self.notifier.send(STOPPING=1, STATUS="stopping")

    def _run_loop(self) -> None:
        try:
            self._loop()
        except Exception:  # a bug: the process ends (systemd restarts it)
            log.exception("the reconcile loop crashed")
            self._crashed = True
        finally:
            self.wakeups.stopping()

    # --- the loop (its own thread) -------------------------------------------------------------

    def _loop(self) -> None:
        w = self.wakeups
        self._cycle("start")
        while not w.stop.is_set():
            self.progress.waiting()
            w.wake.wait(w.sleep_time(time.monotonic(), self.options.debounce,
                                     **self._timers()))
            w.wake.clear()
            if w.stop.is_set():
                break
            self.progress.busy("deciding")
            if w.reload.is_set():
                w.reload.clear()
                self._reload_config()
                self._cycle("SIGHUP")
                continue
            now = time.monotonic()
            if w.files_dirty_at is not None and now < w.files_dirty_at + self.options.debounce:
                continue  # still settling: wait out the debounce
            reason = w.due(now, **self._timers())
            if reason:
                if reason == "libvirt event":
                    time.sleep(EVENT_COALESCE)
                self._cycle(reason)

    def _timers(self) -> dict[str, float | None]:
        return {"reconnect_at": self.link.retry_at if self.link.hv is None else None,
                "retry_at": self.retries.backoff.next_retry()}

    def _reload_config(self) -> None:
        self.progress.busy("reading the config")
        try:
            cfg = self._config.call(lambda: configuration.load(self.options.config_file),
                                    timeout=CONFIG_TIMEOUT, stop=self.wakeups.stop.is_set)
        except (ReconcilerError, Blocked, Stopped) as exc:
            log.error("config reload failed; keeping the old config", error=str(exc))
            return
        new = replace(self.options, max_destroy=cfg.maxDestroy, parallel=cfg.parallel,
                      storage_roots=tuple(cfg.storageRoots), host=cfg.host,
                      max_moves=cfg.maxMoves)
        if cfg.connect != self.options.connect and self.options.config_file is not None:
            new = replace(new, connect=cfg.connect)
            self.link.disconnect()
            self.link.uri = cfg.connect
        self.options = new
        log.info("config reloaded", config=str(self.options.config_file or
                                              configuration.DEFAULT_PATH))

    # --- one cycle -----------------------------------------------------------------------------

    def _cycle(self, reason: str) -> None:
        w = self.wakeups
        w.cycle_started()
        self.progress.busy(f"reconciling ({reason})")
        self.metrics.try_serve(self.options.metrics_addr)
        if w.lost.is_set():
            w.lost.clear()
            self.link.disconnect()
        if self.link.hv is None:
            why = self.link.connect(w.stop.is_set)
            if why is not None:
                if not w.stop.is_set():
                    self._not_ready(why, self.link.retry.failures["libvirt"].error,
                                    connected=False)
                return
        started = time.monotonic()
        try:
            cycle = self._reconcile()
        except Stopped:
            return
        except Blocked as exc:
            self._read_blocked(exc)
            return
        except pull.NotYet as exc:
            self._not_ready(f"not ready: {exc}", str(exc), connected=True)
            return
        except TransientError as exc:
            log.warning("libvirt unreachable during reconcile", error=str(exc))
            self.metrics.runs.labels("error").inc()
            self._not_ready(self.link.failed(str(exc)), str(exc), connected=False)
            return
        except ReconcilerError as exc:
            log.error("reconcile failed", error=str(exc))
            self.metrics.runs.labels("error").inc()
            return
        except Exception:  # a bug must not take the host's reconciler down: log, go on
            log.exception("reconcile crashed; will try again at the next wake-up")
            self.metrics.runs.labels("error").inc()
            return
        w.reads.succeeded("read")
        seconds = time.monotonic() - started
        self.metrics.duration.observe(seconds)
        failed = [r for r in cycle.results if r.outcome == Outcome.FAILED]
        self.metrics.runs.labels("failed" if failed else "ok").inc()
        if not failed and not cycle.problems:
            self.metrics.last_success.set_to_current_time()
        self._report(cycle, reason, seconds)

    def _read_blocked(self, exc: Blocked) -> None:
        """A read did not return in time (or an earlier one still has not)."""
        self.metrics.blocked.labels("read").inc()
        self.metrics.runs.labels("error").inc()
        if self.link.dead():
            # libvirt's keepalive ended the connection under the read but, of calls made at
            # once on it, wakes only one (libvirt 9): the others wait for good. A new
            # connection, and a new lane for its reads; the stuck thread is left behind.
            self._reading = self._read_lane()
            self._not_ready(self.link.failed(f"libvirt did not answer: {exc}"), str(exc),
                            connected=False)
            return
        log.error("reconcile given up: a read did not return", error=str(exc),
                  retry_in=self.wakeups.read_blocked(str(exc)))
        self._not_ready(f"not ready: {exc}", str(exc), connected=True)

    def _not_ready(self, summary: str, error: str, *, connected: bool) -> None:
        self.notifier.send(STATUS=summary)
        self.state.write(self._last_statuses(), ready=False, connected=connected, error=error)

    def _started_action(self) -> bool:
        """The executor asks before each action whether to start it: a step of progress."""
        self.progress.beat()
        return self.wakeups.stop.is_set()

    def _reconcile(self) -> Cycle:
        hv = self.link.hv
        assert hv is not None
        source = self.manifests.pin(self.options.source)  # pull mode: the checkout in force
        # Files and domains unchanged since the last reconcile are not parsed again (every
        # volume size is still read, so drift in sizes is seen).
        planned = self._reading.call(
            lambda: pipeline.make_plan(source, hv, memo=self._memo, every_size=True,
                                       peers=peers_of(self.options.instance),
                                       destinations=destinations_of(hv)),
            timeout=READ_TIMEOUT, stop=self.wakeups.stop.is_set)
        plan, inputs, live = planned.plan, planned.inputs, planned.live.vms
        if planned.hosts or planned.forget:  # many hosts (adapters.knownhosts)
            from reconciler.adapters import knownhosts

            knownhosts.remember(self.options.state_dir, self.options.instance, planned.hosts,
                                planned.forget)
        self.wakeups.interest = interest(inputs, planned.live, self.options.instance)
        for problem in inputs.problems:
            log.error("manifest problem", problem=str(problem))
        if inputs.problems:
            # A file written halfway (git pull) is read again soon, not only at the next resync.
            self.wakeups.problems.failed("manifests", "invalid", time.monotonic())
        else:
            self.wakeups.problems.succeeded("manifests")
        now = time.monotonic()
        self._paused = self.extras.paused()  # `reconciler suspend`: observe, apply nothing
        runnable = () if self._paused else self.retries.runnable(plan, planned.live.read, now)
        ran = replace(plan, actions=runnable)
        results: tuple[Result, ...] = ()
        after = planned  # the last read of the host
        if runnable:
            writes = sum(1 for a in runnable if a.writes)
            if writes:
                self.progress.busy("carrying out the plan")
                self.notifier.send(STATUS=f"changing {writes} resource(s)")
            settings = Settings(parallel=self.options.parallel,
                                commit=(self.extras.read_revision(self.manifests.commit).commit
                                        if writes else None),
                                dirty=self.extras.revision.dirty,
                                stop=self._started_action, instance=self.options.instance,
                                clock=self.progress.clock, halt=self.wakeups.stop.is_set,
                                routes=routes_of(inputs))
            results = execute(ran, hv, settings)
            # Reported as a fresh read of the host shows it (the next cycle would find the
            # same).
            self.progress.busy("reading the host after the changes")
            after, results = self._reading.call(
                lambda: pipeline.verify(source, hv, replace(planned, plan=ran),
                                        results, memo=self._memo), timeout=READ_TIMEOUT)
        for action, result in zip(runnable, results, strict=True):
            self.retries.account(action, result, now)
            if result.outcome == Outcome.FAILED:  # the daemon's one report of it
                log.error("action failed", vm=action.label, action=str(action.kind),
                          error=result.message, retryable=result.retryable,
                          did=result.done_text or None)
            elif result.did:
                log.info("action done", vm=action.label, did=result.done_text,
                         result=str(result.outcome))
            if result.ok and accounting.is_drift(action, self._managed_before):
                self.metrics.drift.inc()
                log.info("drift repaired", vm=action.name)
        self.retries.forget_except(plan)
        in_sync = status.in_sync(inputs, plan)  # VMs, networks and pools
        self._managed_before = {vm.name: vm.mark.spec_hash for vm in live if vm.mark}
        self.live.watch({vm.name for vm in live if vm.mark and vm.running})
        self._suspended = [d.spec.name for d in inputs.vms if d.suspend]
        self._last = Cycle(plan, runnable, results, in_sync, len(inputs.problems),
                           {vm.name: vm.state for vm in after.live.vms})
        if any(a.writes for a in runnable):
            self.extras.carried_out(replace(planned, plan=ran), results, hv.hostname())
        self.extras.count_deliveries()
        self.extras.snapshot(hv, changed=any(a.writes for a in runnable))
        return self._last

    def _last_statuses(self) -> list[status.VMStatus]:
        last = self._last
        if last is None:
            return []
        return self.extras.suspended_statuses(
            status.vm_statuses(last.plan, last.results, last.in_sync, self.retries.waiting(),
                               self._suspended), self._paused)

    def _report(self, cycle: Cycle, reason: str, seconds: float) -> None:
        statuses = self._last_statuses()
        # Only what was carried out counts as an action: a VM that waits for a restart, or
        # stays blocked, is a status (reconciler_managed_vms), not an action each reconcile.
        carried = accounting.taken(cycle.ran, cycle.results)
        self.metrics.record(carried, statuses, cycle.states)
        self.metrics.problems.set(cycle.problems)
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s.status] = counts.get(s.status, 0) + 1
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no VMs"
        if cycle.problems:
            summary += f"; {cycle.problems} manifest problem(s)"
        if reason == "start" or carried:
            self.extras.read_revision(self.manifests.commit)
        self.state.write(statuses, ready=True, connected=True, problems=cycle.problems,
                         reason=reason, seconds=round(seconds, 3),
                         **self.extras.state_fields(self._paused))
        (log.info if carried or reason == "start" else log.debug)(
            "reconciled", reason=reason, seconds=round(seconds, 3), summary=summary,
            commit=self.extras.revision.short)
        if not self.ready:
            self.ready = True
            self.notifier.send(READY=1, STATUS=summary)
        else:
            self.notifier.send(STATUS=summary)
