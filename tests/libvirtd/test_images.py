"""Disks from a base image: a qcow2 overlay, or a full raw copy."""

from __future__ import annotations

from conftest import run_cli, vm_manifest, write_manifest
from lxml import etree

MiB = 1 << 20


def _volume_xml(host, name: str) -> etree._Element:
    return etree.fromstring(host.volume(name).XMLDesc(0).encode())


def test_qcow2_overlay_and_raw_copy_of_an_image(host, tmp_path):
    pool = host.conn.storagePoolLookupByName("default")
    base_name = f"{host.prefix}base.qcow2"
    pool.createXML(f"<volume><name>{base_name}</name><capacity>{32 * MiB}</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    base = host.volume(base_name)
    name = f"{host.prefix}img"
    write_manifest(tmp_path, "m/img.yaml", vm_manifest(name, state="stopped", disks=f"""
        - {{name: root, size: 64MiB, image: {base_name}}}
        - {{name: copy, size: 48MiB, image: {base_name}, format: raw}}
        """))
    r = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", tmp_path / "s",
                tmp_path / "m")
    assert r.code == 0, r.stdout + r.stderr

    overlay = _volume_xml(host, f"{name}-root")
    assert overlay.find("target/format").get("type") == "qcow2"
    assert overlay.findtext("backingStore/path") == base.path()
    assert int(overlay.findtext("capacity")) == 64 * MiB

    copy = _volume_xml(host, f"{name}-copy")
    assert copy.find("target/format").get("type") == "raw"
    assert copy.find("backingStore/path") is None  # a full copy, no chain
    assert int(copy.findtext("capacity")) == 48 * MiB

    r = run_cli("plan", "--detailed-exitcode", "--connect", host.uri, tmp_path / "m")
    assert r.code == 0, r.stdout


def test_a_missing_image_fails_that_vm_only(host, tmp_path):
    bad, good = f"{host.prefix}bad", f"{host.prefix}good"
    write_manifest(tmp_path, "m/bad.yaml", vm_manifest(
        bad, state="stopped", disks="- {name: root, size: 64MiB, image: no-such-image.qcow2}"))
    write_manifest(tmp_path, "m/good.yaml", vm_manifest(good, state="stopped"))
    r = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", tmp_path / "s",
                tmp_path / "m")
    assert r.code == 1
    assert "image 'no-such-image.qcow2' is not a volume of pool default" in r.stdout
    assert host.exists(good) and not host.exists(bad)


def test_another_vms_disk_is_never_an_image(host, tmp_path):
    victim, attacker = f"{host.prefix}victim", f"{host.prefix}attacker"
    write_manifest(tmp_path, "m/v.yaml", vm_manifest(victim, state="stopped",
                                                     disks="- {name: root, size: 16MiB}"))
    assert run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", tmp_path / "s",
                   tmp_path / "m").code == 0
    write_manifest(tmp_path, "m/a.yaml", vm_manifest(
        attacker, state="stopped", disks=f"- {{name: root, size: 16MiB, image: {victim}-root}}"))
    r = run_cli("apply", "--yes", "--connect", host.uri, "--state-dir", tmp_path / "s",
                tmp_path / "m")
    assert r.code == 1
    assert f"image {victim}-root is a disk of {victim}; an image must be a volume no VM uses" \
        in r.stdout
    assert host.volume(f"{attacker}-root") is None
