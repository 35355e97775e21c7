"""`reconciler export` and adoption end to end on libvirt's test driver (test:///default).

test:///default is shared by every connection of this process while one is open (the `testdrv`
fixture holds one), so the in-process CLI sees what the test defines. Its pool is `default-pool`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import libvirt
import pytest
import yaml
from conftest import TEST_URI, CliResult, run_cli, without_header
from lxml import etree

from reconciler.adapters import manifests

EXAMPLES = Path(__file__).parents[2] / "manifests"
NS = "https://reconciler.dev/xmlns/domain/v1"
MiB = 1 << 20


def cli(*args: str | Path) -> CliResult:
    return run_cli(*args[:1], "--connect", TEST_URI, *args[1:])


def apply(folder: Path, *args: str | Path) -> CliResult:
    return cli("apply", "--yes", "--state-dir", folder.parent / "state", *args, folder)


def without_metadata(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    for element in root.findall("metadata"):
        root.remove(element)
    return etree.tostring(root, encoding="unicode")


def examples(prefix: str) -> dict[str, list[dict[str, Any]]]:
    """The example VMs (file -> documents), named with this test's prefix, disks in the test
    driver's pool."""
    out = {}
    for path in sorted(EXAMPLES.glob("*.yaml")):
        docs = [d for d in yaml.safe_load_all(path.read_text())
                if d and d.get("kind") == "VirtualMachine"]
        for doc in docs:
            doc["metadata"]["name"] = prefix + doc["metadata"]["name"]
            for disk in doc["spec"].get("disks", []):
                disk["pool"] = "default-pool"
        if docs:
            out[path.name] = docs
    return out


def test_each_example_vm_exports_to_a_manifest_that_plans_no_changes(testdrv, prefix,
                                                                     tmp_path) -> None:
    original = tmp_path / "manifests"
    original.mkdir()
    vms = examples(prefix)
    assert vms, "no example manifests"
    for file, docs in vms.items():
        (original / file).write_text(yaml.safe_dump_all(docs, sort_keys=False))
    r = apply(original)
    assert r.code == 0, r.stdout + r.stderr

    exported = tmp_path / "exported"
    exported.mkdir()
    for file, docs in vms.items():
        texts = []
        for doc in docs:
            r = cli("export", doc["metadata"]["name"])
            assert r.code == 0, r.stderr
            assert f"from the manifest {file}" in r.stdout
            assert "reconciler/adopt" not in r.stdout  # managed by this instance already
            texts.append(r.stdout)
        (exported / file).write_text("---\n".join(texts))

    r = run_cli("validate", exported)
    assert r.code == 0, r.stdout + r.stderr
    # The same specs (labels aside: the domain does not keep them) ...
    before = {vm.spec.name: vm.spec_hash for vm in manifests.load_desired(original).vms}
    after = {vm.spec.name: vm.spec_hash for vm in manifests.load_desired(exported).vms}
    assert after == before
    # ... so applied, they change nothing.
    r = cli("plan", "--detailed-exitcode", exported)
    assert (r.code, without_header(r.stdout)) == (
        0, "No changes. The live state matches the manifests.\n"), (
        r.stdout + r.stderr)


def define_hand_made(conn: libvirt.virConnect, name: str, *, running: bool = True) -> None:
    """A domain made without reconciler: a volume disk <name>-root, a second disk that is not a
    pool volume, a NIC on the network `default`."""
    pool = conn.storagePoolLookupByName("default-pool")
    pool.createXML(f"<volume><name>{name}-root</name><capacity unit='MiB'>16</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    conn.defineXML(f"""
        <domain type='test'>
          <name>{name}</name>
          <memory unit='MiB'>256</memory>
          <currentMemory unit='MiB'>128</currentMemory>
          <vcpu current='1'>2</vcpu>
          <os><type arch='x86_64'>hvm</type></os>
          <devices>
            <disk type='volume' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source pool='default-pool' volume='{name}-root'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <disk type='file' device='disk'>
              <source file='/guest/{name}-scratch.img'/>
              <target dev='vdb' bus='virtio'/>
            </disk>
            <interface type='network'>
              <mac address='52:54:00:3c:00:01'/>
              <source network='default'/>
              <model type='e1000'/>
            </interface>
          </devices>
        </domain>""")
    if running:
        conn.lookupByName(name).create()


def test_a_hand_made_domain_is_exported_and_adopted(testdrv, prefix, tmp_path,
                                                    own_instance) -> None:
    name = f"{prefix}hand"
    define_hand_made(testdrv, name)
    dom = testdrv.lookupByName(name)
    before, domain_id = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE), dom.ID()

    r = cli("export", name)
    assert r.code == 0, r.stderr
    manifest = yaml.safe_load(r.stdout)
    assert manifest["metadata"] == {"name": name, "annotations": {"reconciler/adopt": "true"}}
    assert manifest["spec"] == {
        "vcpus": 1, "maxVcpus": 2, "memory": "128MiB", "maxMemory": "256MiB",
        "state": "running", "autostart": False,
        "disks": [{"name": "root", "size": "16MiB", "pool": "default-pool", "format": "qcow2"}],
        "networks": [{"network": "default", "mac": "52:54:00:3c:00:01", "model": "e1000"}],
        "graphics": "none"}
    assert f"# disk vdb (file /guest/{name}-scratch.img): not a volume" in r.stdout

    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "hand.yaml").write_text(r.stdout)
    r = cli("plan", "--detailed-exitcode", folder)
    assert (r.code, without_header(r.stdout)) == (2, f"~ {name}   adopt\n"
                                     "Plan: 0 to create, 1 to update, 0 to destroy, 0 blocked.\n")
    r = apply(folder)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{name}: adopted\n" in r.stdout

    dom = testdrv.lookupByName(name)
    after = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    mark = etree.fromstring(after.encode()).find(f"metadata/{{{NS}}}vm")
    assert mark is not None
    assert mark.findtext(f"{{{NS}}}instance") == own_instance
    assert mark.findtext(f"{{{NS}}}manifest") == "hand.yaml"
    live_mark = etree.fromstring(dom.XMLDesc(0).encode()).find(f"metadata/{{{NS}}}vm")
    assert live_mark is not None  # on the running domain too
    assert without_metadata(after) == without_metadata(before)
    assert (dom.isActive(), dom.ID()) == (1, domain_id)

    r = cli("plan", "--detailed-exitcode", folder)
    assert (r.code, without_header(r.stdout)) == (
        0, "No changes. The live state matches the manifests.\n")


def test_a_manifest_that_does_not_match_is_not_adopted(testdrv, prefix, tmp_path) -> None:
    name = f"{prefix}hand"
    define_hand_made(testdrv, name, running=False)
    before = testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    manifest = yaml.safe_load(cli("export", name).stdout)
    manifest["spec"].update(vcpus=2, state="running")
    manifest["spec"]["disks"][0]["size"] = "32MiB"
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "hand.yaml").write_text(yaml.safe_dump(manifest))

    r = cli("plan", folder)
    assert r.code == 1
    assert r.stdout.splitlines()[0] == (
        f"! {name}   adopt refused: vcpus 1 -> 2, disk root 16MiB -> 32MiB, "
        "state stopped -> running; make the manifest match the domain first")
    r = apply(folder)
    assert r.code == 1
    dom = testdrv.lookupByName(name)
    assert dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert not dom.isActive()
    pool = testdrv.storagePoolLookupByName("default-pool")
    assert pool.storageVolLookupByName(f"{name}-root").info()[1] == 16 * MiB


def test_a_domain_of_another_instance_is_never_adopted(testdrv, prefix, tmp_path) -> None:
    name = f"{prefix}web"
    folder = tmp_path / "manifests"
    folder.mkdir()
    (folder / "web.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: VirtualMachine\nmetadata: {{name: {name}}}\n"
        "spec: {vcpus: 1, memory: 64MiB, state: stopped}\n")
    assert apply(folder, "--instance", f"{prefix}other").code == 0
    before = testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)

    r = cli("export", name)
    assert r.code == 0, r.stderr
    assert f"Managed by another reconciler instance ('{prefix}other')" in r.stdout
    manifest = yaml.safe_load(r.stdout)
    manifest["metadata"]["annotations"] = {"reconciler/adopt": "true"}
    (folder / "web.yaml").write_text(yaml.safe_dump(manifest))
    r = cli("plan", folder)
    assert r.code == 1
    assert f"! {name}   conflict: the domain is managed by another reconciler instance" in (
        r.stdout)
    assert apply(folder).code == 1
    assert testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before


def test_export_of_an_unknown_name_exits_1(testdrv, prefix) -> None:
    r = cli("export", f"{prefix}nothing")
    assert r.code == 1
    assert r.stderr == f"reconciler: no domain named '{prefix}nothing' on {TEST_URI}\n"
    assert r.stdout == ""


@pytest.mark.parametrize("fmt", ["json"])
def test_export_as_json_gives_the_manifest_and_the_notes(testdrv, fmt) -> None:
    r = cli("export", "test", "--format", fmt)
    assert r.code == 0, r.stderr
    document = json.loads(r.stdout)
    assert document["manifest"]["metadata"]["name"] == "test"
    assert any("not a volume of a storage pool" in note for note in document["notes"])
