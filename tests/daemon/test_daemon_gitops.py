"""The daemon's GitOps features, as a subprocess on the real libvirtd: `reconciler suspend` /
`resume` pause and resume it (persisted), prune: confirm holds a destroy until `reconciler
approve`, the webhook gets a report of what changed, the snapshot file is kept fresh, and the
revision (commit, dirty) is in status and the metrics."""

from __future__ import annotations

import http.server
import json
import subprocess
import threading
from pathlib import Path
from typing import ClassVar

import daemonproc
from conftest import run_cli, vm_manifest, write_manifest
from daemonproc import wait_for

daemon_factory = daemonproc.daemon_factory  # the fixture


def _status(daemon) -> dict[str, str]:  # type: ignore[no-untyped-def]
    doc = json.loads(run_cli("status", "--state-dir", daemon.state_dir, "--format",
                             "json").stdout)
    return {v["name"]: v["status"] for v in doc["vms"]}


def _git_repo(folder: Path) -> str:
    git = ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@example.net"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_suspend_pauses_the_daemon_until_resume_and_survives_a_restart(host, tmp_path,
                                                                        daemon_factory,
                                                                        own_instance):
    manifests = tmp_path / "repo" / "m"
    name = f"{host.prefix}p"
    write_manifest(manifests, "p.yaml", vm_manifest(name))
    commit = _git_repo(manifests.parent)
    daemon = daemon_factory(manifests, host.uri)
    daemon.wait_ready()
    assert host.domain(name).isActive()
    state = daemon.state_dir
    assert run_cli("suspend", "--state-dir", state, "--reason", "maintenance").code == 0
    subprocess.run(["virsh", "-c", host.uri, "destroy", name], check=True, capture_output=True)
    assert wait_for(lambda: _status(daemon) == {name: "suspended"}, 10), daemon.output()
    assert not host.domain(name).isActive()  # observed, reported, not repaired
    r = run_cli("status", "--state-dir", state)
    assert "changes suspended since" in r.stdout and "maintenance" in r.stdout, r.stdout
    assert f"manifests at {commit[:12]}" in r.stdout
    assert daemon.metric("reconciler_suspended") == 1
    assert daemon.metric(f'reconciler_info{{commit="{commit}",dirty="false",'
                         f'instance="{own_instance}"}}') == 1
    # A restarted daemon is still paused.
    assert daemon.stop() == 0
    second = tmp_path / "second"
    second.mkdir()
    daemon = daemonproc.Daemon(manifests, state, host.uri, second)
    try:
        daemon.wait_ready()
        assert not host.domain(name).isActive()
        assert run_cli("resume", "--state-dir", state).code == 0
        daemon.proc.send_signal(1)  # SIGHUP: reconcile now
        assert wait_for(lambda: host.domain(name).isActive(), 15), daemon.output()
        assert wait_for(lambda: _status(daemon) == {name: "in sync"}, 10)
    finally:
        daemon.stop()


def test_prune_confirm_in_the_daemon_waits_for_approve(host, tmp_path, daemon_factory):
    manifests = tmp_path / "m"
    gone, keep = f"{host.prefix}gone", f"{host.prefix}keep"
    write_manifest(manifests, "gone.yaml", vm_manifest(gone, state="stopped"))
    write_manifest(manifests, "keep.yaml", vm_manifest(keep, state="stopped"))
    daemon = daemon_factory(manifests, host.uri, args=("--prune", "confirm"))
    daemon.wait_ready()
    (manifests / "gone.yaml").unlink()
    assert wait_for(lambda: _status(daemon).get(gone) == "pending destroy", 10), \
        daemon.output()
    assert host.exists(gone)
    r = run_cli("approve", "--connect", host.uri, "--state-dir", daemon.state_dir, gone,
                manifests)
    assert r.code == 0, r.stderr
    daemon.proc.send_signal(1)
    assert wait_for(lambda: not host.exists(gone), 15), daemon.output()


class _Hook(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[dict]] = []  # type: ignore[type-arg]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_webhook_gets_a_report_of_what_changed_and_the_snapshot_file_is_fresh(
        host, tmp_path, daemon_factory, own_instance):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Hook.received = []
    try:
        config = tmp_path / "config.yaml"
        config.write_text(f"notify:\n  url: http://127.0.0.1:{server.server_address[1]}/h"
                          "?token=s3cret\n  secret: k\n")
        manifests = tmp_path / "m"
        name = f"{host.prefix}w"
        write_manifest(manifests, "w.yaml", vm_manifest(name, state="stopped"))
        snap = tmp_path / "host.snapshot"
        daemon = daemon_factory(manifests, host.uri, args=(
            "--config", str(config), "--snapshot-file", str(snap)))
        daemon.wait_ready()
        assert wait_for(lambda: _Hook.received, 10), daemon.output()
        report = _Hook.received[0]
        assert report["kind"] == "ReconcileReport" and report["instance"] == own_instance
        assert [(r["name"], r["action"], r["result"]) for r in report["results"]] == [
            (name, "create", "converged")]
        assert wait_for(snap.exists, 10)
        r = run_cli("plan", "--snapshot", snap, manifests)
        assert r.code == 0 and "No changes" in r.stdout, r.stdout + r.stderr
        assert "s3cret" not in daemon.output()
        # A reconcile with nothing to do sends nothing.
        count = len(_Hook.received)
        daemon.proc.send_signal(1)
        assert not wait_for(lambda: len(_Hook.received) > count, 3)
    finally:
        server.shutdown()
