"""Health and waiting, on the real libvirtd: `status --wait` returns once every VM is in sync
and healthy (running as asked, its guest agent connected when asked for), and at its timeout
says what is not, exit 1."""

from __future__ import annotations

import time

from conftest import apply, run_cli, vm_manifest, write_manifest


def _wait(host, m, timeout: str = "4s"):  # type: ignore[no-untyped-def]
    started = time.monotonic()
    r = run_cli("status", "--wait", "--timeout", timeout, "--connect", host.uri,
                "--manifests", m)
    print(f"$ status --wait -> {r.code} in {time.monotonic() - started:.1f}s\n{r.stdout}")
    return r, time.monotonic() - started


def test_wait_returns_once_every_vm_is_in_sync_and_running(host, tmp_path):
    m = tmp_path / "m"
    a, b = f"{host.prefix}a", f"{host.prefix}b"
    write_manifest(m, "a.yaml", vm_manifest(a))
    write_manifest(m, "b.yaml", vm_manifest(b, state="stopped"))
    assert apply(host, m).code == 0
    r, _ = _wait(host, m)
    assert r.code == 0 and "In sync and healthy: 2 VMs" in r.stdout, r.stdout


def test_wait_times_out_naming_what_is_not_in_sync_or_not_healthy(host, tmp_path):
    m = tmp_path / "m"
    a, b = f"{host.prefix}a", f"{host.prefix}b"
    write_manifest(m, "a.yaml", vm_manifest(a))
    assert apply(host, m).code == 0
    host.domain(a).suspend()  # paused by hand: not healthy, and not in sync (to resume)
    write_manifest(m, "b.yaml", vm_manifest(b))  # merged, not applied yet
    r, took = _wait(host, m, "3s")
    assert r.code == 1, r.stdout
    assert took < 15
    assert f"{b}: " in r.stdout and f"{a}: not healthy: paused" in r.stdout, r.stdout
    host.domain(a).resume()


def test_a_vm_that_asks_for_the_guest_agent_gets_its_channel_and_waits_for_it(host, tmp_path):
    """An OS-less guest runs no agent: the channel is there, libvirt says disconnected, and the
    wait says so."""
    m = tmp_path / "m"
    name = f"{host.prefix}ga"
    write_manifest(m, "ga.yaml", vm_manifest(name, extra="guestAgent: true"))
    assert apply(host, m).code == 0
    live = host.xml(name)
    assert "name='org.qemu.guest_agent.0'" in live and "state='disconnected'" in live, live
    r, _ = _wait(host, m, "3s")
    assert r.code == 1 and f"{name}: not healthy: guest agent not connected" in r.stdout
    # The manifest that no longer asks for it: the channel goes with the next start.
    write_manifest(m, "ga.yaml", vm_manifest(name))
    r = run_cli("plan", "--connect", host.uri, m)
    assert "guestAgent true -> false" in r.stdout and "restart" in r.stdout, r.stdout
