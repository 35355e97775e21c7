"""Safety promises under hostile or careless input, on test:///default."""

from __future__ import annotations

import libvirt
from conftest import run_cli, vm_manifest, write_manifest
from lxml import etree

URI = "test:///default"
NS = "https://reconciler.dev/xmlns/domain/v1"


def _apply(m, state):
    return run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, m)


def _edit_mark(conn, name: str, edit) -> None:  # type: ignore[no-untyped-def]
    dom = conn.lookupByName(name)
    root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode())
    edit(root.find(f"metadata/{{{NS}}}vm"))
    conn.defineXML(etree.tostring(root, encoding="unicode"))


def test_unreadable_metadata_is_never_a_reason_to_destroy(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    db, keep = f"{prefix}db", f"{prefix}keep"
    write_manifest(m, "db.yaml", vm_manifest(db, state="stopped", extra="protect: true"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert _apply(m, state).code == 0

    def truncate(mark):  # type: ignore[no-untyped-def]
        applied = mark.find(f"{{{NS}}}applied")
        applied.text = applied.text[:20]

    _edit_mark(testdrv, db, truncate)
    (m / "db.yaml").unlink()
    r = _apply(m, state)
    assert r.code == 1
    assert f"! {db}" in r.stdout and "metadata is unreadable" in r.stdout
    assert testdrv.lookupByName(db)


def test_a_mark_without_instance_is_not_ours(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    vm, keep = f"{prefix}vm", f"{prefix}keep"
    write_manifest(m, "vm.yaml", vm_manifest(vm, state="stopped"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert _apply(m, state).code == 0
    _edit_mark(testdrv, vm, lambda mark: mark.remove(mark.find(f"{{{NS}}}instance")))
    (m / "vm.yaml").unlink()
    r = _apply(m, state)
    assert r.code == 0
    assert vm not in r.stdout  # not destroyed, not even mentioned
    assert testdrv.lookupByName(vm)


def test_graphics_moved_off_loopback_by_hand_is_set_back(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    vm = f"{prefix}gfx"
    write_manifest(m, "vm.yaml", vm_manifest(vm, state="stopped", extra="graphics: vnc"))
    assert _apply(m, state).code == 0
    dom = testdrv.lookupByName(vm)
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).replace("127.0.0.1", "0.0.0.0")
    testdrv.defineXML(xml)
    r = run_cli("plan", "--connect", URI, m)
    assert "graphics vnc@0.0.0.0 -> vnc" in r.stdout
    assert _apply(m, state).code == 0
    xml = testdrv.lookupByName(vm).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    assert "0.0.0.0" not in xml and "listen='127.0.0.1'" in xml
    assert run_cli("plan", "--detailed-exitcode", "--connect", URI, m).code == 0


def test_a_single_file_path_never_destroys_the_rest(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    a, b = f"{prefix}a", f"{prefix}b"
    write_manifest(m, "a.yaml", vm_manifest(a, state="stopped"))
    write_manifest(m, "b.yaml", vm_manifest(b, state="stopped"))
    assert _apply(m, state).code == 0
    r = _apply(m / "a.yaml", state)
    assert f"! {b}" in r.stdout and "PATH is a single file" in r.stdout
    assert testdrv.lookupByName(b)


def test_one_vm_that_crashes_the_builder_does_not_stop_the_others(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    # A cloud-init seed: the test driver cannot upload a volume (no storage streams), so this
    # VM fails at apply, alone (what the plan can see it refuses before: pools, networks,
    # bridges, images).
    write_manifest(m, "big.yaml", vm_manifest(f"{prefix}big", state="stopped",
                                              extra='cloudInit: {userData: "#cloud-config"}\n'
                                                    'disks: [{name: root, size: 1MiB, '
                                                    'pool: default-pool}]'))
    write_manifest(m, "ok.yaml", vm_manifest(f"{prefix}ok", state="stopped"))
    r = _apply(m, state)
    assert r.code == 1
    assert f"{prefix}big: create failed" in r.stdout
    assert testdrv.lookupByName(f"{prefix}ok")


def test_config_types_are_checked(tmp_path):
    (tmp_path / "c.yaml").write_text("storageRoots: /var/lib/libvirt/images\nmaxDestroy: '5'\n")
    r = run_cli("validate", "--config", tmp_path / "c.yaml", tmp_path)
    assert r.code == 1
    assert "maxDestroy must be a whole number >= 0" in r.stderr
    assert "storageRoots must be a list of absolute paths" in r.stderr


def test_a_volume_of_another_vm_is_never_shared_or_deleted(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    # `<p>web` with disk `a-b` and `<p>web-a` with disk `b` both map to volume `<p>web-a-b`.
    write_manifest(m, "web.yaml", vm_manifest(
        f"{prefix}web", state="stopped", extra="protect: true",
        disks="- {name: a-b, size: 1MiB, pool: default-pool, reclaim: delete}"))
    assert _apply(m, state).code == 0
    write_manifest(m, "weba.yaml", vm_manifest(
        f"{prefix}web-a", state="stopped",
        disks="- {name: b, size: 1MiB, pool: default-pool, reclaim: delete}"))
    # Both manifests present: validation refuses the pair.
    r = run_cli("validate", m)
    assert r.code == 1
    assert (f"weba.yaml:11:8: spec.disks[0].name: volume '{prefix}web-a-b' in pool "
            f"'default-pool' is also the disk volume of VM '{prefix}web'") in r.stdout
    # The owner's manifest gone (it is protected, so it stays): the executor still refuses to
    # take the volume over.
    (m / "web.yaml").unlink()
    r = _apply(m, state)
    assert r.code == 1
    assert f"volume {prefix}web-a-b in pool default-pool already exists and is a disk of " \
           f"{prefix}web" in r.stdout
    pool = testdrv.storagePoolLookupByName("default-pool")
    assert pool.storageVolLookupByName(f"{prefix}web-a-b")
    assert testdrv.lookupByName(f"{prefix}web")
