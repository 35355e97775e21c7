"""Moves through the product, between the test bed's two real libvirtds: a VM whose spec.host
changes is live-migrated (running) or moved cold (stopped) by the reconciler of the host it
leaves; the host it goes to waits for it and then finds it in sync. A move that stops once its
VM is there, before the copy of its volumes left here is deleted, is finished by the next run of
the host it left; a volume that only has such a name is left alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import libvirt
import pytest
from conftest import Host, vm_manifest, write_manifest
from fleethosts import read_volume, run_as, write_hosts, write_volume
from lxml import etree

from reconciler.adapters.libvirt.storage import Storage
from reconciler.core.errors import PermanentError

pytestmark = pytest.mark.libvirtd

MOVES_NS = "https://reconciler.dev/xmlns/moves/v1"


def _repo(folder: Path, host: Host, host_b: Host, name: str, on: str, state: str) -> Path:
    m = folder / "m"
    write_hosts(m, host.uri, host_b.uri)
    write_manifest(m, "vm.yaml", vm_manifest(name, state=state, extra=f"host: {on}",
                                             disks="- name: root\n  size: 16MiB"))
    return m


def _as(folder: Path, me: str, host: Host, command: str, m: Path, *extra: str):  # type: ignore[no-untyped-def]
    return run_as(folder, me, host.uri, command, m, *extra)


def _digest(vol: libvirt.virStorageVol) -> str:
    return hashlib.sha256(read_volume(vol)).hexdigest()


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_changing_a_vms_host_moves_it(host, host_b, tmp_path, prefix, state):
    name = f"{prefix}mv"
    m = _repo(tmp_path, host, host_b, name, "hv-a", state)
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    assert host.exists(name) and not host_b.exists(name)
    # the hv-b side: the VM is not placed there yet, nothing to do
    assert "No changes" in _as(tmp_path, "hv-b", host_b, "plan", m).stdout
    write_volume(host.volume(f"{name}-root"), 1 << 20, b"\x5a" * 4096)  # data to carry
    before = _digest(host.volume(f"{name}-root")) if state == "stopped" else None

    _repo(tmp_path, host, host_b, name, "hv-b", state)  # the commit that moves it
    how = "live migration" if state == "running" else "cold move"
    # the host it goes to waits: it never creates a second one
    waiting = _as(tmp_path, "hv-b", host_b, "plan", m)
    assert f"! {name}" in waiting.stdout
    assert "arriving: it runs on host hv-a, which moves it here" in waiting.stdout
    # the host it leaves plans and carries out the move
    planned = _as(tmp_path, "hv-a", host, "plan", m)
    assert f"> {name}   move hv-a -> hv-b ({how})" in planned.stdout
    applied = _as(tmp_path, "hv-a", host, "apply", m)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert f"{name}: moved to hv-b ({how})" in applied.stdout

    assert not host.exists(name)
    assert host.volume(f"{name}-root") is None  # its copy here is deleted
    dom = host_b.domain(name)
    assert dom.isPersistent()
    assert dom.state()[0] == (libvirt.VIR_DOMAIN_RUNNING if state == "running"
                              else libvirt.VIR_DOMAIN_SHUTOFF)
    vol = host_b.volume(f"{name}-root")
    assert vol is not None and vol.info()[1] == 16 << 20
    if before is not None:
        assert _digest(vol) == before  # byte for byte
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    [record] = root.iterfind(f"metadata/{{{MOVES_NS}}}moves/{{{MOVES_NS}}}move")
    assert (record.get("from"), record.get("to"), record.get("how")) == (
        "hv-a", "hv-b", "live" if state == "running" else "cold")
    # now each side is in sync with the repository
    assert "No changes" in _as(tmp_path, "hv-b", host_b, "plan", m).stdout
    assert "No changes" in _as(tmp_path, "hv-a", host, "plan", m).stdout


def test_a_move_that_cannot_start_leaves_the_vm_untouched(host, host_b, tmp_path, prefix):
    name = f"{prefix}mv"
    m = _repo(tmp_path, host, host_b, name, "hv-a", "stopped")
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    # a volume of the VM's name is in the way on hv-b (a leftover, say)
    pool = host_b.conn.storagePoolLookupByName("default")
    pool.createXML(f"<volume><name>{name}-root</name><capacity>1048576</capacity>"
                   "<allocation>0</allocation><target><format type='raw'/></target></volume>",
                   0)
    _repo(tmp_path, host, host_b, name, "hv-b", "stopped")
    r = _as(tmp_path, "hv-a", host, "apply", m)
    assert r.code == 1
    assert (f"move to hv-b blocked: hv-b already has a volume '{name}-root' in pool "
            "'default' (not the same size and format); delete it there if it is a leftover; it "
            "stays here, untouched") in r.stdout
    assert host.exists(name) and host.volume(f"{name}-root") is not None
    assert not host_b.exists(name)


def test_a_move_interrupted_after_a_copy_is_finished_later(host, host_b, tmp_path, prefix):
    """A cold move killed after its volume was copied leaves that copy on the destination: the
    next run writes over it (same name, size and format, no domain uses it) and finishes."""
    name = f"{prefix}mv"
    m = _repo(tmp_path, host, host_b, name, "hv-a", "stopped")
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    write_volume(host.volume(f"{name}-root"), 1 << 20, b"\x5a" * 4096)
    before = _digest(host.volume(f"{name}-root"))
    pool = host_b.conn.storagePoolLookupByName("default")
    left = pool.createXML(f"<volume><name>{name}-root</name><capacity>{16 << 20}</capacity>"
                          "<allocation>0</allocation><target><format type='qcow2'/></target>"
                          "</volume>", 0)
    write_volume(left, 256 << 10, b"\xff" * 4096)  # stale bytes, where the copy writes
    _repo(tmp_path, host, host_b, name, "hv-b", "stopped")
    r = _as(tmp_path, "hv-a", host, "apply", m)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{name}: moved to hv-b (cold move)" in r.stdout
    assert _digest(host_b.volume(f"{name}-root")) == before
    assert host_b.exists(name) and not host.exists(name)


def _stopped_move(tmp_path, host, host_b, name, state, monkeypatch) -> Path:  # type: ignore[no-untyped-def]
    """The repository, after a move of ``name`` from hv-a to hv-b that stopped once the VM was
    there: the delete of its volume on hv-a fails (as if the process had been killed)."""
    m = _repo(tmp_path, host, host_b, name, "hv-a", state)
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    write_volume(host.volume(f"{name}-root"), 1 << 20, b"\x5a" * 4096)
    _repo(tmp_path, host, host_b, name, "hv-b", state)
    real = Storage.delete_volume

    def stops(self, pool, volume):  # type: ignore[no-untyped-def]
        if volume == f"{name}-root":  # the move's last step
            raise PermanentError("cannot delete: simulated stop after the VM moved")
        return real(self, pool, volume)

    with monkeypatch.context() as patch:
        patch.setattr(Storage, "delete_volume", stops)
        stopped = _as(tmp_path, "hv-a", host, "apply", m)
    assert stopped.code == 1
    return m


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_a_move_that_stopped_before_deleting_here_is_finished_by_the_next_run(
        host, host_b, tmp_path, prefix, state, monkeypatch):
    name = f"{prefix}lo"
    m = _stopped_move(tmp_path, host, host_b, name, state, monkeypatch)
    # the VM is there, its copy here is left: the record of the move went with the domain
    assert host_b.exists(name) and not host.exists(name)
    assert host.volume(f"{name}-root") is not None
    there = host_b.volume(f"{name}-root")
    assert there is not None
    on_b = _digest(there) if state == "stopped" else None
    root = etree.fromstring(host_b.domain(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    records = list(root.iterfind(f"metadata/{{{MOVES_NS}}}moves/{{{MOVES_NS}}}move"))
    assert [(r.get("from"), r.get("to")) for r in records] == [("hv-a", "hv-b")]
    # with the volumes it took: only those can be its copy here
    assert [(v.get("pool"), v.get("name")) for v in records[0]] == [("default", f"{name}-root")]

    # the next run of the host it left finishes the move: the copy here is deleted
    planned = _as(tmp_path, "hv-a", host, "plan", m)
    assert (f"> {name}   finish the move hv-a -> hv-b: it is there; delete the copy of its "
            f"volumes left here (default/{name}-root)") in planned.stdout
    assert "Plan: 0 to create, 0 to update, 0 to destroy, 1 to move" in planned.stdout
    applied = _as(tmp_path, "hv-a", host, "apply", m)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert (f"{name}: deleted the copy of its volumes its move to hv-b left here "
            f"(default/{name}-root)") in applied.stdout
    assert host.volume(f"{name}-root") is None
    # the VM there is untouched
    dom = host_b.domain(name)
    assert dom.state()[0] == (libvirt.VIR_DOMAIN_RUNNING if state == "running"
                              else libvirt.VIR_DOMAIN_SHUTOFF)
    if on_b is not None:
        assert _digest(host_b.volume(f"{name}-root")) == on_b
    assert "No changes" in _as(tmp_path, "hv-a", host, "plan", m).stdout
    assert "No changes" in _as(tmp_path, "hv-b", host_b, "plan", m).stdout


def test_a_volume_that_only_has_the_name_of_a_vm_placed_elsewhere_is_left_alone(
        host, host_b, tmp_path, prefix):
    """The VM was made on hv-b (it never moved from hv-a): a volume on hv-a named like its
    disk is not the tool's copy. Nor is one a domain here uses."""
    name = f"{prefix}lo"
    m = _repo(tmp_path, host, host_b, name, "hv-b", "stopped")
    assert _as(tmp_path, "hv-b", host_b, "apply", m).code == 0
    pool = host.conn.storagePoolLookupByName("default")
    vol = pool.createXML(f"<volume><name>{name}-root</name><capacity>1048576</capacity>"
                         "<allocation>0</allocation><target><format type='raw'/></target>"
                         "</volume>", 0)
    write_volume(vol, 0, b"keep me" * 512)
    planned = _as(tmp_path, "hv-a", host, "plan", m)
    assert "No changes" in planned.stdout, planned.stdout
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    assert host.volume(f"{name}-root") is not None
    assert read_volume(host.volume(f"{name}-root")).startswith(b"keep me")


def test_the_copy_a_stopped_move_left_is_kept_while_another_volume_is_layered_on_it(
        host, host_b, tmp_path, prefix, monkeypatch):
    """A copy left here that another volume uses as its backing file is in use: kept until
    that volume is gone."""
    name = f"{prefix}lo"
    m = _stopped_move(tmp_path, host, host_b, name, "stopped", monkeypatch)
    pool = host.conn.storagePoolLookupByName("default")
    base = host.volume(f"{name}-root").path()
    pool.createXML(f"<volume><name>{prefix}layer</name><capacity>{16 << 20}</capacity>"
                   "<target><format type='qcow2'/></target><backingStore>"
                   f"<path>{base}</path><format type='qcow2'/></backingStore></volume>", 0)
    assert "No changes" in _as(tmp_path, "hv-a", host, "plan", m).stdout
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    assert host.volume(f"{name}-root") is not None
    host.volume(f"{prefix}layer").delete(0)
    assert f"> {name}   finish the move hv-a -> hv-b" in _as(tmp_path, "hv-a", host, "plan",
                                                           m).stdout
