"""Other tenants on the host: their domains, networks and pools come and go, and the daemon
neither reconciles nor counts anything for them. A domain a manifest names is no tenant's."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Iterator

import daemonproc
import libvirt
import pytest
from conftest import accelerator, run_cli, vm_manifest, write_manifest
from daemonproc import wait_for

daemon_factory = daemonproc.daemon_factory  # the fixture

QUIET = 5.0  # seconds of tenant churn watched


def _domain_xml(conn: libvirt.virConnect, name: str) -> str:
    kind = "kvm" if accelerator(conn) == "kvm" else "qemu"
    return (f"<domain type='{kind}'><name>{name}</name><memory unit='MiB'>64</memory>"
            "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type><bios rebootTimeout='-1'/></os>"
            "<devices/></domain>")


@contextlib.contextmanager
def churn(step: object) -> Iterator[list[int]]:
    """Call ``step(i)`` every 0.2 s in a thread until the block ends; yields the count done."""
    done = [0]
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            step(done[0])  # type: ignore[operator]
            done[0] += 1
            stop.wait(0.2)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield done
    finally:
        stop.set()
        thread.join(10)


def _toggle(dom: libvirt.virDomain) -> None:
    if dom.isActive():
        dom.destroy()
    else:
        dom.create()


def _pending_restart_vm(host, tmp_path, daemon_factory):  # type: ignore[no-untyped-def]
    """A daemon over one running VM that waits for a restart (maxVcpus raised): every
    reconcile finds it pending restart, with nothing to do."""
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}p"
    write_manifest(manifests, "p.yaml", vm_manifest(name, max_vcpus=2))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    write_manifest(manifests, "p.yaml", vm_manifest(name, max_vcpus=3))
    assert wait_for(lambda: daemon.metric('reconciler_managed_vms{status="pending_restart"}')
                    == 1, 10), daemon.output()
    time.sleep(1.0)  # the change's own events and their reconcile settle
    return manifests, name, daemon


def _quiet(daemon) -> tuple[float, float, int]:  # type: ignore[no-untyped-def]
    """Reconcile runs, actions counted, and 'reconciled' log lines so far."""
    logged = sum(1 for e in daemon.events() if e.get("event") == "reconciled")
    return (daemon.metric_sum("reconciler_reconcile_runs_total"),
            daemon.metric_sum("reconciler_actions_total"), logged)


def test_a_tenants_domain_churn_wakes_nothing(host, tmp_path, daemon_factory):
    _, _, daemon = _pending_restart_vm(host, tmp_path, daemon_factory)
    tenant = host.conn.defineXML(_domain_xml(host.conn, f"{host.prefix}tenant"))
    before = _quiet(daemon)
    with churn(lambda _: _toggle(tenant)) as done:
        time.sleep(QUIET)
    assert done[0] >= 2
    assert _quiet(daemon) == before, daemon.output()
    assert daemon.stop() == 0


def test_a_reconcile_with_nothing_to_do_counts_no_action(host, tmp_path, daemon_factory):
    _, _, daemon = _pending_restart_vm(host, tmp_path, daemon_factory)
    runs, actions, logged = _quiet(daemon)
    for _ in range(3):
        daemon.proc.send_signal(signal.SIGHUP)
        assert wait_for(lambda r=runs: daemon.metric_sum("reconciler_reconcile_runs_total")
                        > r, 10)
        runs = daemon.metric_sum("reconciler_reconcile_runs_total")
    assert daemon.metric_sum("reconciler_actions_total") == actions
    assert daemon.metric('reconciler_managed_vms{status="pending_restart"}') == 1
    assert sum(1 for e in daemon.events() if e.get("event") == "reconciled") == logged
    assert daemon.stop() == 0


def test_another_instances_domain_churn_wakes_nothing(host, tmp_path, daemon_factory):
    _, _, daemon = _pending_restart_vm(host, tmp_path, daemon_factory)
    other = tmp_path / "other"
    theirs = f"{host.prefix}theirs"
    write_manifest(other, "t.yaml", vm_manifest(theirs, state="stopped"))
    result = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir",
                     tmp_path / "other-state", other,
                     env={"RECONCILER_INSTANCE": f"other-{host.prefix.rstrip('-')}"})
    assert result.code == 0, result.stdout + result.stderr
    dom = host.domain(theirs)
    time.sleep(1.0)  # the define's event
    before = _quiet(daemon)
    with churn(lambda _: _toggle(dom)) as done:
        time.sleep(QUIET)
    assert done[0] >= 2
    assert _quiet(daemon) == before, daemon.output()
    assert daemon.stop() == 0


def _tenant_network(host, tmp_path):  # type: ignore[no-untyped-def]
    return host.conn.networkLookupByName(host.network())  # an isolated network, started


def _tenant_pool(host, tmp_path):  # type: ignore[no-untyped-def]
    folder = tmp_path / "tenant-pool"
    folder.mkdir()
    pool = host.conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{host.prefix}tpool</name><target><path>{folder}</path>"
        "</target></pool>")
    pool.create()
    return pool


@pytest.mark.parametrize("make", [_tenant_network, _tenant_pool], ids=["network", "pool"])
def test_a_tenants_network_or_pool_churn_wakes_nothing(host, tmp_path, daemon_factory, make):
    _, _, daemon = _pending_restart_vm(host, tmp_path, daemon_factory)
    obj = make(host, tmp_path)

    def step(_: int) -> None:
        if obj.isActive():
            obj.destroy()
        else:
            obj.create()

    before = _quiet(daemon)
    with churn(step) as done:
        time.sleep(QUIET)
    assert done[0] >= 2
    assert _quiet(daemon) == before, daemon.output()
    assert daemon.metric('reconciler_libvirt_events_total{effect="ignored"}') >= 2
    assert daemon.stop() == 0


def test_a_tenants_domain_a_manifest_names_still_wakes_the_daemon(host, tmp_path,
                                                                  daemon_factory):
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}c"
    keep = f"{host.prefix}k"
    host.conn.defineXML(_domain_xml(host.conn, name))  # someone else's, with the name
    write_manifest(manifests, "k.yaml", vm_manifest(keep, state="stopped"))
    write_manifest(manifests, "c.yaml", vm_manifest(name, state="stopped"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()

    def status() -> dict[str, str]:
        doc = json.loads(run_cli("status", "--state-dir", daemon.state_dir, "--format",
                                 "json").stdout)
        return {v["name"]: v["status"] for v in doc["vms"]}

    assert status()[name] == "conflict"
    host.domain(name).undefine()  # the other owner gives the name up: ours is made at once
    assert wait_for(lambda: "reconciler" in host.xml(name, inactive=True), 10), daemon.output()
    assert wait_for(lambda: status()[name] == "in sync", 10)
    assert daemon.stop() == 0


NETWORK = """\
apiVersion: reconciler/v1
kind: Network
metadata:
  name: {name}
spec:
  bridge: {bridge}
"""


def test_a_managed_network_stopped_by_hand_is_started_again_at_once(host, tmp_path,
                                                                    daemon_factory):
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}mnet"
    write_manifest(manifests, "keep.yaml", vm_manifest(f"{host.prefix}k", state="stopped"))
    write_manifest(manifests, "net.yaml", NETWORK.format(
        name=name, bridge=f"rm{host.prefix.strip('-')[1:]}"))
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    net = host.conn.networkLookupByName(name)
    assert net.isActive()
    net.destroy()
    assert wait_for(lambda: host.conn.networkLookupByName(name).isActive(), 10), daemon.output()
    assert daemon.stop() == 0
