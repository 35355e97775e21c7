"""Interrupting `reconciler apply` between two steps, and what the host looks like after.

``apply_stopped`` runs apply as a real process with the test hook RECONCILER_TEST_STOP_AFTER=N:
the executor stops itself (SIGKILL unless told otherwise) right after its Nth step (a call that
changes the host). ``every_step`` runs a change once without interruption (the reference), then
for N = 1, 2, ... on a fresh set of VMs: stopped after step N, then finished by the next apply,
which must exit 0 and leave the host as the reference run did (volumes, definitions, running
devices), with a plan that has nothing to do. It ends when apply runs out of steps before N.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import libvirt
from conftest import without_header, write_manifest
from lxml import etree

RECONCILER = str(Path(sys.executable).with_name("reconciler"))
STOPPED = re.compile(r"RECONCILER_TEST_STOP_AFTER: stopping after step (\d+) \((\w+)\)")

Manifests = Callable[[str], dict[str, str]]  # the iteration's name base -> file -> manifest


def cli(host, command: str, folder: Path, *args: str, instance: str | None = None,  # type: ignore[no-untyped-def]
        stop_after: int | None = None, signal_name: str = "KILL",
        ) -> subprocess.CompletedProcess[str]:
    """`reconciler plan` or `reconciler apply --yes` as a process; with ``stop_after``, stopped
    by the test hook after its ``stop_after``th step."""
    env = {**os.environ}
    if instance is not None:
        env["RECONCILER_INSTANCE"] = instance
    if stop_after is not None:
        env |= {"RECONCILER_TEST_STOP_AFTER": str(stop_after),
                "RECONCILER_TEST_STOP_SIGNAL": signal_name}
    options = ["--yes", "--state-dir", str(folder.parent / "state")] if command == "apply" else []
    started = time.monotonic()
    r = subprocess.run(
        [RECONCILER, command, *options, "--connect", host.uri, *args, str(folder)],
        capture_output=True, text=True, env=env, timeout=120, check=False)
    hook = f"RECONCILER_TEST_STOP_AFTER={stop_after} " if stop_after is not None else ""
    print(f"$ {hook}{command} {' '.join(args)} {folder.parent.name} -> {r.returncode} in "
          f"{time.monotonic() - started:.1f}s\n{r.stdout}{r.stderr}")
    return r


def apply_stopped(host, folder: Path, after: int, *, signal_name: str = "KILL",  # type: ignore[no-untyped-def]
                  extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    """`reconciler apply --yes` as a process, stopped after its ``after``th step."""
    return cli(host, "apply", folder, *extra, stop_after=after, signal_name=signal_name)


def killed(r: subprocess.CompletedProcess[str]) -> str | None:
    """The step the hook stopped the process after (None: apply ran out of steps first)."""
    if r.returncode == -signal.SIGKILL:
        found = STOPPED.search(r.stderr)
        assert found, r.stderr
        return found.group(2)
    assert r.returncode in (0, 1), r.stdout + r.stderr
    assert "Traceback" not in r.stderr, r.stderr
    assert not STOPPED.search(r.stderr), r.stderr
    return None


def _norm(text: str, base: str) -> str:
    text = re.sub(r"52:54:00(:[0-9a-f]{2}){3}", "MAC", text.replace(base, "VM"))
    return re.sub(r" +", " ", text)


def _conn(host) -> libvirt.virConnect:  # type: ignore[no-untyped-def]
    """The connection of ``host`` (a conftest.Host), or ``host`` itself (a connection)."""
    return getattr(host, "conn", host)


def volumes(host, start: str) -> dict[str, int]:  # type: ignore[no-untyped-def]
    """pool/volume -> capacity of every volume whose name starts with ``start``."""
    out = {}
    for pool in _conn(host).listAllStoragePools(0):
        if not pool.isActive():
            continue
        for attempt in range(5):  # another tenant's volume changing fails a refresh
            try:
                pool.refresh(0)
                break
            except libvirt.libvirtError:
                if attempt == 4:
                    raise
                time.sleep(0.2)
        for vol in pool.listAllVolumes(0):
            if vol.name().startswith(start):
                out[f"{pool.name()}/{vol.name()}"] = vol.info()[1]
    return out


def _devices(root: etree._Element) -> list[str]:
    out = []
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        where = "-" if source is None else f"{source.get('pool')}/{source.get('volume')}"
        out.append(f"{disk.get('device')} {where} {disk.find('target').get('bus')}")
    for nic in root.iterfind("devices/interface"):
        source = nic.find("source")
        out.append(f"nic {source.get('network') or source.get('bridge')}")
    return sorted(out)


def _domain(dom: libvirt.virDomain, base: str) -> dict[str, object]:
    config = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    seen: dict[str, object] = {
        "state": "running" if dom.isActive() else "shut off",
        "autostart": dom.autostart(),
        "config": [_norm(d, base) for d in _devices(config)],
        "vcpus": (config.find("vcpu").get("current"), config.find("vcpu").text),
        "memory": (config.findtext("currentMemory"), config.findtext("memory")),
    }
    if dom.isActive():
        live = etree.fromstring(dom.XMLDesc(0).encode())
        seen["live"] = [_norm(d, base) for d in _devices(live)]
        seen["live vcpus"] = live.find("vcpu").get("current")
    return seen


def state_of(host, base: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    """What a user sees of the domains and volumes whose names start with ``base``, with
    ``base`` replaced by "VM" (so that two iterations' hosts compare equal)."""
    conn = _conn(host)
    doms = {_norm(d.name(), base): _domain(d, base) for d in conn.listAllDomains(0)
            if d.name().startswith(base)}
    nets = {_norm(n.name(), base): (bool(n.isActive()), bool(n.autostart()))
            for n in conn.listAllNetworks(0) if n.name().startswith(base)}
    return {"domains": doms, "networks": nets,
            "volumes": {_norm(k, base): v for k, v in volumes(host, base).items()}}


def remove(host, base: str) -> None:  # type: ignore[no-untyped-def]
    """Take one iteration's domains, volumes and networks away."""
    conn = _conn(host)
    for dom in conn.listAllDomains(0):
        if dom.name().startswith(base):
            if dom.isActive():
                dom.destroy()
            dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                              | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
    for key in volumes(host, base):
        pool, volume = key.split("/", 1)
        conn.storagePoolLookupByName(pool).storageVolLookupByName(volume).delete(0)
    for net in conn.listAllNetworks(0):
        if net.name().startswith(base):
            if net.isActive():
                net.destroy()
            net.undefine()


def _write(folder: Path, files: dict[str, str]) -> None:
    for old in folder.glob("*.yaml"):
        old.unlink()
    for name, text in files.items():
        write_manifest(folder, name, text)


def _plan_text(host, folder: Path, base: str, instance: str) -> str:  # type: ignore[no-untyped-def]
    p = cli(host, "plan", folder, "--detailed-exitcode", instance=instance)
    assert p.returncode == 0, p.stdout + p.stderr  # nothing left that apply would do
    return _norm(without_header(p.stdout), base)  # the header names this run's folder


class _Scenario:
    """One change, interrupted after step N on its own VMs (named from ``base``), as its own
    reconciler instance with its own state directory: iterations run side by side."""

    def __init__(self, host, tmp_path: Path, tag: str, before: Manifests,  # type: ignore[no-untyped-def]
                 after: Manifests, finish: Manifests | None, extra: tuple[str, ...]) -> None:
        self.host, self.tmp_path, self.tag = host, tmp_path, tag
        self.before, self.after, self.finish = before, after, finish
        self.args = ("--allow-empty", "--parallel", "1", *extra)

    def apply(self, folder: Path, instance: str, files: dict[str, str] | None = None,
              stop_after: int | None = None) -> subprocess.CompletedProcess[str]:
        if files is not None:
            _write(folder, files)
        return cli(self.host, "apply", folder, *self.args, instance=instance,
                   stop_after=stop_after)

    def run(self, n: int) -> tuple[str | None, dict[str, object], str]:
        """(the step stopped after, or None: not stopped; the host after the next run (the
        reference run: after the run itself); the plan then). Run again, on fresh VMs, when
        libvirtd restarted meanwhile (other test suites on a shared machine restart it)."""
        for attempt in "abc":
            started = _libvirtd()
            conn = _open()
            try:
                return self._run(n, f"{n:02d}{attempt}", conn)
            except Exception:
                if _libvirtd() == started and conn.isAlive():
                    raise
                print(f"libvirtd restarted during iteration {n}: running it again")
            finally:
                with contextlib.suppress(libvirt.libvirtError):
                    conn.close()
        raise AssertionError(f"libvirtd kept restarting during iteration {n}")

    def _run(self, n: int, label: str, conn: libvirt.virConnect,
             ) -> tuple[str | None, dict[str, object], str]:
        base = f"{self.host.prefix}{self.tag}{label}"
        instance = f"test-{base}"
        folder = self.tmp_path / f"{self.tag}{label}" / "manifests"
        folder.mkdir(parents=True)
        try:
            if self.before(base):
                assert self.apply(folder, instance, self.before(base)).returncode == 0
            r = self.apply(folder, instance, self.after(base), stop_after=n or None)
            step = killed(r) if n else None
            if step is None:
                assert r.returncode == 0, r.stdout + r.stderr
            if self.finish is not None or step is not None:
                r = self.apply(folder, instance,
                               self.finish(base) if self.finish is not None else None)
                assert r.returncode == 0, r.stdout + r.stderr
                results = [line for line in r.stdout.splitlines() if line.startswith(base)]
                assert not any(" failed" in line or "not converged" in line
                               for line in results), r.stdout
            return step, state_of(conn, base), _plan_text(self.host, folder, base, instance)
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                cleaner = _open()
                try:
                    remove(cleaner, base)
                finally:
                    cleaner.close()


def _libvirtd() -> str:
    """libvirtd's pid (it changes when someone restarts libvirtd)."""
    try:
        return Path("/run/libvirtd.pid").read_text().strip()
    except OSError:
        return ""


def _open(timeout: float = 60.0) -> libvirt.virConnect:
    """A connection of its own to the real libvirtd, waiting while it restarts."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return libvirt.open("qemu:///system")
        except libvirt.libvirtError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1)


def every_step(host, tmp_path: Path, tag: str, before: Manifests, after: Manifests, *,  # type: ignore[no-untyped-def]
               extra: tuple[str, ...] = (), finish: Manifests | None = None,
               expect: Callable[[str, dict[str, object]], dict[str, object]] | None = None,
               workers: int = 4) -> list[str]:
    """Apply ``before``, then apply ``after`` stopped after step N, for N = 0 (not stopped:
    the reference), 1, 2, ... until apply runs out of steps; after each stop the next apply
    (of ``finish``, ``after`` by default) must exit 0 with nothing failed and leave the host as
    the reference did (or as ``expect(step stopped after, reference)`` says), and a plan must
    then have nothing to do (and read as the reference's). ``workers`` iterations run at once.
    Returns the steps the runs were stopped after, in order."""
    scenario = _Scenario(host, tmp_path, tag, before, after, finish, extra)
    _, reference, reference_plan = scenario.run(0)
    stopped: list[str] = []
    with ThreadPoolExecutor(workers) as pool:
        for first in range(1, 60, workers):
            batch = list(pool.map(scenario.run, range(first, first + workers)))
            for n, (step, seen, plan_text) in enumerate(batch, first):
                if step is None:  # ran out of steps: as the reference
                    assert seen == reference
                    return stopped
                stopped.append(step)
                wanted = expect(step, reference) if expect else reference
                assert seen == wanted, f"stopped after step {n} ({step})"
                if not expect:
                    assert plan_text == reference_plan, f"stopped after step {n} ({step})"
    raise AssertionError("apply never ran out of steps")
