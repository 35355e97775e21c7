"""Domain XML: build it from a spec, read a spec back from it, edit it in place. Pure.

XML is always built with lxml, never by pasting strings. Edits keep every element the tool does
not manage (added by libvirt or by hand).
"""

from __future__ import annotations

import copy
import json
import string
from collections.abc import Mapping
from typing import Any

from lxml import etree

from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import CloudInit, Disk, LiveHold, Nic, PowerState, VMSpec

NS = "https://reconciler.dev/xmlns/domain/v1"
HOLD_NS = "https://reconciler.dev/xmlns/live-hold/v1"
MARK_KEY = "reconciler"
HOLD_KEY = "reconciler-hold"
_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd"}
_PARSER = etree.XMLParser(remove_blank_text=True, resolve_entities=False, no_network=True)

VolumeKey = tuple[str, str]  # (pool, volume)
Element = etree._Element


def _sub(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    element = etree.SubElement(parent, tag, {k: v for k, v in attrs.items() if v is not None})
    if text is not None:
        element.text = text
    return element


def _to_string(root: etree._Element) -> str:
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text


def to_xml(element: etree._Element) -> str:
    """One element (a device) as XML text, for libvirt's device calls."""
    text: str = etree.tostring(element, encoding="unicode")
    return text


def mark_element(mark: Mark) -> etree._Element:
    root = etree.Element(f"{{{NS}}}vm", nsmap={MARK_KEY: NS})
    _sub(root, f"{{{NS}}}instance", mark.instance)
    _sub(root, f"{{{NS}}}manifest", mark.manifest)
    _sub(root, f"{{{NS}}}spec-hash", mark.spec_hash)
    if mark.commit:
        _sub(root, f"{{{NS}}}commit", mark.commit)
    _sub(root, f"{{{NS}}}applied", json.dumps(mark.applied, sort_keys=True))
    return root


def mark_xml(mark: Mark) -> str:
    return to_xml(mark_element(mark))


def hold_xml(hold: LiveHold) -> str:
    attrs = {"reason": hold.reason}
    if hold.vcpus is not None:
        attrs["vcpus"] = str(hold.vcpus)
    if hold.memory is not None:
        attrs["memory"] = str(hold.memory)
    if hold.seen_vcpus is not None:
        attrs["seen-vcpus"] = str(hold.seen_vcpus)
    if hold.seen_memory is not None:
        attrs["seen-memory"] = str(hold.seen_memory)
    return to_xml(etree.Element(f"{{{HOLD_NS}}}hold", attrs, nsmap={HOLD_KEY: HOLD_NS}))


def build_domain(spec: VMSpec, *, domain_type: str, mark: Mark) -> str:
    """A new domain's XML for ``spec``."""
    root = etree.Element("domain", type=domain_type)
    _sub(root, "name", spec.name)
    etree.SubElement(root, "metadata").append(mark_element(mark))
    _sub(root, "memory", str(spec.max_memory // 1024), unit="KiB")
    _sub(root, "currentMemory", str(spec.memory // 1024), unit="KiB")
    _sub(root, "vcpu", str(spec.max_vcpus), placement="static", current=str(spec.vcpus))
    _set_vcpus(root, spec)
    os_element = _sub(root, "os")
    _sub(os_element, "type", "hvm", arch="x86_64")
    _set_firmware(os_element, spec.firmware)
    _set_boot(os_element, spec.boot)
    # No boot device: halt instead of rebooting forever and burning a core.
    _sub(os_element, "bios", rebootTimeout="-1")
    features = _sub(root, "features")
    _sub(features, "acpi")
    _sub(features, "apic")
    _sub(root, "on_poweroff", "destroy")
    _sub(root, "on_reboot", "restart")
    _sub(root, "on_crash", "destroy")
    devices = _sub(root, "devices")
    used: set[str] = set()
    for disk in spec.disks:
        devices.append(disk_element(spec.name, disk, _next_target(disk.bus, used)))
    if spec.cloud_init:
        devices.append(seed_element(spec.name, spec.cloud_init, _next_target("sata", used)))
    for nic in spec.nics:
        devices.append(nic_element(nic))
    _set_graphics(devices, spec.graphics)
    _sub(_sub(devices, "serial", type="pty"), "target", port="0")
    _sub(_sub(devices, "console", type="pty"), "target", type="serial", port="0")
    _sub(devices, "memballoon", model="virtio")
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
        _sub(vcpus, "vcpu", **attrs)
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


def _set_boot(os_element: etree._Element, boot: tuple[str, ...]) -> None:
    current = tuple(b.get("dev") for b in os_element.findall("boot"))
    if current == boot:
        return
    for old in os_element.findall("boot"):
        os_element.remove(old)
    anchor = os_element.find("nvram")
    if anchor is None:
        anchor = os_element.find("loader")
    if anchor is None:
        anchor = os_element.find("type")
    for dev in reversed(boot):
        anchor.addnext(etree.Element("boot", dev=dev))


def _next_target(bus: str, used: set[str]) -> str:
    prefix = _BUS_PREFIX[bus]
    for letter in string.ascii_lowercase:
        if prefix + letter not in used:
            used.add(prefix + letter)
            return prefix + letter
    raise ValueError("too many disks")


def disk_element(vm: str, disk: Disk, target: str) -> etree._Element:
    element = etree.Element("disk", type="volume", device="disk")
    _sub(element, "driver", name="qemu", type=disk.format, discard="unmap")
    _sub(element, "source", pool=disk.pool, volume=disk.volume(vm))
    _sub(element, "target", dev=target, bus=disk.bus)
    return element


def seed_element(vm: str, seed: CloudInit, target: str) -> etree._Element:
    """The cloud-init seed volume as a read-only SATA CD-ROM."""
    element = etree.Element("disk", type="volume", device="cdrom")
    _sub(element, "driver", name="qemu", type="raw")
    _sub(element, "source", pool=seed.pool, volume=seed_volume(vm))
    _sub(element, "target", dev=target, bus="sata")
    _sub(element, "readonly")
    return element


def _is_seed(vm: str, element: etree._Element) -> bool:
    source = element.find("source")
    return (element.get("device") == "cdrom" and source is not None
            and source.get("volume") == seed_volume(vm))


def seed_ejected_xml(root: etree._Element, vm: str) -> str | None:
    """The seed CD-ROM of ``root`` with its medium taken out (for a live eject), or None."""
    for element in root.iterfind("devices/disk"):
        if _is_seed(vm, element):
            ejected = copy.deepcopy(element)
            ejected.remove(ejected.find("source"))
            return to_xml(ejected)
    return None


def disk_xml(vm: str, disk: Disk, target: str) -> str:
    return to_xml(disk_element(vm, disk, target))


def nic_element(nic: Nic) -> etree._Element:
    kind = "network" if nic.network else "bridge"
    element = etree.Element("interface", type=kind)
    if nic.mac:
        _sub(element, "mac", address=nic.mac)
    _sub(element, "source", **{kind: nic.network or nic.bridge or ""})
    _sub(element, "model", type=nic.model)
    return element


def nic_xml(nic: Nic) -> str:
    return to_xml(nic_element(nic))


def _set_graphics(devices: etree._Element, graphics: str) -> None:
    for old in devices.findall("graphics"):
        devices.remove(old)
    if graphics != "none":
        element = _sub(devices, "graphics", type=graphics, autoport="yes", listen="127.0.0.1")
        _sub(element, "listen", type="address", address="127.0.0.1")


LOOPBACK = ("127.0.0.1", "localhost", "::1")
UNKNOWN_SIZE = -1  # the volume could not be found or read


def graphics_listen(element: etree._Element) -> str:
    """The address a <graphics> element listens on (libvirt's default: 127.0.0.1 per qemu.conf,
    shown here as 127.0.0.1)."""
    address = element.find("listen[@address]")
    listen = address.get("address", "") if address is not None else element.get("listen", "")
    if not listen and element.find("listen[@type='socket']") is not None:
        return "127.0.0.1"  # a UNIX socket: not on the network at all
    return listen or "127.0.0.1"


# --- reading -----------------------------------------------------------------------------------


# libvirt's memory units: binary (k, KiB, M, MiB, ...) and decimal (KB, MB, ...).
_UNITS = {
    "b": 1, "bytes": 1, "k": 1024,
    **{unit: 1024**power for power, letter in enumerate("KMGTPE", 1)
       for unit in (letter, f"{letter}iB")},
    **{f"{letter}B": 1000**power for power, letter in enumerate("KMGTPE", 1)},
}


def memory_bytes(element: etree._Element | None) -> int:
    """Bytes of a libvirt memory element (its unit defaults to KiB)."""
    if element is None or not element.text:
        return 0
    unit: str = element.get("unit", "KiB")
    size: int = int(element.text) * _UNITS.get(unit, 1024)
    return size


def read_mark(root: etree._Element) -> Mark | None:
    element = root.find(f"metadata/{{{NS}}}vm")
    if element is None:
        return None
    try:
        applied = json.loads(element.findtext(f"{{{NS}}}applied") or "")
    except ValueError:
        applied = None
    corrupt = not isinstance(applied, dict) or not _plausible(applied)
    return Mark(
        manifest=element.findtext(f"{{{NS}}}manifest") or "",
        spec_hash=element.findtext(f"{{{NS}}}spec-hash") or "",
        commit=element.findtext(f"{{{NS}}}commit"),
        applied=applied if isinstance(applied, dict) and not corrupt else {},
        # No instance: not provably ours. It then looks like another instance's domain.
        instance=element.findtext(f"{{{NS}}}instance") or "",
        corrupt=corrupt,
    )


def _plausible(applied: dict[str, Any]) -> bool:
    """The applied record has the types the tool wrote (it may have been edited by hand)."""
    checks = (("protect", bool), ("shutdownTimeout", int), ("updatePolicy", str),
              ("disks", list), ("networks", list))
    return all(isinstance(applied.get(key), kind) for key, kind in checks if key in applied) and (
        all(isinstance(d, dict) for d in applied.get("disks", [])))


def read_hold(root: etree._Element) -> LiveHold | None:
    element = root.find(f"metadata/{{{HOLD_NS}}}hold")
    if element is None:
        return None
    def number(key: str) -> int | None:
        value = element.get(key)
        return int(value) if value else None

    return LiveHold(vcpus=number("vcpus"), memory=number("memory"),
                    reason=element.get("reason", ""), seen_vcpus=number("seen-vcpus"),
                    seen_memory=number("seen-memory"))


def parse(xml: str) -> etree._Element:
    return etree.fromstring(xml.encode(), _PARSER)


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
        disks = [d for d in (_read_disk(name, e, volumes) for e in devices.iter("disk")) if d]
        nics = [n for n in (read_nic(e) for e in devices.iter("interface")) if n]
        element = devices.find("graphics")
        if element is not None:
            graphics = element.get("type", "none")
            listen = graphics_listen(element)
            if listen not in LOOPBACK:
                graphics = f"{graphics}@{listen}"  # differs from any manifest: diffed and fixed
        cloud_init = _read_seed(name, devices, volumes, applied)
    applied_disks = {d.get("name"): d for d in applied.get("disks", []) if isinstance(d, dict)}
    disks = [
        Disk(name=d.name, size=d.size, pool=d.pool, format=d.format, bus=d.bus,
             image=applied_disks.get(d.name, {}).get("image"),
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
        boot=tuple(b.get("dev", "hd") for b in root.iterfind("os/boot")) or ("hd",),
        cloud_init=cloud_init,
    )


def _read_seed(vm: str, devices: etree._Element, volumes: Mapping[VolumeKey, int],
               applied: Mapping[str, Any]) -> CloudInit | None:
    """The seed CD-ROM. Its content is known only by the hash in the applied record, and only
    while its volume exists (a missing volume reads as unknown content, so it is rebuilt)."""
    for element in devices.iterfind("disk"):
        if _is_seed(vm, element):
            pool = element.find("source").get("pool", "")
            recorded = applied.get("cloudInit")
            known = isinstance(recorded, str) and (pool, seed_volume(vm)) in volumes
            return CloudInit(digest=str(recorded) if known else "", pool=pool)
    return None


def _read_firmware(root: etree._Element) -> str:
    os_element = root.find("os")
    if os_element is None:
        return "bios"
    loader = os_element.find("loader")
    efi = os_element.get("firmware") == "efi" or (
        loader is not None and loader.get("type") == "pflash")
    return "uefi" if efi else "bios"


def _read_disk(vm: str, element: etree._Element, volumes: Mapping[VolumeKey, int]) -> Disk | None:
    if element.get("device", "disk") != "disk":
        return None
    source = element.find("source")
    if source is None or source.get("volume") is None:
        return None
    pool, volume = source.get("pool", ""), source.get("volume", "")
    if not volume.startswith(f"{vm}-"):
        return None
    driver = element.find("driver")
    target = element.find("target")
    return Disk(
        name=volume[len(vm) + 1:],
        size=volumes.get((pool, volume), UNKNOWN_SIZE),
        pool=pool,
        format=driver.get("type", "raw") if driver is not None else "raw",
        bus=target.get("bus", "virtio") if target is not None else "virtio",
    )


def read_nic(element: etree._Element) -> Nic | None:
    source = element.find("source")
    kind = element.get("type")
    if source is None or kind not in ("network", "bridge"):
        return None
    mac = element.find("mac")
    model = element.find("model")
    return Nic(
        network=source.get("network") if kind == "network" else None,
        bridge=source.get("bridge") if kind == "bridge" else None,
        mac=mac.get("address", "").lower() if mac is not None else None,
        model=model.get("type", "virtio") if model is not None else "virtio",
    )


def disk_targets(root: etree._Element) -> dict[str, str]:
    """Volume name -> target dev of each volume disk, e.g. {'web-01-root': 'vda'}."""
    out = {}
    for element in root.iter("disk"):
        source, target = element.find("source"), element.find("target")
        if source is not None and target is not None and source.get("volume"):
            out[source.get("volume")] = target.get("dev")
    return out


def free_target(root: etree._Element, bus: str) -> str:
    used = {t.get("dev") for t in root.iter("target") if t.get("dev")}
    return _next_target(bus, used)


# --- editing -----------------------------------------------------------------------------------


def set_mark(root: etree._Element, mark: Mark) -> None:
    """Put the tool's element into <metadata>, replacing an old one in place (so an unchanged
    spec leaves the XML as it was)."""
    metadata = root.find("metadata")
    if metadata is None:
        metadata = etree.Element("metadata")
        root.find("name").addnext(metadata)
    marks = metadata.findall(f"{{{NS}}}vm")
    for old in marks[1:]:
        metadata.remove(old)
    if marks:
        metadata.replace(marks[0], mark_element(mark))
    else:
        metadata.append(mark_element(mark))


def edit_config(xml: str, spec: VMSpec, *, mark: Mark) -> str:
    """The persistent XML edited in place to match ``spec``; other elements are kept."""
    root = parse(xml)
    set_mark(root, mark)
    root.find("memory").text = str(spec.max_memory // 1024)
    root.find("memory").set("unit", "KiB")
    current = root.find("currentMemory")
    if current is None:
        current = etree.Element("currentMemory")
        root.find("memory").addnext(current)
    current.text, current.attrib["unit"] = str(spec.memory // 1024), "KiB"
    vcpu = root.find("vcpu")
    vcpu.text = str(spec.max_vcpus)
    vcpu.set("current", str(spec.vcpus))
    _set_vcpus(root, spec)
    os_element = root.find("os")
    if os_element is not None:
        if _read_firmware(root) != spec.firmware:
            _set_firmware(os_element, spec.firmware)
        _set_boot(os_element, spec.boot)
    devices = root.find("devices")
    _edit_disks(devices, root, spec)
    _edit_seed(devices, root, spec)
    _edit_nics(devices, spec)
    current_graphics = devices.find("graphics")
    if (current_graphics.get("type") if current_graphics is not None else "none") != spec.graphics:
        _set_graphics(devices, spec.graphics)  # rebuilt only on change: hand-set options survive
    elif current_graphics is not None and graphics_listen(current_graphics) not in LOOPBACK:
        _set_graphics(devices, spec.graphics)  # never anything but 127.0.0.1
    return _to_string(root)


def _edit_disks(devices: etree._Element, root: etree._Element, spec: VMSpec) -> None:
    wanted = {d.volume(spec.name): d for d in spec.disks}
    present = set()
    for element in list(devices.iter("disk")):
        source = element.find("source")
        volume = source.get("volume") if source is not None else None
        if volume is None or not volume.startswith(f"{spec.name}-"):
            continue
        if element.get("device", "disk") != "disk":
            continue  # a CD-ROM: the cloud-init seed is _edit_seed's
        if volume not in wanted:
            devices.remove(element)
        else:
            present.add(volume)
            _set_bus(element, root, wanted[volume].bus)
    anchor = devices.findall("disk")
    for volume, disk in wanted.items():
        if volume in present:
            continue
        element = disk_element(spec.name, disk, free_target(root, disk.bus))
        if anchor:
            anchor[-1].addnext(element)
            anchor.append(element)
        else:
            devices.insert(0, element)
            anchor = [element]


def _edit_seed(devices: etree._Element, root: etree._Element, spec: VMSpec) -> None:
    """Attach, repoint or detach the cloud-init seed CD-ROM; other CD-ROMs are left alone."""
    seeds = [e for e in devices.findall("disk") if _is_seed(spec.name, e)]
    if spec.cloud_init is None:
        for element in seeds:
            devices.remove(element)
        return
    if seeds:
        seeds[0].find("source").set("pool", spec.cloud_init.pool)
        return
    element = seed_element(spec.name, spec.cloud_init, free_target(root, "sata"))
    disks = devices.findall("disk")
    if disks:
        disks[-1].addnext(element)
    else:
        devices.insert(0, element)


def _set_bus(element: etree._Element, root: etree._Element, bus: str) -> None:
    """Move a disk to another bus: a target name of that bus, and a fresh address from libvirt."""
    target = element.find("target")
    if target is None:
        target = _sub(element, "target")
    if target.get("bus") == bus and target.get("dev"):
        return
    dev = target.get("dev") or ""
    if not dev.startswith(_BUS_PREFIX[bus]):
        dev = free_target(root, bus)
    target.set("dev", dev)
    target.set("bus", bus)
    for address in element.findall("address"):
        element.remove(address)


def _edit_nics(devices: etree._Element, spec: VMSpec) -> None:
    live = [(e, read_nic(e)) for e in devices.findall("interface")]
    keep, _, add = match_nics(spec.nics, tuple(n for _, n in live if n))
    kept_ids = {id(n) for n in keep}
    for element, nic in live:
        if nic is not None and id(nic) not in kept_ids:
            devices.remove(element)
    for nic in add:
        element = nic_element(nic)
        interfaces = devices.findall("interface")
        if interfaces:
            interfaces[-1].addnext(element)  # with the other NICs, as libvirt orders them
        else:
            devices.append(element)


def match_nics(
    desired: tuple[Nic, ...], live: tuple[Nic, ...]
) -> tuple[list[Nic], list[Nic], list[Nic]]:
    """Pair NICs by MAC, or, when the manifest gives none, by source and model.

    Returns (live NICs kept, live NICs to remove, desired NICs to add). Pure.
    """
    unmatched = list(live)
    keep: list[Nic] = []
    add: list[Nic] = []
    pending = []
    for nic in desired:
        if nic.mac:
            found = next((n for n in unmatched if n.mac == nic.mac), None)
            if found and same_nic(found, nic):
                unmatched.remove(found)
                keep.append(found)
            else:
                add.append(nic)
        else:
            pending.append(nic)
    for nic in pending:
        found = next((n for n in unmatched if same_nic(n, nic)), None)
        if found:
            unmatched.remove(found)
            keep.append(found)
        else:
            add.append(nic)
    return keep, unmatched, add


def same_nic(live: Nic, desired: Nic) -> bool:
    return (live.network, live.bridge, live.model) == (desired.network, desired.bridge,
                                                       desired.model)
