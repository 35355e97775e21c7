"""Carry out a plan on libvirt: one worker per VM, bounded; one VM's failure never stops others."""

from __future__ import annotations

import contextlib
import copy
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import structlog

from reconciler.adapters.libvirt import Libvirt
from reconciler.apply import infra as infra_apply
from reconciler.core import cloudinit
from reconciler.core.errors import NotFoundError, PermanentError, ReconcilerError
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import (
    CloudInit,
    DesiredVM,
    Disk,
    LiveHold,
    LiveVM,
    Nic,
    PowerState,
    VMSpec,
)
from reconciler.core.plan import Action, Change, Kind, Mode, Plan
from reconciler.core.result import Outcome, Result
from reconciler.core.xml import domain as domainxml

log = structlog.get_logger("reconciler.apply")

_BALLOON_NOT_TAKEN = "memory: the guest has not taken up the balloon target (no balloon driver?)"


@dataclass
class Settings:
    parallel: int = 4
    balloon_wait: float = 3.0  # how long a guest gets to take up a balloon target
    commit: str | None = None
    instance: str = "default"
    clock: Callable[[], float] = field(default=time.monotonic)
    stop: Callable[[], bool] | None = None  # True: start no further action (shutting down)


def execute(plan: Plan, hv: Libvirt, settings: Settings | None = None) -> tuple[Result, ...]:
    """Carry out every action of ``plan``; results in the plan's order."""
    settings = settings or Settings()
    runner = _Runner(hv, settings)
    # Pools and networks exist before the VMs that use them and go after them.
    phases = (
        [a for a in plan.actions if a.resource != "vm" and a.kind != Kind.DESTROY],
        [a for a in plan.actions if a.resource == "vm"],
        [a for a in plan.actions if a.resource != "vm" and a.kind == Kind.DESTROY],
    )
    results: dict[int, Result] = {}
    with ThreadPoolExecutor(max_workers=max(1, settings.parallel)) as pool:
        for number, phase in enumerate(phases):
            if number == 2 and any(not r.ok and r.kind == Kind.DESTROY for r in results.values()):
                for action in phase:
                    results[id(action)] = Result(action.label, action.kind, Outcome.BLOCKED,
                                                 "not removed: a VM destroy failed this run")
                break
            for action, result in zip(phase, pool.map(runner.run, phase), strict=True):
                results[id(action)] = result
    return tuple(results[id(a)] for a in plan.actions)


class _Runner:
    def __init__(self, hv: Libvirt, settings: Settings) -> None:
        self.hv = hv
        self.settings = settings

    def run(self, action: Action) -> Result:
        started = self.settings.clock()
        if self.settings.stop is not None and self.settings.stop():
            return Result(action.label, action.kind, Outcome.FAILED, "not started: shutting down",
                          retryable=True)
        if action.kind == Kind.BLOCKED or action.refused:
            return Result(action.label, action.kind, Outcome.BLOCKED, _blocked_reason(action))
        if not action.writes:
            return _pending_result(action, [], 0.0)
        try:
            if action.resource != "vm":
                infra_apply.carry_out(action, self.hv, instance=self.settings.instance,
                                      commit=self.settings.commit)
                pending = []
            elif action.kind == Kind.CREATE:
                assert action.desired
                pending = self._create(action.desired)
            elif action.kind == Kind.DESTROY:
                assert action.live
                self._destroy(action.live)
                pending = []
            elif any(c.field == "adopt" for c in action.changes):
                assert action.desired
                self.hv.set_mark(action.name, self._mark(action.desired))  # nothing else
                pending = []
            else:
                pending = self._update(action)
        except Exception as exc:  # one VM's surprise must not stop the others
            if isinstance(exc, ReconcilerError):
                error, retryable = str(exc), exc.retryable
            else:
                log.exception("action crashed", vm=action.label)
                error, retryable = f"internal error: {exc!r}", False
            seconds = self.settings.clock() - started
            log.error("action failed", vm=action.label, action=str(action.kind),
                      error=error, seconds=round(seconds, 3), retryable=retryable)
            return Result(action.label, action.kind, Outcome.FAILED, error, seconds, retryable)
        seconds = self.settings.clock() - started
        result = _pending_result(action, pending, seconds)
        log.info("action done", vm=action.name, action=str(action.kind),
                 result=str(result.outcome), seconds=round(seconds, 3))
        return result

    def _mark(self, want: DesiredVM) -> Mark:
        return Mark(want.source.relative, want.spec_hash, self.settings.commit, want.applied,
                    self.settings.instance)

    # --- create --------------------------------------------------------------------------------

    def _create(self, want: DesiredVM) -> list[str]:
        """Volumes, define, autostart, start. Returns pending causes (a balloon not taken up)."""
        spec = want.spec
        for disk in spec.disks:
            self._ensure_volume(spec.name, disk)
        if spec.cloud_init:
            self._upload_seed(spec)
        self.hv.define(domainxml.build_domain(spec, domain_type=self.hv.domain_type,
                                              mark=self._mark(want)))
        if spec.autostart:
            self.hv.set_autostart(spec.name, True)
        if spec.state == PowerState.RUNNING:
            return self._start(spec)
        return []

    def _start(self, spec: VMSpec) -> list[str]:
        """Start the VM. QEMU boots with all of maxMemory and asks the guest to balloon down to
        memory; a guest that has not done so (yet, or ever: no balloon driver) is recorded on the
        running domain, so the next plan reports it pending instead of ballooning again."""
        self.hv.start(spec.name)
        if spec.memory >= spec.max_memory:
            return []
        root = domainxml.parse(self.hv.domain_xml(spec.name, inactive=False))
        live = domainxml._kib(root.find("currentMemory"))
        if live == spec.memory:
            return []
        reason = _BALLOON_NOT_TAKEN
        self.hv.set_hold(spec.name, LiveHold(None, spec.memory, reason, seen_memory=live))
        return [reason]

    def _ensure_volume(self, vm: str, disk: Disk) -> None:
        """Create the disk's volume; a retained volume of an earlier VM is reused (and grown)."""
        name = disk.volume(vm)
        try:
            existing = self.hv.volume(disk.pool, name)
        except NotFoundError:
            if disk.image:
                users = self.hv.domains_using(disk.pool, disk.image)
                if users:  # another VM's live disk: its data would leak, its writes corrupt
                    raise PermanentError(f"image {disk.image} is a disk of {', '.join(users)}; "
                                         "an image must be a volume no VM uses") from None
            self.hv.create_volume(disk.pool, name, capacity=disk.size, fmt=disk.format,
                                  backing=disk.image)
            return
        users = [d for d in self.hv.domains_using(disk.pool, name) if d != vm]
        if users:
            raise PermanentError(f"volume {name} in pool {disk.pool} already exists and is a disk "
                                 f"of {', '.join(users)}; rename the disk or the VM")
        if existing.format and existing.format != disk.format:
            raise PermanentError(f"volume {name} in pool {disk.pool} already exists as "
                                 f"{existing.format}, not {disk.format}; rename the disk, or "
                                 "remove the old volume if it is not needed")
        if existing.capacity > disk.size:
            raise PermanentError(f"volume {name} in pool {disk.pool} already exists and is "
                                 f"larger ({existing.capacity} bytes) than the manifest's "
                                 f"{disk.size}; raise the size to reuse it, or rename the disk")
        log.info("reusing an existing volume", vm=vm, volume=name, pool=disk.pool)
        if existing.capacity < disk.size:
            self.hv.resize_volume(disk.pool, name, disk.size)

    def _delete_volume(self, vm: str, pool: str, name: str) -> None:
        """Delete a volume per ``reclaim: delete`` unless another domain still uses it."""
        users = [d for d in self.hv.domains_using(pool, name) if d != vm]
        if users:
            log.warning("volume kept: another domain uses it", vm=vm, volume=name,
                        users=users)
            return
        with contextlib.suppress(NotFoundError):
            self.hv.delete_volume(pool, name)

    def _upload_seed(self, spec: VMSpec) -> None:
        """Build the cloud-init seed ISO and upload it as the raw volume ``<vm>-cidata``."""
        seed = spec.cloud_init
        assert seed is not None
        image = cloudinit.seed_iso(cloudinit.files(spec.name, seed))
        volume = cloudinit.seed_volume(spec.name)
        users = [d for d in self.hv.domains_using(seed.pool, volume) if d != spec.name]
        if users:  # replacing it would destroy another VM's disk
            raise PermanentError(f"volume {volume} in pool {seed.pool} is a disk of "
                                 f"{', '.join(users)}; it cannot become {spec.name}'s "
                                 "cloud-init seed: rename the VM or that disk")
        self.hv.upload_volume(seed.pool, volume, image)
        # The hash only: user data is never logged.
        log.info("cloud-init seed uploaded", vm=spec.name, volume=volume, pool=seed.pool,
                 digest=seed.digest, size=len(image))

    def _remove_seed(self, name: str, seed: CloudInit) -> None:
        """The seed is derived data: it goes with the VM or with its cloudInit."""
        self._delete_volume(name, seed.pool, cloudinit.seed_volume(name))

    # --- destroy -------------------------------------------------------------------------------

    def _destroy(self, vm: LiveVM) -> None:
        if vm.running:
            self._stop(vm.name, vm.config.shutdown_timeout)
        self.hv.undefine(vm.name)
        for disk in vm.config.disks:
            if disk.reclaim == "delete":
                with contextlib.suppress(NotFoundError):
                    self._delete_volume(vm.name, disk.pool, disk.volume(vm.name))
        if vm.config.cloud_init:
            self._remove_seed(vm.name, vm.config.cloud_init)

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
        if spec.cloud_init and (_has(writes, "cloudInit") or _has(writes, "cloudInit pool")):
            self._upload_seed(spec)
        live_before = domainxml.parse(self.hv.domain_xml(name, inactive=False)) if running else None
        # Grow before the new mark records the new sizes: a recorded size is trusted later (a
        # stopped VM's volume whose manifest size is the recorded one is not read again).
        for disk in spec.disks:
            if _has(writes, f"disk {disk.name}", "grow"):
                self._grow(name, disk, running=running, live_root=live_before)
        if any(c.field != "state" for c in writes):
            current = self.hv.domain_xml(name)
            self.hv.define(domainxml.edit_config(current, spec, mark=self._mark(want)))
        config_root = domainxml.parse(self.hv.domain_xml(name))
        if _has(writes, "autostart"):
            self.hv.set_autostart(name, spec.autostart)
        if running and live_before is not None:
            pending += self._hotplug(action, config_root, live_before)
            if not action.restart:
                pending += self._live_resources(action)
        still_attached: set[str] = set()
        if running:
            after = domainxml.parse(self.hv.domain_xml(name, inactive=False))
            still_attached = set(domainxml.disk_targets(after))
        for disk in have.config.disks:
            if (_has(writes, f"disk {disk.name}", "remove") and disk.reclaim == "delete"
                    and disk.volume(name) not in still_attached):
                self._delete_volume(name, disk.pool, disk.volume(name))
        old_seed = have.config.cloud_init
        if old_seed and _has(writes, "cloudInit", "remove"):
            if running and live_before is not None:
                pending += self._eject_seed(name, live_before)
            self._remove_seed(name, old_seed)
        elif old_seed and spec.cloud_init and _has(writes, "cloudInit pool"):
            self._remove_seed(name, old_seed)
        wants_running = spec.state == PowerState.RUNNING
        if action.restart:
            self._stop(name, spec.shutdown_timeout)
            pending = self._start(spec)  # a fresh boot: earlier live causes are gone
        elif running and not wants_running:
            self._stop(name, spec.shutdown_timeout)
        elif not running and wants_running:
            pending += self._start(spec)
        return pending

    def _eject_seed(self, name: str, live_root: object) -> list[str]:
        """A SATA CD-ROM cannot be unplugged live: its medium is taken out instead."""
        ejected = domainxml.seed_ejected_xml(live_root, name)  # type: ignore[arg-type]
        if ejected is None:
            return []
        try:
            self.hv.eject_live(name, ejected)
        except ReconcilerError as exc:
            return [f"cloudInit seed not ejected from the running VM: {_short(exc)}"]
        return []

    def _grow(self, name: str, disk: Disk, *, running: bool, live_root: object) -> None:
        current = self.hv.volume(disk.pool, disk.volume(name)).capacity
        if disk.size < current:  # grown by hand since the plan: growing "to" it would shrink
            raise PermanentError(f"disk {disk.name}: the volume is now {current} bytes, larger "
                                 f"than {disk.size}; refusing to shrink it")
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
        detached: list[tuple[str, str]] = []  # (what, how to find it in the live XML)
        for element in live_root.iterfind("devices/disk"):  # type: ignore[attr-defined]
            source = element.find("source")
            volume = source.get("volume") if source is not None else None
            if (volume and volume.startswith(f"{name}-") and volume not in wanted
                    and element.get("device", "disk") == "disk"):  # the seed CD-ROM stays
                try:
                    self.hv.detach_live(name, _xml(element))
                    detached.append((f"disk {volume[len(name) + 1:]}",
                                     f"devices/disk/source[@volume='{volume}']"))
                except ReconcilerError as exc:
                    pending.append(f"disk {volume[len(name) + 1:]} not unplugged: {exc}")
        live_nics = tuple(n for n in (domainxml._read_nic(e) for e in
                          live_root.iterfind("devices/interface")) if n)  # type: ignore[attr-defined]
        _, remove, add = domainxml.match_nics(spec.nics, live_nics)
        live_macs = {n.mac for n in live_nics}
        used: set[str] = set()
        for nic in add:
            self.hv.attach_live(name, _nic_from_config(config_root, nic, live_macs | used, used))
        for nic in remove:
            for element in live_root.iterfind("devices/interface"):  # type: ignore[attr-defined]
                mac = element.find("mac")
                if mac is not None and mac.get("address", "").lower() == nic.mac:
                    try:
                        self.hv.detach_live(name, _xml(element))
                        detached.append((f"nic {nic.mac}",
                                         f"devices/interface/mac[@address='{nic.mac}']"))
                    except ReconcilerError as exc:
                        pending.append(f"nic {nic.mac} not unplugged: {exc}")
        if detached:
            # libvirt gives the guest a few seconds to release a device, then returns anyway.
            after = domainxml.parse(self.hv.domain_xml(name, inactive=False))
            pending += [f"{what} not unplugged: the guest has not released it"
                        for what, path in detached if after.find(path) is not None]
        return pending

    def _live_resources(self, action: Action) -> list[str]:
        """vCPUs and memory on the running VM. What the guest does not take up is recorded on
        the running domain (so it is not retried forever) and reported pending restart."""
        assert action.desired and action.live
        spec, have = action.desired.spec, action.live
        name = spec.name
        old = have.hold
        # What an earlier run recorded, and this run neither changes nor retries, still holds.
        held: dict[str, int | None] = {
            "vcpus": old.vcpus if old and old.vcpus == spec.vcpus else None,
            "memory": old.memory if old and old.memory == spec.memory else None,
        }
        seen: dict[str, int | None] = {
            "vcpus": old.seen_vcpus if held["vcpus"] is not None and old else None,
            "memory": old.seen_memory if held["memory"] is not None and old else None,
        }
        reasons: list[str] = []
        if _live(action.changes, "vcpus"):
            held["vcpus"] = None
            try:
                self.hv.set_vcpus_live(name, spec.vcpus)
            except ReconcilerError as exc:
                held["vcpus"], seen["vcpus"] = spec.vcpus, self._live_value(name, "vcpus")
                reasons.append(f"vcpus {have.live_vcpus} -> {spec.vcpus} not applied live "
                               f"({_short(exc)})")
        if _live(action.changes, "memory"):
            held["memory"] = None
            try:
                self.hv.set_memory_live(name, spec.memory)
                if not self._balloon_reached(name, spec.memory):
                    held["memory"], seen["memory"] = spec.memory, self._live_value(name, "memory")
                    reasons.append(_BALLOON_NOT_TAKEN)
            except ReconcilerError as exc:
                held["memory"], seen["memory"] = spec.memory, self._live_value(name, "memory")
                reasons.append(f"memory not applied live ({_short(exc)})")
        touched = {f for f in ("vcpus", "memory") if _live(action.changes, f)}
        kept = [r for r in (old.reason.split("; ") if old and old.reason else [])
                if (field := r.split(" ", 1)[0].rstrip(":")) not in touched
                and held.get(field) is not None]
        if held["vcpus"] is not None or held["memory"] is not None:
            hold = LiveHold(held["vcpus"], held["memory"], "; ".join(kept + reasons),
                            seen["vcpus"], seen["memory"])
            if hold != old:
                self.hv.set_hold(name, hold)
        elif old is not None:
            self.hv.set_hold(name, None)
        return reasons

    def _live_value(self, name: str, field: str) -> int | None:
        """The running VM's vCPU count or memory (bytes), as libvirt reports it now."""
        root = domainxml.parse(self.hv.domain_xml(name, inactive=False))
        if field == "memory":
            return domainxml._kib(root.find("currentMemory")) or None
        vcpu = root.find("vcpu")
        return int(vcpu.get("current", vcpu.text)) if vcpu is not None else None

    def _balloon_reached(self, name: str, target: int) -> bool:
        deadline = self.settings.clock() + self.settings.balloon_wait
        while True:
            root = domainxml.parse(self.hv.domain_xml(name, inactive=False))
            if domainxml._kib(root.find("currentMemory")) == target:
                return True
            if self.settings.clock() >= deadline:
                return False
            time.sleep(0.2)


def _nic_from_config(config_root: object, nic: Nic, taken: set[str | None],
                     used: set[str]) -> str:
    """The NIC to hot-plug, as the persistent config has it: with the MAC libvirt gave it there
    (without one, the live NIC would get another MAC than the VM has after its next start)."""
    for element in config_root.iterfind("devices/interface"):  # type: ignore[attr-defined]
        found = domainxml._read_nic(element)
        if found is None or not found.mac or found.mac in taken:
            continue
        if (found.mac == nic.mac if nic.mac else domainxml._same_nic(found, nic)):
            used.add(found.mac)
            plug = copy.deepcopy(element)
            for address in plug.findall("address"):
                plug.remove(address)  # libvirt picks a free slot on the running VM
            return _xml(plug)
    return domainxml.nic_xml(nic)


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
    causes += [f"{c.field} {c.old} -> {c.new} needs a restart" + (f" ({c.note})" if c.note else "")
               for c in action.pending_restart]
    if causes:
        return Result(action.label, action.kind, Outcome.PENDING_RESTART, "; ".join(causes),
                      seconds)
    return Result(action.label, action.kind, Outcome.CONVERGED, "", seconds)
