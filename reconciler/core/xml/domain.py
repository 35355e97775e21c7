"""Domain XML: build it from a spec, read a spec back from it, edit it in place. Pure.

XML is always built with lxml, never by pasting strings. Edits keep every element the tool does
not manage (added by libvirt or by hand).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from lxml import etree

from reconciler.core.model.common import Mark
from reconciler.core.model.vm import Disk, Nic, PowerState, VMSpec
from reconciler.core.xml.common import mark_element, memory_bytes, parse, set_mark, sub
from reconciler.core.xml.devices import (
    VolumeKey,
    disk_element,
    edit_disks,
    edit_nics,
    edit_seed,
    next_target,
    nic_element,
    read_disk,
    read_graphics,
    read_guest_agent,
    read_nic,
    read_seed,
    seed_element,
    set_graphics,
    set_guest_agent,
)


def _to_string(root: etree._Element) -> str:
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text


def build_domain(spec: VMSpec, *, domain_type: str, mark: Mark) -> str:
    """A new domain's XML for ``spec``."""
    root = etree.Element("domain", type=domain_type)
    sub(root, "name", spec.name)
    _set_description(root, spec.description)
    etree.SubElement(root, "metadata").append(mark_element(mark))
    sub(root, "memory", str(spec.max_memory // 1024), unit="KiB")
    sub(root, "currentMemory", str(spec.memory // 1024), unit="KiB")
    sub(root, "vcpu", str(spec.max_vcpus), placement="static", current=str(spec.vcpus))
    _set_vcpus(root, spec)
    os_element = sub(root, "os")
    sub(os_element, "type", "hvm", arch="x86_64")
    _set_firmware(os_element, spec.firmware)
    _set_boot(root, os_element, spec.boot)
    # No boot device: halt instead of rebooting forever and burning a core.
    sub(os_element, "bios", rebootTimeout="-1")
    features = sub(root, "features")
    sub(features, "acpi")
    sub(features, "apic")
    sub(root, "on_poweroff", "destroy")
    sub(root, "on_reboot", "restart")
    sub(root, "on_crash", "destroy")
    devices = sub(root, "devices")
    used: set[str] = set()
    for disk in spec.disks:
        devices.append(disk_element(spec.name, disk, next_target(disk.bus, used)))
    if spec.cloud_init:
        devices.append(seed_element(spec.name, spec.cloud_init, next_target("sata", used)))
    for nic in spec.nics:
        devices.append(nic_element(nic))
    set_graphics(devices, spec.graphics)
    set_guest_agent(devices, spec.guest_agent)
    sub(sub(devices, "serial", type="pty"), "target", port="0")
    sub(sub(devices, "console", type="pty"), "target", type="serial", port="0")
    sub(devices, "memballoon", model="virtio")
    return _to_string(root)


def _set_vcpus(root: etree._Element, spec: VMSpec) -> None:
    """Every vCPU above the first is hot-pluggable, so that libvirt can also unplug it."""
    for old in root.findall("vcpus"):
        root.remove(old)
    if spec.max_vcpus <= 1:
        return
    vcpus = etree.Element("vcpus")
    for i in range(spec.max_vcpus):
        attrs = {"id": str(i), "enabled": "yes" if i < spec.vcpus else "no",
                 "hotpluggable": "no" if i == 0 else "yes"}
        if i < spec.vcpus:
            attrs["order"] = str(i + 1)
        sub(vcpus, "vcpu", **attrs)
    root.find("vcpu").addnext(vcpus)


def _set_firmware(os_element: etree._Element, firmware: str) -> None:
    """UEFI by libvirt's firmware autoselection (OVMF); the NVRAM is created per VM."""
    if firmware == "uefi":
        os_element.set("firmware", "efi")
    elif os_element.get("firmware") == "efi":
        del os_element.attrib["firmware"]
        for tag in ("loader", "nvram", "firmware"):
            for old in os_element.findall(tag):
                os_element.remove(old)


# A device's per-device <boot order=N/> as the boot device names of <os><boot dev=.../>.
_BOOT_DEV = {"disk": "hd", "cdrom": "cdrom", "floppy": "fd", "interface": "network"}


def read_boot(root: etree._Element) -> tuple[str, ...]:
    """The boot order: <os><boot dev=...> elements, or else the devices' own <boot order=N>
    (virt-install writes those; libvirt refuses both kinds in one domain), as boot device
    names in order; libvirt's default ("hd") when neither is there."""
    named = tuple(b.get("dev", "hd") for b in root.iterfind("os/boot"))
    if named:
        return named
    ordered = []
    for element in root.iterfind("devices/*[boot]"):
        kind = element.get("device", "disk") if element.tag == "disk" else element.tag
        order = element.find("boot").get("order", "")
        if kind in _BOOT_DEV and order.isdigit():
            ordered.append((int(order), _BOOT_DEV[kind]))
    return tuple(dict.fromkeys(dev for _, dev in sorted(ordered))) or ("hd",)


def _set_boot(root: etree._Element, os_element: etree._Element,
              boot: tuple[str, ...]) -> None:
    """The boot order as ``boot`` says, left as it is (per device too) when it already is."""
    if read_boot(root) == boot:
        return
    for element in root.iterfind("devices/*/boot"):  # never beside <os><boot> (libvirt)
        element.getparent().remove(element)
    for old in os_element.findall("boot"):
        os_element.remove(old)
    anchor = os_element.find("nvram")
    if anchor is None:
        anchor = os_element.find("loader")
    if anchor is None:
        anchor = os_element.find("type")
    for dev in reversed(boot):
        anchor.addnext(etree.Element("boot", dev=dev))


# --- reading -----------------------------------------------------------------------------------


def read_spec(
    root: etree._Element,
    *,
    running: bool,
    autostart: bool,
    volumes: Mapping[VolumeKey, int],
    applied: Mapping[str, Any],
) -> VMSpec:
    """The spec a domain's XML describes. Disks are those whose volume is named ``<vm>-<disk>``;
    settings that live only in the tool (policy, protect) come from the last applied record."""
    name = root.findtext("name") or ""
    vcpu = root.find("vcpu")
    max_vcpus = int(vcpu.text) if vcpu is not None and vcpu.text else 1
    current = vcpu.get("current") if vcpu is not None else None
    max_memory = memory_bytes(root.find("memory"))
    memory = memory_bytes(root.find("currentMemory")) or max_memory
    devices = root.find("devices")
    disks: list[Disk] = []
    nics: list[Nic] = []
    graphics = "none"
    cloud_init = None
    if devices is not None:
        disks = [d for d in (read_disk(name, e, volumes) for e in devices.iter("disk")) if d]
        nics = [n for n in (read_nic(e) for e in devices.iter("interface")) if n]
        graphics = read_graphics(devices)  # anything exposed differs from every manifest
        cloud_init = read_seed(name, devices, volumes, applied)
    applied_disks = {d.get("name"): d for d in applied.get("disks", []) if isinstance(d, dict)}
    disks = [
        replace(d, image=applied_disks.get(d.name, {}).get("image"),
                reclaim=applied_disks.get(d.name, {}).get("reclaim", "retain"))
        for d in disks
    ]
    return VMSpec(
        name=name,
        vcpus=int(current) if current else max_vcpus,
        max_vcpus=max_vcpus,
        memory=memory,
        max_memory=max_memory,
        state=PowerState.RUNNING if running else PowerState.STOPPED,
        autostart=autostart,
        update_policy=str(applied.get("updatePolicy", "live")),
        shutdown_timeout=int(applied.get("shutdownTimeout", 60)),
        protect=bool(applied.get("protect", False)),
        disks=tuple(disks),
        nics=tuple(nics),
        graphics=graphics,
        firmware=_read_firmware(root),
        boot=read_boot(root),
        cloud_init=cloud_init,
        description=root.findtext("description") or "",
        guest_agent=devices is not None and read_guest_agent(devices) is not None,
    )


def _read_firmware(root: etree._Element) -> str:
    os_element = root.find("os")
    if os_element is None:
        return "bios"
    loader = os_element.find("loader")
    efi = os_element.get("firmware") == "efi" or (
        loader is not None and loader.get("type") == "pflash")
    return "uefi" if efi else "bios"


# --- editing -----------------------------------------------------------------------------------


def edit_config(xml: str, spec: VMSpec, *, mark: Mark,
                targets: Mapping[str, str] | None = None) -> str:
    """The persistent XML edited in place to match ``spec``; other elements are kept.
    ``targets``: volume -> target device the plan chose for a disk it adds."""
    root = parse(xml)
    set_mark(root, mark)
    _set_description(root, spec.description)
    root.find("memory").text = str(spec.max_memory // 1024)
    root.find("memory").set("unit", "KiB")
    current = root.find("currentMemory")
    if current is None:
        current = etree.Element("currentMemory")
        root.find("memory").addnext(current)
    current.text, current.attrib["unit"] = str(spec.memory // 1024), "KiB"
    vcpu = root.find("vcpu")
    counts = (int(vcpu.get("current", vcpu.text or "1")), int(vcpu.text or "1"))
    if counts != (spec.vcpus, spec.max_vcpus):
        # Only a change of the counts rewrites the vCPUs (and their hot-plug layout): an
        # adopted domain's own <vcpus> stays as it is through any other change.
        vcpu.text = str(spec.max_vcpus)
        vcpu.set("current", str(spec.vcpus))
        _set_vcpus(root, spec)
    os_element = root.find("os")
    if os_element is not None:
        if _read_firmware(root) != spec.firmware:
            _set_firmware(os_element, spec.firmware)
        _set_boot(root, os_element, spec.boot)
    devices = root.find("devices")
    edit_disks(devices, root, spec, targets)
    edit_seed(devices, root, spec)
    edit_nics(devices, spec)
    if read_graphics(devices) != spec.graphics:
        # Rebuilt (one device, on 127.0.0.1 only) when it differs, also in what it exposes;
        # otherwise left as it is: hand-set options survive.
        set_graphics(devices, spec.graphics)
    if (read_guest_agent(devices) is not None) != spec.guest_agent:
        set_guest_agent(devices, spec.guest_agent)
    return _to_string(root)




def _set_description(root: etree._Element, text: str) -> None:
    """<description> (``virsh desc``): where libvirt writes it, after <name>, <uuid> and
    <title>; none when ``text`` is empty."""
    element = root.find("description")
    if not text:
        if element is not None:
            root.remove(element)
        return
    if element is None:
        element = etree.Element("description")
        anchor = next(e for tag in ("title", "uuid", "name") if (e := root.find(tag)) is not None)
        anchor.addnext(element)
    element.text = text
