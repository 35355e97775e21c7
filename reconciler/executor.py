"""Carry out a plan on libvirt: one worker per VM, bounded; one VM's failure never stops others."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum

import structlog

from reconciler import domainxml
from reconciler.errors import NotFoundError, ReconcilerError
from reconciler.libvirt_adapter import Libvirt
from reconciler.model import DesiredVM, Disk, LiveHold, LiveVM, Mark, PowerState
from reconciler.plan import Action, Change, Kind, Mode, Plan

log = structlog.get_logger("reconciler.apply")


class Outcome(StrEnum):
    CONVERGED = "converged"
    PENDING_RESTART = "pending restart"  # persisted; the running VM takes it at its next start
    BLOCKED = "blocked"  # not attempted: conflict, refusal, destroy guard
    FAILED = "failed"


@dataclass(frozen=True)
class Result:
    name: str
    kind: Kind
    outcome: Outcome
    message: str = ""
    seconds: float = 0.0
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.CONVERGED, Outcome.PENDING_RESTART)


@dataclass
class Settings:
    parallel: int = 4
    balloon_wait: float = 3.0  # how long a guest gets to take up a balloon target
    commit: str | None = None
    clock: Callable[[], float] = field(default=time.monotonic)


def execute(plan: Plan, hv: Libvirt, settings: Settings | None = None) -> tuple[Result, ...]:
    """Carry out every action of ``plan``; results in the plan's order."""
    settings = settings or Settings()
    runner = _Runner(hv, settings)
    with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
        return tuple(pool.map(runner.run, plan.actions))


class _Runner:
    def __init__(self, hv: Libvirt, settings: Settings) -> None:
        self.hv = hv
        self.settings = settings

    def run(self, action: Action) -> Result:
        started = self.settings.clock()
        if action.kind == Kind.BLOCKED or action.refused:
            return Result(action.name, action.kind, Outcome.BLOCKED, _blocked_reason(action))
        if not action.writes:
            return _pending_result(action, [], 0.0)
        try:
            if action.kind == Kind.CREATE:
                assert action.desired
                self._create(action.desired)
                pending: list[str] = []
            elif action.kind == Kind.DESTROY:
                assert action.live
                self._destroy(action.live)
                pending = []
            else:
                pending = self._update(action)
        except ReconcilerError as exc:
            seconds = self.settings.clock() - started
            log.error("action failed", vm=action.name, action=str(action.kind),
                      error=str(exc), seconds=round(seconds, 3), retryable=exc.retryable)
            return Result(action.name, action.kind, Outcome.FAILED, str(exc), seconds,
                          exc.retryable)
        seconds = self.settings.clock() - started
        result = _pending_result(action, pending, seconds)
        log.info("action done", vm=action.name, action=str(action.kind),
                 result=str(result.outcome), seconds=round(seconds, 3))
        return result

    def _mark(self, want: DesiredVM) -> Mark:
        return Mark(want.source.relative, want.spec_hash, self.settings.commit, want.applied)

    # --- create --------------------------------------------------------------------------------

    def _create(self, want: DesiredVM) -> None:
        spec = want.spec
        for disk in spec.disks:
            self._ensure_volume(spec.name, disk)
        self.hv.define(domainxml.build_domain(spec, domain_type=self.hv.domain_type,
                                              mark=self._mark(want)))
        if spec.autostart:
            self.hv.set_autostart(spec.name, True)
        if spec.state == PowerState.RUNNING:
            self.hv.start(spec.name)

    def _ensure_volume(self, vm: str, disk: Disk) -> None:
        """Create the disk's volume; a retained volume of an earlier VM is reused (and grown)."""
        name = disk.volume(vm)
        try:
            existing = self.hv.volume(disk.pool, name)
        except NotFoundError:
            self.hv.create_volume(disk.pool, name, capacity=disk.size, fmt=disk.format,
                                  backing=disk.image)
            return
        if existing.capacity < disk.size:
            self.hv.resize_volume(disk.pool, name, disk.size)

    # --- destroy -------------------------------------------------------------------------------

    def _destroy(self, vm: LiveVM) -> None:
        if vm.running:
            self._stop(vm.name, vm.config.shutdown_timeout)
        self.hv.undefine(vm.name)
        for disk in vm.config.disks:
            if disk.reclaim == "delete":
                with contextlib.suppress(NotFoundError):
                    self.hv.delete_volume(disk.pool, disk.volume(vm.name))

    def _stop(self, name: str, timeout: float) -> None:
        """Graceful ACPI shutdown; forced power-off once ``timeout`` seconds have passed."""
        try:
            self.hv.shutdown(name)
        except ReconcilerError as exc:
            log.warning("graceful shutdown refused", vm=name, error=str(exc))
        deadline = self.settings.clock() + timeout
        while self.settings.clock() < deadline:
            if not self.hv.domain_state(name)[0]:
                return
            time.sleep(0.2)
        log.info("forcing power-off after shutdown timeout", vm=name, timeout=timeout)
        self.hv.power_off(name)

    # --- update --------------------------------------------------------------------------------

    def _update(self, action: Action) -> list[str]:
        """Persist the new config, then change the running VM. Returns pending-restart causes."""
        assert action.desired and action.live
        want, have = action.desired, action.live
        spec, name = want.spec, want.spec.name
        writes = [c for c in action.changes if c.mode in (Mode.LIVE, Mode.CONFIG, Mode.RESTART)]
        running = have.running
        pending: list[str] = []
        for disk in spec.disks:
            if _has(writes, f"disk {disk.name}", "add"):
                self._ensure_volume(name, disk)
        live_before = domainxml.parse(self.hv.domain_xml(name, inactive=False)) if running else None
        if any(c.field != "state" for c in writes):
            current = self.hv.domain_xml(name)
            self.hv.define(domainxml.edit_config(current, spec, mark=self._mark(want)))
        config_root = domainxml.parse(self.hv.domain_xml(name))
        if _has(writes, "autostart"):
            self.hv.set_autostart(name, spec.autostart)
        for disk in spec.disks:
            if _has(writes, f"disk {disk.name}", "grow"):
                self._grow(name, disk, running=running, live_root=live_before)
        if running and live_before is not None:
            pending += self._hotplug(action, config_root, live_before)
            if not action.restart:
                pending += self._live_resources(action)
        for disk in have.config.disks:
            if _has(writes, f"disk {disk.name}", "remove") and disk.reclaim == "delete":
                self.hv.delete_volume(disk.pool, disk.volume(name))
        wants_running = spec.state == PowerState.RUNNING
        if action.restart:
            self._stop(name, spec.shutdown_timeout)
            self.hv.start(name)
        elif running and not wants_running:
            self._stop(name, spec.shutdown_timeout)
        elif not running and wants_running:
            self.hv.start(name)
        return pending

    def _grow(self, name: str, disk: Disk, *, running: bool, live_root: object) -> None:
        if running and live_root is not None:
            target = domainxml.disk_targets(live_root).get(disk.volume(name))  # type: ignore[arg-type]
            if target:
                self.hv.block_resize(name, target, disk.size)
                return
        self.hv.resize_volume(disk.pool, disk.volume(name), disk.size)

    def _hotplug(self, action: Action, config_root: object, live_root: object) -> list[str]:
        """Attach added disks and NICs to the running VM, detach removed ones."""
        assert action.desired and action.live
        spec, name = action.desired.spec, action.desired.spec.name
        pending = []
        targets = domainxml.disk_targets(config_root)  # type: ignore[arg-type]
        live_volumes = domainxml.disk_targets(live_root)  # type: ignore[arg-type]
        for disk in spec.disks:
            volume = disk.volume(name)
            if volume not in live_volumes and volume in targets:
                self.hv.attach_live(name, domainxml.disk_xml(name, disk, targets[volume]))
        wanted = {d.volume(name) for d in spec.disks}
        for element in live_root.iterfind("devices/disk"):  # type: ignore[attr-defined]
            source = element.find("source")
            volume = source.get("volume") if source is not None else None
            if volume and volume.startswith(f"{name}-") and volume not in wanted:
                try:
                    self.hv.detach_live(name, _xml(element))
                except ReconcilerError as exc:
                    pending.append(f"disk {volume[len(name) + 1:]} not unplugged: {exc}")
        live_nics = tuple(n for n in (domainxml._read_nic(e) for e in
                          live_root.iterfind("devices/interface")) if n)  # type: ignore[attr-defined]
        _, remove, add = domainxml.match_nics(spec.nics, live_nics)
        for nic in add:
            self.hv.attach_live(name, domainxml.nic_xml(nic))
        for nic in remove:
            for element in live_root.iterfind("devices/interface"):  # type: ignore[attr-defined]
                mac = element.find("mac")
                if mac is not None and mac.get("address", "").lower() == nic.mac:
                    try:
                        self.hv.detach_live(name, _xml(element))
                    except ReconcilerError as exc:
                        pending.append(f"nic {nic.mac} not unplugged: {exc}")
        return pending

    def _live_resources(self, action: Action) -> list[str]:
        """vCPUs and memory on the running VM. What the guest does not take up is recorded on
        the running domain (so it is not retried forever) and reported pending restart."""
        assert action.desired and action.live
        spec, have = action.desired.spec, action.live
        name = spec.name
        hold_vcpus = hold_memory = None
        reasons = []
        if _live(action.changes, "vcpus"):
            try:
                self.hv.set_vcpus_live(name, spec.vcpus)
            except ReconcilerError as exc:
                hold_vcpus = spec.vcpus
                reasons.append(f"vcpus {have.live_vcpus} -> {spec.vcpus} not applied live "
                               f"({_short(exc)})")
        if _live(action.changes, "memory"):
            try:
                self.hv.set_memory_live(name, spec.memory)
                if not self._balloon_reached(name, spec.memory):
                    hold_memory = spec.memory
                    reasons.append("memory: the guest has not taken up the balloon target "
                                   "(no balloon driver?)")
            except ReconcilerError as exc:
                hold_memory = spec.memory
                reasons.append(f"memory not applied live ({_short(exc)})")
        if hold_vcpus is not None or hold_memory is not None:
            self.hv.set_hold(name, LiveHold(hold_vcpus, hold_memory, "; ".join(reasons)))
        elif have.hold is not None:
            self.hv.set_hold(name, None)
        return reasons

    def _balloon_reached(self, name: str, target: int) -> bool:
        deadline = self.settings.clock() + self.settings.balloon_wait
        while True:
            root = domainxml.parse(self.hv.domain_xml(name, inactive=False))
            if domainxml._kib(root.find("currentMemory")) == target:
                return True
            if self.settings.clock() >= deadline:
                return False
            time.sleep(0.2)


def _has(changes: list[Change], field: str, note: str | None = None) -> bool:
    return any(c.field == field and (note is None or c.note.startswith(note)) for c in changes)


def _live(changes: tuple[Change, ...], field: str) -> bool:
    return any(c.field == field and c.mode == Mode.LIVE for c in changes)


def _short(exc: Exception) -> str:
    return str(exc).split(": ", 1)[-1]


def _xml(element: object) -> str:
    from lxml import etree

    return etree.tostring(element, encoding="unicode")  # type: ignore[arg-type]


def _blocked_reason(action: Action) -> str:
    if action.reason:
        return action.reason
    refused = [c for c in action.changes if c.mode == Mode.REFUSED]
    return "; ".join(f"{c.field}: {c.note}" for c in refused)


def _pending_result(action: Action, pending: list[str], seconds: float) -> Result:
    causes = list(pending)
    causes += [f"{c.field} {c.old} -> {c.new} needs a restart" for c in action.pending_restart]
    if causes:
        return Result(action.name, action.kind, Outcome.PENDING_RESTART, "; ".join(causes),
                      seconds)
    return Result(action.name, action.kind, Outcome.CONVERGED, "", seconds)
