"""A move that stops once its VM is on the other host, before the copy of its volumes left here
is deleted (the process killed, a delete that fails), is finished by the next run of the host it
left: the VM's definition there records that it moved from here (it goes with the domain), so
those volumes are known to be the move's own copy. A volume that only has such a name is left
alone. Between the test bed's two real libvirtds."""

from __future__ import annotations

import hashlib
from pathlib import Path

import libvirt
import pytest
from conftest import Host, run_cli, vm_manifest, write_manifest
from fleethosts import read_volume, write_hosts, write_volume
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


def _as(folder: Path, me: str, host: Host, command: str, m: Path):  # type: ignore[no-untyped-def]
    config = folder / f"{me}.yaml"
    config.write_text(f"host: {me}\n")
    args = [command, "--connect", host.uri, "--config", config]
    if command == "apply":
        args += ["--yes", "--state-dir", folder / f"state-{me}"]
    r = run_cli(*args, m)
    print(f"$ {command} as {me} -> {r.code}\n{r.stdout}{r.stderr}")
    return r


def _digest(vol: libvirt.virStorageVol) -> str:
    return hashlib.sha256(read_volume(vol)).hexdigest()


@pytest.mark.parametrize("state", ["running", "stopped"])
def test_a_move_that_stopped_before_deleting_here_is_finished_by_the_next_run(
        host, host_b, tmp_path, prefix, state, monkeypatch):
    name = f"{prefix}lo"
    m = _repo(tmp_path, host, host_b, name, "hv-a", state)
    assert _as(tmp_path, "hv-a", host, "apply", m).code == 0
    write_volume(host.volume(f"{name}-root"), 1 << 20, b"\x5a" * 4096)
    _repo(tmp_path, host, host_b, name, "hv-b", state)

    real = Storage.delete_volume

    def stops(self, pool, volume):  # type: ignore[no-untyped-def]
        if volume == f"{name}-root":  # the move's last step: as if the process were killed
            raise PermanentError("cannot delete: simulated stop after the VM moved")
        return real(self, pool, volume)

    with monkeypatch.context() as patch:
        patch.setattr(Storage, "delete_volume", stops)
        stopped = _as(tmp_path, "hv-a", host, "apply", m)
    assert stopped.code == 1
    # the VM is there, its copy here is left: the record of the move went with the domain
    assert host_b.exists(name) and not host.exists(name)
    assert host.volume(f"{name}-root") is not None
    there = host_b.volume(f"{name}-root")
    assert there is not None
    on_b = _digest(there) if state == "stopped" else None
    root = etree.fromstring(host_b.domain(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    records = list(root.iterfind(f"metadata/{{{MOVES_NS}}}moves/{{{MOVES_NS}}}move"))
    assert [(r.get("from"), r.get("to")) for r in records] == [("hv-a", "hv-b")]

    # the next run of the host it left finishes the move: the copy here is deleted
    planned = _as(tmp_path, "hv-a", host, "plan", m)
    assert (f"> {name}   move hv-a -> hv-b (finished: it is there, the copy of its volumes "
            "left here is deleted)") in planned.stdout
    assert "Plan: 0 to create, 0 to update, 0 to destroy, 1 to move" in planned.stdout
    applied = _as(tmp_path, "hv-a", host, "apply", m)
    assert applied.code == 0, applied.stdout + applied.stderr
    assert (f"{name}: moved to hv-b (finished: the copy of its volumes left here deleted)"
            in applied.stdout)
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
