"""One repository, two hosts, two daemons: each `reconciler run` converges only its own share,
never touches the other's VMs, and a VM whose spec.host changes is moved by the daemon of the
host it leaves while the other waits for it."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from conftest import Host, vm_manifest, write_manifest

sys.path.insert(0, str(Path(__file__).parents[1] / "daemon"))
from daemonproc import Daemon, wait_for
from fleethosts import write_hosts

pytestmark = pytest.mark.libvirtd


def _repo(m: Path, host: Host, host_b: Host, vms: dict[str, str]) -> None:
    write_hosts(m, host.uri, host_b.uri)
    for name, on in vms.items():
        write_manifest(m, f"{name}.yaml", vm_manifest(name, state="stopped", extra=f"host: {on}",
                                                      disks="- name: root\n  size: 16MiB"))


def _daemon(tmp_path: Path, me: str, uri: str, m: Path) -> Daemon:
    folder = tmp_path / me
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text(f"host: {me}\n")
    # Two machines in real life: each its own writer lock (one instance name on both).
    return Daemon(m, folder / "state", uri, folder, args=("--config", str(config)),
                  env={"RECONCILER_LOCK_DIR": str(folder / "locks")})


def test_two_daemons_each_converge_their_share_and_move_a_vm(host, host_b, tmp_path, prefix):
    m = tmp_path / "repo"
    a1, b1 = f"{prefix}a1", f"{prefix}b1"
    _repo(m, host, host_b, {a1: "hv-a", b1: "hv-b"})
    daemon_a = _daemon(tmp_path, "hv-a", host.uri, m)
    daemon_b = _daemon(tmp_path, "hv-b", host_b.uri, m)
    try:
        daemon_a.wait_ready(30)
        daemon_b.wait_ready(30)
        assert wait_for(lambda: host.exists(a1) and host_b.exists(b1), 60), (
            daemon_a.output() + daemon_b.output())
        assert not host.exists(b1) and not host_b.exists(a1)  # each only its share

        _repo(m, host, host_b, {a1: "hv-b", b1: "hv-b"})  # the commit that moves a1
        assert wait_for(lambda: host_b.exists(a1) and not host.exists(a1)
                        and host.volume(f"{a1}-root") is None, 90), (  # deleted last
            daemon_a.output() + daemon_b.output())
        assert host_b.volume(f"{a1}-root") is not None
        # logged once the daemon has read the host again after the move (a moment later)
        assert wait_for(lambda: any(e.get("vm") == a1 and "moved to hv-b (cold move)" in str(e)
                                    for e in daemon_a.events()), 30), daemon_a.output()
        # the daemon of hv-b never made a second a1: it waited for it, then found it in sync
        assert not any(e.get("vm") == a1 and "created" in str(e.get("did", ""))
                       for e in daemon_b.events()), daemon_b.output()
        assert host_b.exists(b1) and not host.exists(b1)
    finally:
        code_a, code_b = daemon_a.stop(), daemon_b.stop()
    assert (code_a, code_b) == (0, 0)
