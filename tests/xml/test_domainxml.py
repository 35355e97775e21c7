"""Domain XML: golden inputs read into the model, build/read round trips, edits in place."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from reconciler.core.model.common import Mark
from reconciler.core.model.vm import Disk, LiveHold, Nic, PowerState, VMSpec
from reconciler.core.units import parse_quantity
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import domain as domainxml

HERE = Path(__file__).parent
GiB = 1 << 30
MiB = 1 << 20


def _size(value: int | str) -> int:
    return value if isinstance(value, int) else parse_quantity(value)


def _spec(data: dict[str, Any]) -> VMSpec:
    """A VMSpec from a *-spec.yaml: model field names, sizes as quantities."""
    fields = dict(data)
    for key in ("memory", "max_memory"):
        fields[key] = _size(fields[key])
    fields["state"] = PowerState(fields.get("state", "running"))
    fields["disks"] = tuple(Disk(**{**d, "size": _size(d["size"])})
                            for d in fields.get("disks", []))
    fields["nics"] = tuple(Nic(**n) for n in fields.get("nics", []))
    return VMSpec(**fields)


def _read(root: etree._Element, golden: dict[str, Any]) -> VMSpec:
    volumes = {tuple(key.split("/")): _size(size) for key, size in golden["volumes"].items()}
    mark = xmlcommon.read_mark(root)
    return domainxml.read_spec(root, running=golden["running"], autostart=golden["autostart"],
                               volumes=volumes, applied=mark.applied if mark else {})


GOLDEN = sorted(p.name.removesuffix("-in.xml") for p in HERE.glob("*-in.xml"))


@pytest.mark.parametrize("name", GOLDEN)
def test_read_golden_xml(name: str) -> None:
    root = xmlcommon.parse((HERE / f"{name}-in.xml").read_text())
    golden = yaml.safe_load((HERE / f"{name}-spec.yaml").read_text())
    assert _read(root, golden) == _spec(golden["spec"])
    mark = xmlcommon.read_mark(root)
    if golden["mark"] is None:
        assert mark is None
    else:
        assert mark is not None
        assert (mark.manifest, mark.spec_hash, mark.commit) == (
            golden["mark"]["manifest"], golden["mark"]["spec_hash"], golden["mark"]["commit"])


def test_golden_inputs_all_have_an_expected_model() -> None:
    assert len(GOLDEN) >= 3
    for name in GOLDEN:
        assert (HERE / f"{name}-spec.yaml").exists(), name


# --- round trip --------------------------------------------------------------------------------

MARK = Mark("web-01.yaml", "0123456789abcdef", None, {})

SPECS = {
    "minimal": VMSpec(name="min-01", vcpus=1, memory=64 * MiB, max_vcpus=1, max_memory=64 * MiB),
    "stopped": VMSpec(name="off-01", vcpus=2, memory=GiB, max_vcpus=2, max_memory=2 * GiB,
                      state=PowerState.STOPPED, autostart=True),
    "full": VMSpec(
        name="web-01", vcpus=2, memory=2 * GiB, max_vcpus=8, max_memory=8 * GiB,
        autostart=True, update_policy="restart", shutdown_timeout=300, protect=True,
        graphics="vnc",
        disks=(Disk("root", 20 * GiB, image="debian-12.qcow2", reclaim="delete"),
               Disk("data", 100 * GiB, pool="fast", format="raw", bus="sata"),
               Disk("logs", 10 * GiB, bus="scsi"),
               Disk("tmp", GiB)),
        nics=(Nic(network="default", mac="52:54:00:12:34:56"), Nic(bridge="br0", model="e1000"),
              Nic(network="isolated", model="rtl8139")),
    ),
}


def _applied(spec: VMSpec) -> dict[str, Any]:
    """What apply records about the tool's own settings (as in the domain's mark)."""
    return {"updatePolicy": spec.update_policy, "shutdownTimeout": spec.shutdown_timeout,
            "protect": spec.protect,
            "disks": [{"name": d.name, "image": d.image, "reclaim": d.reclaim}
                      for d in spec.disks]}


@pytest.mark.parametrize("name", SPECS)
def test_build_then_read_gives_the_spec_back(name: str) -> None:
    spec = SPECS[name]
    mark = dataclasses.replace(MARK, applied=_applied(spec))
    root = xmlcommon.parse(domainxml.build_domain(spec, domain_type="kvm", mark=mark))
    volumes = {(d.pool, d.volume(spec.name)): d.size for d in spec.disks}
    read_back = domainxml.read_spec(root, running=spec.state == PowerState.RUNNING,
                                    autostart=spec.autostart, volumes=volumes,
                                    applied=xmlcommon.read_mark(root).applied)
    assert read_back == spec
    assert xmlcommon.read_mark(root) == mark
    assert xmlcommon.read_mark(root).applied == mark.applied


def test_built_xml_is_safe_and_bootable_as_libvirt_expects() -> None:
    root = xmlcommon.parse(domainxml.build_domain(SPECS["full"], domain_type="kvm", mark=MARK))
    assert root.get("type") == "kvm"
    graphics = root.find("devices/graphics")
    assert graphics.get("listen") == "127.0.0.1"
    assert graphics.find("listen").get("address") == "127.0.0.1"
    assert [t.get("dev") for t in root.iterfind("devices/disk/target")] == [
        "vda", "sda", "sdb", "vdb"]
    assert [v.get("enabled") for v in root.iterfind("vcpus/vcpu")] == ["yes"] * 2 + ["no"] * 6
    assert root.find("vcpus/vcpu[@id='0']").get("hotpluggable") == "no"


def test_names_are_escaped_not_pasted() -> None:
    spec = dataclasses.replace(SPECS["minimal"], name="a</name><evil/>")
    root = xmlcommon.parse(domainxml.build_domain(spec, domain_type="kvm", mark=MARK))
    assert root.findtext("name") == "a</name><evil/>"
    assert root.find(".//evil") is None


# --- edits -------------------------------------------------------------------------------------


def _managed() -> tuple[str, VMSpec]:
    """managed-in.xml and the spec it holds."""
    golden = yaml.safe_load((HERE / "managed-spec.yaml").read_text())
    return (HERE / "managed-in.xml").read_text(), _spec(golden["spec"])


def _edit(xml: str, spec: VMSpec, mark: Mark = MARK) -> etree._Element:
    return xmlcommon.parse(domainxml.edit_config(xml, spec, mark=mark))


def _volumes(root: etree._Element) -> list[str | None]:
    return [s.get("volume") or s.get("file") for s in root.iterfind("devices/disk/source")]


def _without_mark(root: etree._Element) -> bytes:
    """The canonical XML of a domain, its mark left out (that is checked on its own)."""
    root = copy.deepcopy(root)
    for mark in root.iterfind(f"metadata/{{{xmlcommon.NS}}}vm"):
        mark.getparent().replace(mark, etree.Element("mark"))
    return etree.tostring(root, method="c14n")


def test_edit_matches_the_golden_output() -> None:
    """managed-edit-out.xml: vcpus 3, memory 4GiB of 16GiB, disk data and the br0 NIC removed,
    a NIC without MAC added on network isolated."""
    xml, spec = _managed()
    edited = dataclasses.replace(
        spec, vcpus=3, memory=4 * GiB, max_memory=16 * GiB,
        disks=(spec.disks[0], spec.disks[2]),
        nics=(spec.nics[0], Nic(network="isolated")))
    mark = dataclasses.replace(MARK, applied={"protect": True})
    out = xmlcommon.parse(domainxml.edit_config(xml, edited, mark=mark))
    golden = xmlcommon.parse((HERE / "managed-edit-out.xml").read_text())
    assert _without_mark(out) == _without_mark(golden)
    assert xmlcommon.read_mark(out) == mark


def test_edit_without_changes_changes_nothing() -> None:
    xml, spec = _managed()
    before = xmlcommon.parse(xml)
    after = _edit(xml, spec, mark=xmlcommon.read_mark(before))
    assert _without_mark(after) == _without_mark(before)
    assert [e.tag for e in after.find("metadata")] == [e.tag for e in before.find("metadata")]


def test_edit_keeps_what_the_tool_does_not_manage() -> None:
    xml, spec = _managed()
    root = _edit(xml, dataclasses.replace(spec, vcpus=4, disks=spec.disks[:1], nics=()))
    assert root.find("devices/channel/target").get("name") == "org.qemu.guest_agent.0"
    assert [c.get("type") for c in root.iterfind("devices/controller")] == ["usb", "sata", "pci"]
    assert root.find("cpu").get("mode") == "host-passthrough"
    assert root.find("os/type").get("machine") == "pc-q35-8.2"
    assert root.findtext("devices/emulator") == "/usr/bin/qemu-system-x86_64"
    assert root.find("uuid") is not None
    other = root.find("metadata/{https://example.org/other-tool}info")
    assert other is not None and other.text == "kept by hand"
    # the cdrom, the file disk and the user-mode NIC are not the tool's
    assert _volumes(root) == ["web-01-root", "/var/lib/libvirt/images/install.iso",
                              "/srv/shared.img"]
    assert [i.get("type") for i in root.iterfind("devices/interface")] == ["user"]
    # an unchanged graphics type keeps its hand-set options
    assert root.find("devices/graphics").get("passwd") == "hand-set"


def test_edit_removes_exactly_the_removed_disk() -> None:
    xml, spec = _managed()
    root = _edit(xml, dataclasses.replace(spec, disks=(spec.disks[0], spec.disks[2])))
    assert _volumes(root) == ["web-01-root", "web-01-logs", "/var/lib/libvirt/images/install.iso",
                              "/srv/shared.img"]
    logs = root.find("devices/disk/source[@volume='web-01-logs']/..")
    assert logs.find("target").get("dev") == "vdb"  # the others keep their place
    assert logs.find("address").get("bus") == "0x05"


def test_edit_adds_a_disk_on_a_free_target() -> None:
    xml, spec = _managed()
    root = _edit(xml, dataclasses.replace(spec, disks=(*spec.disks, Disk("new", GiB))))
    new = root.find("devices/disk/source[@volume='web-01-new']/..")
    assert new.find("target").get("dev") == "vdd"  # vda, vdb, vdc are taken
    assert new.find("driver").get("type") == "qcow2"
    devices = [e.tag for e in root.find("devices")]
    assert devices[devices.index("controller") - 1] == "disk"  # with the other disks
    assert _volumes(root)[-1] == "web-01-new"


def test_edit_moves_a_disk_to_another_bus() -> None:
    xml, spec = _managed()
    moved = dataclasses.replace(spec.disks[1], bus="virtio")
    root = _edit(xml, dataclasses.replace(spec, disks=(spec.disks[0], moved, spec.disks[2])))
    data = root.find("devices/disk/source[@volume='web-01-data']/..")
    assert data.find("target").attrib == {"dev": "vdd", "bus": "virtio"}
    assert data.find("address") is None  # a sata drive address does not fit virtio
    assert domainxml.read_spec(root, running=True, autostart=True, volumes={},
                               applied={}).disks[1].bus == "virtio"


def test_edit_removes_exactly_the_removed_nic_by_mac() -> None:
    xml, spec = _managed()
    root = _edit(xml, dataclasses.replace(spec, nics=(spec.nics[1],)))
    assert [m.get("address") for m in root.iterfind("devices/interface/mac")] == [
        "52:54:00:aa:bb:02", "52:54:00:aa:bb:03"]


def test_edit_keeps_the_live_mac_of_a_nic_given_without_one() -> None:
    xml, spec = _managed()
    nics = (Nic(network="default"), Nic(bridge="br0", model="e1000"))
    root = _edit(xml, dataclasses.replace(spec, nics=nics))
    assert [m.get("address") for m in root.iterfind("devices/interface/mac")] == [
        "52:54:00:AA:BB:01", "52:54:00:aa:bb:02", "52:54:00:aa:bb:03"]


def test_edit_marks_the_metadata_once() -> None:
    xml, spec = _managed()
    mark = Mark("moved/web-01.yaml", "fedcba9876543210", "f" * 40, {"protect": False})
    root = _edit(xml, spec, mark=mark)
    assert len(root.findall(f"metadata/{{{xmlcommon.NS}}}vm")) == 1
    assert xmlcommon.read_mark(root) == mark
    assert xmlcommon.read_mark(root).applied == {"protect": False}


def test_edit_marks_a_domain_without_metadata() -> None:
    xml = (HERE / "unmanaged-in.xml").read_text()
    spec = _spec(yaml.safe_load((HERE / "unmanaged-spec.yaml").read_text())["spec"])
    root = _edit(xml, spec)
    assert xmlcommon.read_mark(root) == MARK
    assert root.index(root.find("metadata")) == root.index(root.find("name")) + 1
    assert root.find("devices/disk/source").get("file") == "/guest/diskimage1"


def test_edit_changes_sizes_and_vcpus() -> None:
    xml, spec = _managed()
    root = _edit(xml, dataclasses.replace(spec, vcpus=6, max_vcpus=6, memory=3 * GiB))
    assert root.find("vcpu").text == "6"
    assert root.find("vcpu").get("current") == "6"
    assert root.find("vcpu").get("placement") == "static"
    assert len(root.findall("vcpus/vcpu")) == 6
    assert root.find("currentMemory").text == str(3 * GiB // 1024)
    assert root.find("memory").text == str(8 * GiB // 1024)


def test_read_hold_of_a_running_domain() -> None:
    xml = domainxml.build_domain(SPECS["minimal"], domain_type="kvm", mark=MARK)
    root = xmlcommon.parse(xml)
    assert xmlcommon.read_hold(root) is None
    hold = LiveHold(vcpus=4, memory=2 * GiB, reason="no balloon driver")
    root.find("metadata").append(etree.fromstring(xmlcommon.hold_xml(hold)))
    assert xmlcommon.read_hold(xmlcommon.parse(etree.tostring(root, encoding="unicode"))) == hold
