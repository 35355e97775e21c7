"""Hostile, between the test bed's two real libvirtds: the end of a move that stopped once its VM
was there (the copy of its volumes left on the host it left is deleted by that host's next run).
What must never be deleted: a volume that only has the name, one the tool promised to keep, one
a domain here uses (by any path), one another volume is layered on."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
import time
from datetime import UTC, datetime
from pathlib import Path

import libvirt
import pytest
from conftest import Host, vm_manifest, write_manifest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fleet"))
from fleethosts import read_volume, run_as, write_hosts, write_volume

from reconciler.adapters.libvirt.storage import Storage
from reconciler.core.errors import PermanentError
from reconciler.core.xml.common import add_move

pytestmark = pytest.mark.libvirtd

ROOT = "- name: root\n  size: 16MiB"


def repo(folder: Path, host: Host, host_b: Host, name: str, on: str, state: str = "stopped",
         disks: str = ROOT, extra: str = "", annotations: str = "") -> Path:
    m = folder / "m"
    write_hosts(m, host.uri, host_b.uri)
    text = vm_manifest(name, state=state, extra=f"host: {on}\n{extra}", disks=disks)
    if annotations:
        text = text.replace("metadata:\n", f"metadata:\n  annotations:\n    {annotations}\n", 1)
    write_manifest(m, "vm.yaml", text)
    return m


def as_(folder: Path, me: str, host: Host, command: str, m: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_as(folder, me, host.uri, command, m, *extra)


def stopped_move(folder: Path, host: Host, host_b: Host, name: str, monkeypatch,  # type: ignore[no-untyped-def]
                 state: str = "stopped", disks: str = ROOT, pool: str = "default") -> Path:
    """A real move hv-a -> hv-b that stops once the VM is there: the deletes on hv-a fail."""
    m = repo(folder, host, host_b, name, "hv-a", state, disks)
    assert as_(folder, "hv-a", host, "apply", m).code == 0
    write_volume(host.volume(f"{name}-root", pool), 1 << 20, b"\x5a" * 4096)
    repo(folder, host, host_b, name, "hv-b", state, disks)
    real = Storage.delete_volume

    def stops(self, pool_, volume):  # type: ignore[no-untyped-def]
        if volume.startswith(name):
            raise PermanentError("cannot delete: simulated stop after the VM moved")
        return real(self, pool_, volume)

    with monkeypatch.context() as patch:
        patch.setattr(Storage, "delete_volume", stops)
        assert as_(folder, "hv-a", host, "apply", m).code == 1
    assert host_b.exists(name) and not host.exists(name)
    assert host.volume(f"{name}-root", pool) is not None
    return m


def forge_record(host_b: Host, name: str, at: str, source: str = "hv-a") -> None:
    """B's persistent definition of ``name`` with one more move record, naming the volume a
    move would have taken (so that only the other evidence is under test)."""
    xml = host_b.domain(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    host_b.conn.defineXML(add_move(xml, source, "hv-b", "cold", at,
                                   [("default", f"{name}-root")]))


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def raw_volume(host: Host, name: str, data: bytes, pool: str = "default") -> libvirt.virStorageVol:
    vol = host.conn.storagePoolLookupByName(pool).createXML(
        f"<volume><name>{name}</name><capacity>{16 << 20}</capacity><allocation>0</allocation>"
        "<target><format type='raw'/></target></volume>", 0)
    write_volume(vol, 0, data)
    return vol


# --- 1. a volume the tool promised to keep ------------------------------------------------------


def test_a_retained_volume_of_a_removed_disk_survives_a_completed_move(host, host_b, tmp_path,
                                                                       prefix):
    """The VM had a disk `data` on hv-a; the disk left the manifest (reclaim: retain, the
    default: its volume is kept on hv-a, promise 4). The VM then moved to hv-b, completely and
    without error (only `root` went: `data` was no longer its disk). Later `data` comes back in
    the manifest (hv-b makes a new, empty one). hv-a's next run must not delete the retained
    `<vm>-data`: it was never part of the move, and the move did not stop."""
    name = f"{prefix}rt"
    two = ROOT + "\n- name: data\n  size: 16MiB"
    m = repo(tmp_path, host, host_b, name, "hv-a", disks=two)
    assert as_(tmp_path, "hv-a", host, "apply", m).code == 0
    write_volume(host.volume(f"{name}-data"), 0, b"precious" * 512)
    repo(tmp_path, host, host_b, name, "hv-a")  # the disk leaves the manifest
    assert as_(tmp_path, "hv-a", host, "apply", m).code == 0
    assert host.volume(f"{name}-data") is not None  # retained, as promised
    repo(tmp_path, host, host_b, name, "hv-b")  # the move
    moved = as_(tmp_path, "hv-a", host, "apply", m)
    assert moved.code == 0 and f"{name}: moved to hv-b (cold move)" in moved.stdout
    assert host.volume(f"{name}-root") is None
    assert host.volume(f"{name}-data") is not None  # the move left it alone

    repo(tmp_path, host, host_b, name, "hv-b", disks=two)  # a new disk `data`, on hv-b
    assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    applied = as_(tmp_path, "hv-a", host, "apply", m)
    kept = host.volume(f"{name}-data")
    assert kept is not None, "the retained volume was deleted"
    assert read_volume(kept).startswith(b"precious")
    assert "No changes" in planned.stdout and applied.code == 0


# --- 2. write times are not proof --------------------------------------------------------------


def test_a_volume_restored_with_its_old_write_time_is_not_deleted(host, host_b, tmp_path,
                                                                   prefix):
    """The VM moved hv-a -> hv-b two days ago, completely. Today an operator restores an old
    backup of its disk on hv-a to look at it (cp -p / rsync -a / tar keep the file's mtime):
    a volume made minutes ago, after the move, whose mtime is older than the move. The record
    says the move ended long before this volume existed (its ctime says when)."""
    name = f"{prefix}rs"
    m = repo(tmp_path, host, host_b, name, "hv-b")
    assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
    two_days = time.time() - 2 * 86400
    forge_record(host_b, name, iso(two_days))  # the state a completed move left, 2 days ago
    vol = raw_volume(host, f"{name}-root", b"restored backup" * 256)
    path = vol.path()
    os.utime(path, (two_days - 3600, two_days - 3600))  # what `cp -p` would leave
    assert "No changes" in as_(tmp_path, "hv-a", host, "plan", m).stdout
    as_(tmp_path, "hv-a", host, "apply", m)
    kept = host.volume(f"{name}-root")
    assert kept is not None, "a volume made today was deleted on the word of its mtime"
    assert read_volume(kept).startswith(b"restored backup")


def test_a_volume_written_through_libvirt_after_the_move_is_kept(host, host_b, tmp_path, prefix):
    """HELD expected: the same, the volume written today through libvirt (mtime now)."""
    name = f"{prefix}rw"
    m = repo(tmp_path, host, host_b, name, "hv-b")
    assert as_(tmp_path, "hv-b", host_b, "apply", m).code == 0
    forge_record(host_b, name, iso(time.time() - 2 * 86400))
    raw_volume(host, f"{name}-root", b"new data" * 256)
    assert "No changes" in as_(tmp_path, "hv-a", host, "plan", m).stdout
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None


# --- 3. used by path, through a link ----------------------------------------------------------


def _pool(host: Host, name: str, path: str) -> None:
    p = host.conn.storagePoolDefineXML(
        f"<pool type='dir'><name>{name}</name><target><path>{path}</path></target></pool>", 0)
    p.create(0)


def _drop_pool(host: Host, name: str) -> None:
    for dom in host.conn.listAllDomains(0):
        if dom.name().startswith(host.prefix):
            dom.undefine()
    try:
        p = host.conn.storagePoolLookupByName(name)
    except libvirt.libvirtError:
        return
    if p.isActive():
        for vol in p.listAllVolumes(0):
            vol.delete(0)
        p.destroy()
    p.undefine()


def test_a_copy_a_domain_here_uses_by_path_is_kept_when_the_pool_dir_is_a_link(
        host, host_b, tmp_path, prefix, monkeypatch):
    """The pool's directory is a symbolic link (images moved to a bigger disk: a common setup).
    A stopped domain here (made by hand) uses the copy the stopped move left, by the very path
    libvirt gives the volume. The copy is in use: it must be kept."""
    pool = f"{prefix}lp"
    real_a = tmp_path / "a-real"
    real_a.mkdir()
    link_a = tmp_path / "a-link"
    link_a.symlink_to(real_a)
    dir_b = tmp_path / "b-dir"
    dir_b.mkdir()
    try:
        _pool(host, pool, str(link_a))
        _pool(host_b, pool, str(dir_b))
        name = f"{prefix}ln"
        disks = f"- name: root\n  size: 16MiB\n  pool: {pool}"
        m = stopped_move(tmp_path, host, host_b, name, monkeypatch, disks=disks, pool=pool)
        vol = host.volume(f"{name}-root", pool)
        path = vol.path()
        print("volume path on hv-a:", path)
        user = f"{prefix}user"
        host.conn.defineXML(textwrap.dedent(f"""\
            <domain type='qemu'><name>{user}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
              <os><type arch='x86_64'>hvm</type></os>
              <devices><disk type='file' device='disk'><driver name='qemu' type='raw'/>
                <source file='{path}'/><target dev='vda' bus='virtio'/></disk></devices>
            </domain>"""))
        planned = as_(tmp_path, "hv-a", host, "plan", m)
        as_(tmp_path, "hv-a", host, "apply", m)
        assert host.volume(f"{name}-root", pool) is not None, \
            f"deleted a volume the domain {user} uses by path"
        assert "finish the move" not in planned.stdout
    finally:
        _drop_pool(host, pool)  # before Host.cleanup, which cannot rmdir a link
        link_a.unlink()
        host.cleanup()
        host_b.cleanup()
        shutil.rmtree(tmp_path / "a-real", ignore_errors=True)
        shutil.rmtree(tmp_path / "b-dir", ignore_errors=True)


def test_a_copy_a_domain_here_uses_by_path_is_kept(host, host_b, tmp_path, prefix, monkeypatch):
    """HELD expected: the same in the default pool (no link)."""
    name = f"{prefix}up"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    path = host.volume(f"{name}-root").path()
    host.conn.defineXML(
        f"<domain type='qemu'><name>{prefix}user</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
        f"<source file='{path}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    assert "No changes" in as_(tmp_path, "hv-a", host, "plan", m).stdout
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None


# --- 4. layered on from elsewhere -------------------------------------------------------------


def test_a_copy_layered_on_by_a_volume_of_another_pool_is_kept(host, host_b, tmp_path, prefix,
                                                               monkeypatch):
    """README: only a copy "nor layered on by another volume" is deleted. The layer (a qcow2
    linked clone of the copy, for forensics) is in another pool of hv-a."""
    name = f"{prefix}ly"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    base = host.volume(f"{name}-root").path()
    other = f"{prefix}op"
    (tmp_path / "op").mkdir()
    try:
        _pool(host, other, str(tmp_path / "op"))
        host.conn.storagePoolLookupByName(other).createXML(
            f"<volume><name>{prefix}layer</name><capacity>{16 << 20}</capacity>"
            "<target><format type='qcow2'/></target><backingStore>"
            f"<path>{base}</path><format type='raw'/></backingStore></volume>", 0)
        planned = as_(tmp_path, "hv-a", host, "plan", m)
        as_(tmp_path, "hv-a", host, "apply", m)
        assert host.volume(f"{name}-root") is not None, \
            f"deleted the backing file of {other}/{prefix}layer"
        assert "finish the move" not in planned.stdout
    finally:
        host.cleanup()


def test_a_copy_under_the_overlay_of_a_stopped_domain_is_kept(host, host_b, tmp_path, prefix,
                                                              monkeypatch):
    """A stopped domain here runs from a qcow2 overlay file (outside any pool) whose backing
    file is the copy: deleting the copy destroys that domain's disk."""
    name = f"{prefix}ov"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    base = host.volume(f"{name}-root").path()
    overlay = tmp_path / "overlay.qcow2"
    import subprocess
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "raw", "-b", base,
                    str(overlay)], check=True)
    host.conn.defineXML(
        f"<domain type='qemu'><name>{prefix}user</name><memory unit='MiB'>64</memory>"
        "<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os><devices>"
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>"
        f"<source file='{overlay}'/><target dev='vda' bus='virtio'/></disk></devices></domain>")
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None, \
        f"deleted the backing file of {prefix}user's disk"
    assert "finish the move" not in planned.stdout


# --- 5. suspended -----------------------------------------------------------------------------


def test_a_suspended_vm_is_not_moved_not_even_its_last_steps(host, host_b, tmp_path, prefix,
                                                             monkeypatch):
    """A move stopped; the operator suspends the VM (reconciler/suspend: "true": "nothing
    creates, changes ... the VM", "never moved") to look into it. The next run of hv-a must not
    go on with the move's deletes."""
    name = f"{prefix}su"
    m = stopped_move(tmp_path, host, host_b, name, monkeypatch)
    repo(tmp_path, host, host_b, name, "hv-b", annotations='reconciler/suspend: "true"')
    planned = as_(tmp_path, "hv-a", host, "plan", m)
    as_(tmp_path, "hv-a", host, "apply", m)
    assert host.volume(f"{name}-root") is not None, "a suspended VM's move went on"
    assert "finish the move" not in planned.stdout
