"""Calls that block: a notify socket systemd does not read, a QEMU that hangs, a libvirtd that
hangs, a manifest that cannot be read, a git that does not return, a metrics port already
taken. None of them stops the loop for good, and SIGTERM is honoured within a bounded time."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import daemonproc
import pytest
from conftest import run_cli, vm_manifest, write_manifest
from daemonproc import wait_for
from freezer import FrozenLibvirt

daemon_factory = daemonproc.daemon_factory  # the fixture

STOP_BOUND = 15.0  # seconds: SIGTERM to exit, whatever the daemon is blocked in


def _watchdog(messages: list[tuple[float, str]], start: float, end: float) -> int:
    return sum(1 for at, m in messages if start <= at <= end and "WATCHDOG=1" in m)


def _state(daemon) -> dict:  # type: ignore[no-untyped-def, type-arg]
    try:
        instance = os.environ["RECONCILER_INSTANCE"]  # each test is its own instance
        return json.loads((daemon.state_dir / "status" / f"{instance}.json").read_text())
    except (OSError, ValueError):
        return {}


def test_a_notify_socket_nobody_reads_blocks_no_reconcile(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}a", state="stopped"))
    # A watchdog ping every 50 ms fills the socket's queue (10 datagrams) in half a second.
    daemon = daemon_factory(manifests, host.uri, read_notify=False,
                            env={"WATCHDOG_USEC": "100000"})
    assert wait_for(lambda: host.exists(f"{host.prefix}a"), 15), daemon.output()
    for i in range(3):  # reconciles go on, each one sending a STATUS nobody reads
        name = f"{host.prefix}b{i}"
        write_manifest(manifests, f"b{i}.yaml", vm_manifest(name, state="stopped"))
        assert wait_for(lambda n=name: host.exists(n), 15), daemon.output()
    assert wait_for(lambda: daemon.metric("reconciler_notify_dropped_total") >= 10, 5)
    assert daemon.stopped_within(STOP_BOUND) == 0, daemon.output()


def _qemu_pid(name: str) -> int:
    return int(Path(f"/run/libvirt/qemu/{name}.pid").read_text())


def test_a_hung_qemu_stops_the_watchdog_and_sigterm_still_ends_the_daemon(host, tmp_path,
                                                                          daemon_factory):
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}h"
    write_manifest(manifests, "h.yaml", vm_manifest(name, max_vcpus=2))
    daemon = daemon_factory(manifests, host.uri, env={"WATCHDOG_USEC": "1000000"})
    daemon.wait_ready()
    start = time.monotonic()
    time.sleep(2)
    assert _watchdog(daemon.stamped, start, time.monotonic()) >= 2  # idle: pinged
    pid = _qemu_pid(name)
    os.kill(pid, signal.SIGSTOP)  # its monitor answers nothing: the vCPU hot-plug blocks
    try:
        seen = len(daemon.messages)
        write_manifest(manifests, "h.yaml", vm_manifest(name, vcpus=2, max_vcpus=2))
        assert wait_for(lambda: any("STATUS=changing 1 resource" in m
                                    for m in daemon.messages[seen:]), 20), daemon.output()
        time.sleep(1)  # the loop is in setVcpusFlags now (a last ping may be on its way)
        blocked = time.monotonic()
        time.sleep(4)
        assert _watchdog(daemon.stamped, blocked, time.monotonic()) == 0, (
            daemon.stamped, blocked, daemon.output())
        assert daemon.metric("reconciler_libvirt_connected") == 1  # the server still answers
        assert daemon.stopped_within(STOP_BOUND) == 0, daemon.output()
        time.sleep(0.3)
        assert any("STOPPING=1" in m for m in daemon.messages)
        assert "abandoned" in daemon.output()
    finally:
        os.kill(pid, signal.SIGCONT)


@pytest.fixture
def frozen(tmp_path):  # type: ignore[no-untyped-def]
    proxy = FrozenLibvirt(tmp_path)
    yield proxy
    proxy.close()


def test_sigterm_while_libvirtd_hangs_in_a_read(host, tmp_path, daemon_factory, frozen):
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}a", state="stopped"))
    daemon = daemon_factory(manifests, frozen.uri)
    daemon.wait_ready()
    frozen.freeze()
    write_manifest(manifests, "b.yaml", vm_manifest(f"{host.prefix}b", state="stopped"))
    time.sleep(1.5)  # debounce: the loop now waits for libvirtd
    started = time.monotonic()
    assert daemon.stopped_within(STOP_BOUND) == 0, daemon.output()
    assert time.monotonic() - started < 5  # a read is dropped at once: nothing was written


def test_a_libvirtd_that_hangs_at_start_is_reported_then_survived(host, tmp_path,
                                                                  daemon_factory, frozen):
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}a"
    write_manifest(manifests, "a.yaml", vm_manifest(name, state="stopped"))
    frozen.freeze()  # connections are accepted and never answered
    daemon = daemon_factory(manifests, frozen.uri)
    assert wait_for(lambda: any("not ready" in m for m in daemon.messages), 20), (
        daemon.messages, daemon.output())
    assert wait_for(lambda: _state(daemon).get("daemon", {}).get("connected") is False, 5)
    assert daemon.proc.poll() is None
    frozen.thaw()
    daemon.wait_ready(40)
    assert wait_for(lambda: host.exists(name), 10), daemon.output()
    assert daemon.stopped_within(STOP_BOUND) == 0


def test_a_libvirtd_that_hangs_while_running_is_dropped_then_survived(host, tmp_path,
                                                                      daemon_factory, frozen):
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}a", state="stopped"))
    daemon = daemon_factory(manifests, frozen.uri, env={"WATCHDOG_USEC": "2000000"})
    daemon.wait_ready()
    frozen.freeze()
    name = f"{host.prefix}b"
    write_manifest(manifests, "b.yaml", vm_manifest(name, state="stopped"))
    # libvirt's keepalive (5 s x 3) ends the hung connection, and the read is given up after
    # 30 s (libvirt leaves one of two calls at once on a connection it closed waiting for
    # good); the loop says so and goes on.
    assert wait_for(lambda: _state(daemon).get("daemon", {}).get("connected") is False, 45), (
        daemon.output())
    later = time.monotonic()
    time.sleep(3)
    assert _watchdog(daemon.stamped, later, time.monotonic()) >= 1  # the loop lives: pinged
    frozen.thaw()
    assert wait_for(lambda: host.exists(name), 40), daemon.output()
    assert daemon.stopped_within(STOP_BOUND) == 0


def test_a_manifest_that_blocks_its_reader_blocks_no_sigterm(host, tmp_path, daemon_factory):
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}a", state="stopped"))
    os.mkfifo(manifests / "pipe.yaml")  # open() for reading waits for a writer
    daemon = daemon_factory(manifests, host.uri)
    time.sleep(3)
    started = time.monotonic()
    assert daemon.stopped_within(STOP_BOUND) == 0, daemon.output()
    assert time.monotonic() - started < 5


def test_a_config_file_that_blocks_its_reader_at_sighup_blocks_no_reconcile(host, tmp_path,
                                                                           daemon_factory):
    config = tmp_path / "config.yaml"
    config.write_text("maxDestroy: 5\n")
    manifests = tmp_path / "manifests"
    write_manifest(manifests, "a.yaml", vm_manifest(f"{host.prefix}a", state="stopped"))
    daemon = daemon_factory(manifests, host.uri, args=("--config", str(config)))
    daemon.wait_ready()
    config.unlink()
    os.mkfifo(config)  # SIGHUP reads it again: open() waits for a writer
    daemon.proc.send_signal(signal.SIGHUP)
    time.sleep(1)
    name = f"{host.prefix}b"
    write_manifest(manifests, "b.yaml", vm_manifest(name, state="stopped"))
    assert wait_for(lambda: host.exists(name), 15), daemon.output()
    assert "config reload failed" in daemon.output()
    started = time.monotonic()
    assert daemon.stopped_within(STOP_BOUND) == 0, daemon.output()
    assert time.monotonic() - started < 5


HANGING_GIT = """\
#!/bin/sh
# A git whose child never returns, holding the output pipe (a hung file system, a hook).
sleep 120 &
echo $! >> {pids}
wait
"""


def test_a_git_that_does_not_return_blocks_no_reconcile(host, tmp_path, daemon_factory):
    bin_dir, pids = tmp_path / "bin", tmp_path / "git.pids"
    bin_dir.mkdir()
    (bin_dir / "git").write_text(HANGING_GIT.format(pids=pids))
    (bin_dir / "git").chmod(0o755)
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}g"
    write_manifest(manifests, "g.yaml", vm_manifest(name, state="stopped"))
    try:
        daemon = daemon_factory(manifests, host.uri,
                                env={"PATH": f"{bin_dir}:{os.environ['PATH']}"})
        assert wait_for(lambda: host.exists(name), 30), daemon.output()
        daemon.wait_ready(20)
        second = f"{host.prefix}g2"
        write_manifest(manifests, "g2.yaml", vm_manifest(second, state="stopped"))
        assert wait_for(lambda: host.exists(second), 20), daemon.output()
        assert daemon.stopped_within(STOP_BOUND) == 0
    finally:
        for pid in pids.read_text().split() if pids.exists() else ():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)


def test_a_metrics_port_already_taken_is_one_line_and_the_daemon_runs(host, tmp_path,
                                                                      daemon_factory):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)
    port = taken.getsockname()[1]
    manifests = tmp_path / "manifests"
    name = f"{host.prefix}m"
    write_manifest(manifests, "m.yaml", vm_manifest(name, state="stopped"))
    daemon = daemon_factory(manifests, host.uri, port=port)
    try:
        daemon.wait_ready()
        assert host.exists(name)
        output = daemon.output()
        assert "Traceback" not in output, output
        lines = [line for line in output.splitlines() if str(port) in line]
        assert len(lines) == 1 and "metrics" in lines[0], output
        assert json.loads(lines[0])["level"] == "warning"
    finally:
        taken.close()
    daemon.proc.send_signal(signal.SIGHUP)  # the port is free now: served from the next run
    assert wait_for(lambda: daemon.metric("reconciler_libvirt_connected") == 1, 10), (
        daemon.output())
    status = run_cli("status", "--state-dir", daemon.state_dir)
    assert f"{name}  in sync" in status.stdout
    assert daemon.stopped_within(STOP_BOUND) == 0
