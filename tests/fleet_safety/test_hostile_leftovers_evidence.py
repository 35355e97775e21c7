"""Hostile: the evidence a leftover is deleted on. Shared storage (the "copy" is the VM's own
disk), the VM on hv-b of another instance or made by hand, a garbled record, and the daemon."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import libvirt
import pytest
from conftest import Host, vm_manifest, write_manifest
from test_hostile_leftovers import _drop_pool, _pool, as_, forge_record, iso, raw_volume, repo

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "daemon"))
from daemonproc import Daemon, wait_for

pytestmark = pytest.mark.libvirtd


def test_shared_storage_the_copy_is_the_disk(host, host_b, tmp_path, prefix):
    """hv-a and hv-b mount the same storage (one directory: NFS). The VM moved hv-a -> hv-b a
    day ago with the tool (before the storage was shared), and is stopped there. Its disk on
    hv-b is the file hv-a lists as `<vm>-root`: deleting it deletes the VM's only disk."""
    pool = f"{prefix}sh"
    shared = tmp_path / "shared"
    shared.mkdir()
    name = f"{prefix}sd"
    try:
        _pool(host, pool, str(shared))
        _pool(host_b, pool, str(shared))
        m = repo(tmp_path, host, host_b, name, "hv-b",
                 disks=f"- name: root\n  size: 16MiB\n  pool: {pool}")
        assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
        day = time.time() - 86400
        forge_record(host_b, name, iso(day))
        path = host_b.volume(f"{name}-root", pool).path()
        with open(path, "r+b") as f:
            f.write(b"the only disk" * 100)
        os.utime(path, (day, day))
        host.conn.storagePoolLookupByName(pool).refresh(0)
        planned = as_(tmp_path, "hv-a", host, "plan", m)
        applied = as_(tmp_path, "hv-a", host, "apply", m)
        assert os.path.exists(path), "deleted the VM's disk on shared storage"
        assert applied.code != 0 or "finish the move" not in planned.stdout
    finally:
        for h in (host, host_b):
            _drop_pool(h, pool) if h is host else None
        for dom in host_b.conn.listAllDomains(0):
            if dom.name().startswith(prefix):
                dom.undefine()
        try:
            p = host_b.conn.storagePoolLookupByName(pool)
            p.destroy()
            p.undefine()
        except libvirt.libvirtError:
            pass
        for f in shared.iterdir():
            f.unlink()


@pytest.mark.parametrize("who", ["another instance", "by hand"])
def test_a_vm_on_b_not_of_this_instance_proves_nothing(host, host_b, tmp_path, prefix, who,
                                                       monkeypatch):
    name = f"{prefix}oi"
    m = repo(tmp_path, host, host_b, name, "hv-b")
    if who == "another instance":
        monkeypatch.setenv("RECONCILER_INSTANCE", "someone-else-" + prefix.rstrip("-"))
        assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
        monkeypatch.undo()
        monkeypatch.setenv("RECONCILER_INSTANCE", f"test-{prefix.rstrip('-')}")
        monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / ".locks"))
        monkeypatch.setenv("RECONCILER_CACHE_DIR", str(tmp_path / ".reconciler-cache"))
        monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / ".state"))
    else:
        host_b.conn.defineXML(
            f"<domain type='qemu'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1"
            "</vcpu><os><type arch='x86_64'>hvm</type></os></domain>")
    forge_record(host_b, name, iso(time.time() - 60))
    raw_volume(host, f"{name}-root", b"keep" * 1024)
    os.utime(host.volume(f"{name}-root").path(), (time.time() - 120, time.time() - 120))
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None
    assert "finish the move" not in planned.stdout


@pytest.mark.parametrize("at", ["2026-13-45T99:00:00Z", "", "1970-01-01T00:00:00+00:00",
                                "9999-12-31T23:59:59Z"])
def test_a_garbled_record(host, host_b, tmp_path, prefix, at):
    """A record whose `at` does not parse is no proof; one far in the future (a clock that was
    wrong, a hand edit) makes every volume of that name "older than the move's end"."""
    name = f"{prefix}gr"
    m = repo(tmp_path, host, host_b, name, "hv-b")
    assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
    forge_record(host_b, name, at)
    raw_volume(host, f"{name}-root", b"keep" * 1024)  # made now, after any real move
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None, f"deleted on a record at={at!r}"
    assert "finish the move" not in planned.stdout


def test_the_daemon_finishes_a_stopped_move_and_says_what_it_did(host, host_b, tmp_path, prefix,
                                                                 monkeypatch):
    from test_hostile_leftovers import stopped_move
    name = f"{prefix}dm"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    folder = tmp_path / "da"
    folder.mkdir()
    config = folder / "config.yaml"
    config.write_text("host: hv-a\n")
    daemon = Daemon(m, folder / "state", host.uri, folder, args=("--config", str(config)),
                    env={"RECONCILER_LOCK_DIR": str(folder / "locks")})
    try:
        daemon.wait_ready(30)
        assert wait_for(lambda: host.volume(f"{name}-root") is None, 60), daemon.output()
        assert wait_for(lambda: any(e.get("vm") == name and "deleted the copy" in str(e)
                                    for e in daemon.events()), 30), daemon.output()
        print(daemon.output()[-3000:])
        assert host_b.exists(name)
    finally:
        daemon.stop()
    _ = (subprocess, vm_manifest, write_manifest, Host)
