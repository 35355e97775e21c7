"""What a move must never do, between the test bed's two real libvirtds: delete a VM because
a Host's URI (or the config's host) points back at the host itself, or delete a disk that the
two hosts share."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import libvirt
import pytest
from conftest import run_cli, vm_manifest, write_manifest
from fleethosts import read_volume, write_hosts, write_volume

pytestmark = pytest.mark.libvirtd


def _as(folder: Path, me: str, uri: str, command: str, m: Path):  # type: ignore[no-untyped-def]
    config = folder / f"{me}.yaml"
    config.write_text(f"host: {me}\n")
    args = [command, "--connect", uri, "--config", config]
    if command == "apply":
        args += ["--yes", "--state-dir", folder / f"state-{me}"]
    r = run_cli(*args, m)
    print(f"$ {command} as {me} on {uri} -> {r.code}\n{r.stdout}{r.stderr}")
    return r


def test_a_config_naming_another_host_never_moves_or_deletes(host, host_b, tmp_path, prefix):
    """hv-b's config copied onto hv-a: "hv-b" plans on hv-a's libvirtd. hv-a's VM looks as if
    it were leaving for hv-a, whose URI reaches this very libvirtd: refused, with the way out;
    the VM and its disk are untouched."""
    m = tmp_path / "m"
    name = f"{prefix}web"
    write_hosts(m, host.uri, host_b.uri)
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-a",
                                              disks="- name: root\n  size: 16MiB"))
    assert _as(tmp_path, "hv-a", host.uri, "apply", m).code == 0
    before = host.xml(name, inactive=True)
    r = _as(tmp_path, "hv-b", host.uri, "apply", m)  # the wrong config on hv-a
    assert r.code == 1
    assert f"! {name}" in r.stdout
    assert "reaches this very host (libvirt host UUID" in r.stdout
    assert "fix Host hv-a's uri, or this host's `host` in the config" in r.stdout
    assert host.xml(name, inactive=True) == before
    assert host.volume(f"{name}-root") is not None


def test_a_pool_both_hosts_share_is_never_emptied_by_a_move(host, host_b, tmp_path, prefix):
    """A dir pool on storage both hosts see (here: one directory outside both hosts' private
    folders): the "copy" there would be the very file. The move fails before it writes
    anything, saying why; the disk is intact."""
    folder = Path(f"/var/tmp/{prefix}shared")
    folder.mkdir(mode=0o711)
    pool_xml = (f"<pool type='dir'><name>{prefix}shared</name><target><path>{folder}</path>"
                "</target></pool>")
    try:
        for conn in (host.conn, host_b.conn):
            conn.storagePoolDefineXML(pool_xml, 0).create(0)
        m = tmp_path / "m"
        name = f"{prefix}db"
        write_hosts(m, host.uri, host_b.uri)

        def db(on: str) -> None:
            write_manifest(m, "db.yaml", vm_manifest(
                name, state="stopped", extra=f"host: {on}",
                disks=f"- name: root\n  size: 16MiB\n  pool: {prefix}shared"))

        db("hv-a")
        assert _as(tmp_path, "hv-a", host.uri, "apply", m).code == 0
        vol = host.conn.storagePoolLookupByName(f"{prefix}shared").storageVolLookupByName(
            f"{name}-root")
        write_volume(vol, 1 << 20, b"\x5a" * 4096)
        digest = hashlib.sha256(read_volume(vol)).hexdigest()
        db("hv-b")
        r = _as(tmp_path, "hv-a", host.uri, "apply", m)
        assert r.code == 1
        assert (f"pool '{prefix}shared' is the same storage here and on hv-b" in r.stdout)
        assert host.exists(name) and not host_b.exists(name)
        pool = host.conn.storagePoolLookupByName(f"{prefix}shared")
        pool.refresh(0)
        kept = pool.storageVolLookupByName(f"{name}-root")
        assert hashlib.sha256(read_volume(kept)).hexdigest() == digest
        assert not [v for v in pool.listVolumes() if v.startswith(".reconciler-probe")]
    finally:
        for conn in (host.conn, host_b.conn):
            try:
                p = conn.storagePoolLookupByName(f"{prefix}shared")
            except libvirt.libvirtError:
                continue
            if conn is host.conn:  # the volumes once (they are the same files)
                for v in p.listAllVolumes(0):
                    v.delete(0)
            if p.isActive():
                p.destroy()
            p.undefine()
        shutil.rmtree(folder, ignore_errors=True)
        if host.exists(f"{prefix}db"):
            host.domain(f"{prefix}db").undefine()


