"""`reconciler run` as a subprocess against the real libvirtd."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import daemonproc
import libvirt
import pytest
from conftest import run_cli, suspended, vm_manifest, write_manifest
from daemonproc import RECONCILER, wait_for

daemon_factory = daemonproc.daemon_factory  # the fixture

REPO = Path(__file__).resolve().parents[2]


def _vcpus_live(host, name: str) -> int:
    return host.domain(name).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE)


def test_file_changes_create_resize_and_destroy(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    name = f"{host.prefix}w"
    # A second VM keeps the manifest set non-empty (an empty set never prunes).
    write_manifest(manifests, "keep.yaml", vm_manifest(f"{host.prefix}k", state="stopped"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()

    write_manifest(manifests, "w.yaml", vm_manifest(name, vcpus=1, max_vcpus=2))
    assert wait_for(lambda: host.domain(name).isActive(), 10), daemon.output()
    dom_id = host.domain(name).ID()

    write_manifest(manifests, "w.yaml", vm_manifest(name, vcpus=2, max_vcpus=2))
    assert wait_for(lambda: _vcpus_live(host, name) == 2, 10), daemon.output()
    assert host.domain(name).ID() == dom_id  # changed live, not restarted

    (manifests / "w.yaml").unlink()
    assert wait_for(lambda: not host.exists(name), 15), daemon.output()
    assert host.exists(f"{host.prefix}k")
    assert daemon.stop() == 0


def _one_running_vm(host, tmp_path, daemon_factory):  # type: ignore[no-untyped-def]
    """A daemon over one manifest, its VM running: (manifests, VM name, daemon)."""
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}d"
    write_manifest(manifests, "d.yaml", vm_manifest(name))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    assert host.domain(name).isActive()
    return manifests, name, daemon


def test_virsh_destroy_is_repaired(host, tmp_path, daemon_factory):
    _, name, daemon = _one_running_vm(host, tmp_path, daemon_factory)
    subprocess.run(["virsh", "-c", host.uri, "destroy", name], check=True, capture_output=True)
    assert wait_for(lambda: host.domain(name).isActive(), 5), daemon.output()
    assert wait_for(lambda: daemon.metric("reconciler_drift_repairs_total") >= 1, 5)
    assert daemon.stop() == 0


def test_a_suspended_vm_is_not_repaired_until_resumed(host, tmp_path, daemon_factory):
    manifests, name, daemon = _one_running_vm(host, tmp_path, daemon_factory)
    runs = daemon.metric("reconciler_reconcile_runs_total")
    def status() -> list[tuple[str, str]]:
        doc = json.loads(run_cli("status", "--state-dir", daemon.state_dir, "--format",
                                 "json").stdout)
        return [(v["name"], v["status"]) for v in doc["vms"]]

    write_manifest(manifests, "d.yaml", suspended(vm_manifest(name)))
    assert wait_for(lambda: daemon.metric("reconciler_reconcile_runs_total") > runs, 10)
    assert wait_for(lambda: status() == [(name, "suspended")], 5), daemon.output()  # in sync
    assert daemon.metric('reconciler_managed_vms{status="suspended"}') == 1
    runs = daemon.metric("reconciler_reconcile_runs_total")
    subprocess.run(["virsh", "-c", host.uri, "destroy", name], check=True, capture_output=True)
    assert wait_for(lambda: daemon.metric("reconciler_reconcile_runs_total") > runs, 10)
    assert status() == [(name, "suspended")]
    assert not wait_for(lambda: host.domain(name).isActive(), 2)  # left off
    assert daemon.metric("reconciler_drift_repairs_total") == 0

    write_manifest(manifests, "d.yaml", vm_manifest(name))  # resumed
    assert wait_for(lambda: host.domain(name).isActive(), 10), daemon.output()
    assert daemon.stop() == 0


def test_second_writer_is_refused_with_the_holder_named(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}l", state="stopped"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    result = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir",
                     daemon.state_dir, manifests)
    assert result.code == 1
    assert f"pid {daemon.proc.pid} (run)" in result.stderr
    assert daemon.stop() == 0


def test_sigterm_exits_0_with_state_and_notify_messages(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}s"
    write_manifest(manifests, "s.yaml", vm_manifest(name, state="stopped"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    assert daemon.stop(signal.SIGTERM) == 0

    state = json.loads(run_cli("status", "--state-dir", daemon.state_dir, "--format",
                               "json").stdout)
    assert [(vm["name"], vm["status"]) for vm in state["vms"]] == [(name, "in sync")]
    assert any(m.startswith("READY=1") for m in daemon.messages)
    assert any("STATUS=" in m for m in daemon.messages)
    assert any("STOPPING=1" in m for m in daemon.messages)
    status = run_cli("status", "--state-dir", daemon.state_dir)
    assert status.code == 0
    assert f"{name}  in sync" in status.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_verifies(tmp_path):
    unit = (REPO / "systemd" / "reconciler.service").read_text()
    # verify checks that ExecStart exists: point it at this checkout's reconciler.
    local = tmp_path / "reconciler.service"
    local.write_text(unit.replace("/usr/local/bin/reconciler", RECONCILER))
    result = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stderr
    assert "Type=notify" in unit and "WatchdogSec=" in unit
    for setting in ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes",
                    "PrivateTmp=yes", "ReadWritePaths=/var/lib/reconciler",
                    "SyslogLevelPrefix=yes"):
        assert setting in unit


def _first_libvirtd() -> list[int]:
    """The first host's libvirtd: the one in this process's mount namespace (the second host,
    scripts/second-host, runs its own in another, which these tests leave alone)."""
    mine = os.readlink("/proc/self/ns/mnt")
    found = subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True, text=True).stdout
    pids = []
    for pid in found.split():
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/ns/mnt") == mine:
                pids.append(int(pid))
    return pids


def _libvirtd_running() -> bool:
    return bool(_first_libvirtd())


def _start_libvirtd() -> None:
    if not _libvirtd_running():
        subprocess.run(["libvirtd", "-d"], check=True)
    assert wait_for(lambda: subprocess.run(["virsh", "-c", "qemu:///system", "version"],
                                           capture_output=True).returncode == 0, 20)


def test_libvirtd_outage_is_survived(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    first, second = f"{host.prefix}o1", f"{host.prefix}o2"
    write_manifest(manifests, "o1.yaml", vm_manifest(first, state="stopped"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    try:
        for pid in _first_libvirtd():
            os.kill(pid, signal.SIGTERM)
        assert wait_for(lambda: not _libvirtd_running(), 15)
        write_manifest(manifests, "o2.yaml", vm_manifest(second, state="stopped"))
        assert wait_for(lambda: "libvirt unreachable" in daemon.output(), 10), daemon.output()
        assert daemon.proc.poll() is None  # still alive
    finally:
        _start_libvirtd()
    host.reconnect()
    assert wait_for(lambda: host.exists(second), 40), daemon.output()
    assert daemon.proc.poll() is None
    assert daemon.stop() == 0


def test_durations_are_spelled_as_in_manifests(tmp_path, daemon_factory):
    """Issue 13.6: `--interval 30s` was refused ("'30s' is not a valid float"). Durations take
    the manifests' spelling; a plain number is still seconds; anything else is refused."""
    manifests = tmp_path / "m"
    manifests.mkdir()
    daemon = daemon_factory(manifests, "test:///default",
                            args=("--interval", "5m", "--debounce", "2s"))
    daemon.wait_ready()
    (started,) = [e for e in daemon.events() if e.get("event") == "started"]
    assert (started["interval"], started["debounce"]) == (300, 2), daemon.output()
    r = run_cli("run", "--interval", "soon", str(manifests))
    assert r.code == 2
    assert "'soon' is not a duration" in r.stderr
