"""Adoption on the real libvirtd: a running QEMU domain made by hand is exported, then adopted
without being touched (only the mark is recorded), and a manifest that does not match is
refused."""

from __future__ import annotations

import libvirt
import yaml
from conftest import CliResult, accelerator, run_cli, without_header
from lxml import etree

NS = "https://reconciler.dev/xmlns/domain/v1"


def cli(host, *args: object) -> CliResult:  # type: ignore[no-untyped-def]
    r = run_cli(*args[:1], "--connect", host.uri, *args[1:])  # type: ignore[arg-type]
    print(f"$ {' '.join(map(str, args))} -> {r.code}\n{r.stdout}{r.stderr}")
    return r


def without_metadata(xml: str) -> str:
    root = etree.fromstring(xml.encode())
    for element in root.findall("metadata"):
        root.remove(element)
    return etree.tostring(root, encoding="unicode")


def mark_of(xml: str) -> etree._Element | None:
    return etree.fromstring(xml.encode()).find(f"metadata/{{{NS}}}vm")


def define_by_hand(host, name: str, network: str) -> None:  # type: ignore[no-untyped-def]
    """What an operator might have made with virsh: a volume disk, a NIC, started."""
    pool = host.conn.storagePoolLookupByName("default")
    pool.createXML(f"<volume><name>{name}-root</name><capacity unit='MiB'>16</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    kind = "kvm" if accelerator(host.conn) == "kvm" else "qemu"
    host.conn.defineXML(f"""
        <domain type='{kind}'>
          <name>{name}</name>
          <memory unit='MiB'>64</memory>
          <vcpu current='1'>2</vcpu>
          <os>
            <type arch='x86_64'>hvm</type>
            <boot dev='hd'/>
            <bios rebootTimeout='-1'/>
          </os>
          <on_reboot>destroy</on_reboot>
          <devices>
            <disk type='volume' device='disk'>
              <driver name='qemu' type='qcow2'/>
              <source pool='default' volume='{name}-root'/>
              <target dev='vda' bus='virtio'/>
            </disk>
            <interface type='network'>
              <mac address='52:54:00:3c:00:02'/>
              <source network='{network}'/>
              <model type='virtio'/>
            </interface>
          </devices>
        </domain>""")
    host.domain(name).create()


def test_a_running_hand_made_domain_is_adopted_without_being_touched(host, tmp_path,
                                                                     own_instance):
    name = f"{host.prefix}hand"
    network = host.network()
    define_by_hand(host, name, network)
    dom = host.domain(name)
    before, domain_id = host.xml(name, inactive=True), dom.ID()
    assert mark_of(before) is None

    r = cli(host, "export", name)
    assert r.code == 0
    exported = yaml.safe_load(r.stdout)
    assert exported["metadata"]["annotations"] == {"reconciler/adopt": "true"}
    assert exported["spec"] == {
        "vcpus": 1, "maxVcpus": 2, "memory": "64MiB", "state": "running", "autostart": False,
        "disks": [{"name": "root", "size": "16MiB", "pool": "default", "format": "qcow2"}],
        "networks": [{"network": network, "mac": "52:54:00:3c:00:02", "model": "virtio"}],
        "graphics": "none"}
    folder = tmp_path / "manifests"
    folder.mkdir()

    # A manifest with the annotation that does not match: refused, nothing changes.
    wrong = yaml.safe_load(r.stdout)
    wrong["spec"].update(vcpus=2, memory="128MiB", maxMemory="128MiB")
    (folder / "hand.yaml").write_text(yaml.safe_dump(wrong, sort_keys=False))
    r = cli(host, "plan", folder)
    assert r.code == 1
    assert r.stdout.splitlines()[0] == (
        f"! {name}   adopt refused: maxMemory 64MiB -> 128MiB, vcpus 1 -> 2, memory 64MiB -> "
        "128MiB; make the manifest match the domain first")
    r = cli(host, "apply", "--yes", "--state-dir", tmp_path / "state", folder)
    assert r.code == 1
    assert host.xml(name, inactive=True) == before
    assert (dom.isActive(), dom.ID()) == (1, domain_id)

    # The exported manifest: adopted, only the mark is written.
    (folder / "hand.yaml").write_text(cli(host, "export", name).stdout)
    r = cli(host, "plan", "--detailed-exitcode", folder)
    assert (r.code, without_header(r.stdout)) == (2, f"~ {name}   adopt\n"
                                     "Plan: 0 to create, 1 to update, 0 to destroy, 0 blocked.\n")
    r = cli(host, "apply", "--yes", "--state-dir", tmp_path / "state", folder)
    assert r.code == 0
    assert f"{name}: adopted\n" in r.stdout

    after = host.xml(name, inactive=True)
    mark = mark_of(after)
    assert mark is not None
    assert mark.findtext(f"{{{NS}}}instance") == own_instance
    assert mark.findtext(f"{{{NS}}}manifest") == "hand.yaml"
    assert mark_of(host.xml(name)) is not None  # on the running domain too
    assert without_metadata(after) == without_metadata(before)
    dom = host.domain(name)
    assert dom.state()[0] == libvirt.VIR_DOMAIN_RUNNING and dom.ID() == domain_id

    r = cli(host, "plan", "--detailed-exitcode", folder)
    assert (r.code, without_header(r.stdout)) == (
        0, "No changes. The live state matches the manifests.\n")
