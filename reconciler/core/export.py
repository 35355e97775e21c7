"""A manifest for an existing domain, so that an operator can adopt a VM made by hand. Pure.

Domain XML and volume sizes in, a manifest out (a dict, then YAML text). What the manifest
format cannot say is listed as notes, printed as comments above the manifest.
"""

from __future__ import annotations

import re
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from lxml import etree

from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import PermanentError
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import Disk, Nic, VMSpec, simple_fields
from reconciler.core.record import Record
from reconciler.core.units import format_bytes, format_duration
from reconciler.core.validate.checks import ADOPT
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import devices as devicexml
from reconciler.core.xml import domain as domainxml

_VM_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_DISK_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_FORMATS = ("qcow2", "raw")
_BUSES = ("virtio", "sata", "scsi")
_MODELS = ("virtio", "e1000", "e1000e", "rtl8139")
_GRAPHICS = ("none", "vnc", "spice")
_BOOT = ("hd", "cdrom", "network")


@dataclass(frozen=True, eq=False, repr=False)
class Exported(Record):
    name: str
    manifest: dict[str, object]
    notes: tuple[str, ...]  # what the manifest does not (or cannot) say, and why


def export_manifest(xml: str, *, running: bool, autostart: bool,
                    volumes: Mapping[devicexml.VolumeKey, int],
                    instance: str = "default") -> Exported:
    """The manifest that describes the domain ``xml`` (its persistent definition). Pure.

    ``volumes`` holds the capacity of the volumes its disks use. An unmanaged domain's manifest
    carries the adopt annotation; a domain of this instance's gets its last applied settings.
    """
    root = xmlcommon.parse(xml)
    name = root.findtext("name") or ""
    if not _VM_NAME.match(name):
        raise PermanentError(
            f"domain {name!r} cannot be exported: a manifest name uses lowercase letters, "
            "digits and '-' (at most 63 characters); rename the domain first (virsh domrename)")
    mark = xmlcommon.read_mark(root)
    applied = mark.applied if mark else {}
    spec = domainxml.read_spec(root, running=running, autostart=autostart, volumes=volumes,
                               applied=applied)
    notes = [_ownership(mark, instance)]
    devices = root.find("devices")
    disk_elements = list(devices.iter("disk")) if devices is not None else []
    nic_elements = list(devices.iter("interface")) if devices is not None else []
    disks = _disks(name, spec, disk_elements, applied, notes)
    networks = _networks(spec.nics, nic_elements, applied, managed=mark is not None, notes=notes)
    graphics = _graphics(spec, notes)
    notes += _memory(spec)
    notes.append(_kept(root))

    metadata: dict[str, object] = {"name": name}
    if mark is None:
        metadata["annotations"] = {ADOPT: "true"}
    body: dict[str, object] = {"vcpus": spec.vcpus}
    if spec.max_vcpus != spec.vcpus:
        body["maxVcpus"] = spec.max_vcpus
    body["memory"] = format_bytes(spec.memory)
    if spec.max_memory != spec.memory:
        body["maxMemory"] = format_bytes(spec.max_memory)
    body["state"] = str(spec.state)
    body["autostart"] = spec.autostart
    if spec.update_policy != "live":
        body["updatePolicy"] = spec.update_policy
    if spec.shutdown_timeout != 60:
        body["shutdownTimeout"] = format_duration(spec.shutdown_timeout)
    if spec.protect:
        body["protect"] = True
    if disks:
        body["disks"] = disks
    if networks:
        body["networks"] = networks
    body["graphics"] = graphics
    if spec.firmware != "bios":
        body["firmware"] = spec.firmware
    boot = _boot(spec.boot, notes)
    if boot != ["hd"]:
        body["boot"] = boot
    for f in simple_fields():
        if getattr(spec, f.name) != f.default:
            body[f.metadata["manifest"]] = getattr(spec, f.name)
    manifest: dict[str, object] = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
                                   "metadata": metadata, "spec": body}
    return Exported(name, manifest, tuple(n for n in notes if n))


# What a manifest governs of a domain; everything else is kept as it is, and export says so.
_GOVERNED = frozenset({"name", "uuid", "title", "description", "metadata", "memory",
                       "currentMemory", "vcpu", "vcpus", "os", "devices"})
_GOVERNED_DEVICES = frozenset({"disk", "interface", "graphics"})
# Of a NIC, the manifest governs its source, MAC and model.
_GOVERNED_NIC = frozenset({"source", "mac", "model", "target", "alias", "address", "boot"})


def _kept(root: etree._Element) -> str:
    """Every element of the domain a manifest does not govern: kept as it is by adoption and
    by every later change (counted by name, in document order)."""
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    for element in root:
        if isinstance(element.tag, str) and element.tag not in _GOVERNED:
            count(f"<{element.tag}>")
    for element in root.iterfind("devices/*"):
        if isinstance(element.tag, str) and element.tag not in _GOVERNED_DEVICES:
            count(f"<{element.tag}>")
    for nic in root.iterfind("devices/interface"):
        for child in nic:
            if isinstance(child.tag, str) and child.tag not in _GOVERNED_NIC:
                count(f"interface <{child.tag}>")
    if not counts:
        return ""
    listed = ", ".join(f"{name} x{n}" if n > 1 else name for name, n in counts.items())
    return f"kept as they are (a manifest does not govern them): {listed}."


def _memory(spec: VMSpec) -> list[str]:
    """Why a domain's memory cannot be written in a manifest, if it cannot."""
    out = []
    for field, size in (("memory", spec.memory), ("maxMemory", spec.max_memory)):
        if size < 16 << 20:
            out.append(f"{field} {format_bytes(size)} is below the 16MiB a manifest allows: the "
                       "manifest does not validate; raise the domain's memory first, then "
                       "export it again.")
        elif size % (1 << 20):
            out.append(f"{field} {format_bytes(size)} is not a whole number of MiB, which a "
                       "manifest requires (libvirt rounds it up when the VM starts): set it to "
                       "whole MiB first (virsh setmaxmem / setmem --config), then export "
                       "it again.")
    return out


def to_yaml(exported: Exported) -> str:
    """The manifest as YAML, its notes as comments above it. Pure."""
    header = [f"# Exported from the libvirt domain {exported.name} by `reconciler export`."]
    for note in exported.notes:
        header += textwrap.wrap(note, width=98, initial_indent="# ", subsequent_indent="#   ")
    body = yaml.dump(exported.manifest, Dumper=_Dumper, sort_keys=False,
                     default_flow_style=False, allow_unicode=True)
    return "\n".join(header) + "\n" + body


class _Dumper(yaml.SafeDumper):
    """Block lists indented below their key, as in the example manifests."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _string(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """MACs and "true" in double quotes, as people write them (YAML 1.1 would misread both)."""
    quoted = ":" in value or value in ("true", "false")
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"' if quoted else None)


_Dumper.add_representer(str, _string)


def _ownership(mark: Mark | None, instance: str) -> str:
    if mark is None:
        return (f"Not managed by reconciler: with the annotation {ADOPT}, `reconciler apply` "
                "adopts it if this manifest still matches the domain exactly.")
    if mark.instance != instance:
        return (f"Managed by another reconciler instance ({mark.instance!r}): instance "
                f"{instance!r} cannot adopt it.")
    return f"Managed by reconciler (instance {instance!r}) from the manifest {mark.manifest}."


def _disks(vm: str, spec: VMSpec, elements: list[etree._Element], applied: Mapping[str, Any],
           notes: list[str]) -> list[dict[str, object]]:
    """The volume disks named ``<vm>-<disk>``; a note for every other disk."""
    read = {d.name: d for d in spec.disks}
    images = {d.get("name"): d.get("image") for d in applied.get("disks", [])
              if isinstance(d, dict)}
    out: list[dict[str, object]] = []
    taken: set[str] = set()
    for element in elements:
        device = element.get("device", "disk")
        target = element.find("target")
        dev = target.get("dev", "?") if target is not None else "?"
        source = element.find("source")
        volume = source.get("volume") if source is not None else None
        if device == "cdrom" and volume == seed_volume(vm):
            notes.append(f"cdrom {dev} (volume {volume}): a cloud-init seed; the domain keeps only "
                         "a hash of its content, so a manifest cannot be made from it: copy "
                         "spec.cloudInit from the VM's manifest (without it, apply removes the "
                         "seed; a domain with a seed cannot be adopted).")
            continue
        if device != "disk":
            notes.append(f"{device} {dev}: not a disk; reconciler leaves it as it is.")
            continue
        if volume is None:
            where = _source_text(element)
            notes.append(f"disk {dev} ({where}): not a volume of a storage pool, so a manifest "
                         "cannot name it; reconciler leaves it as it is.")
            continue
        pool = source.get("pool", "")
        if not volume.startswith(f"{vm}-"):
            notes.append(f"disk {dev} (volume {volume} in pool {pool}): not named {vm}-<disk>, "
                         "so a manifest cannot name it; reconciler leaves it as it is.")
            continue
        disk = read.get(volume[len(vm) + 1:])
        why = _inexpressible(disk, taken) if disk else "it could not be read"
        if why:
            notes.append(f"disk {dev} (volume {volume} in pool {pool}) cannot be expressed: "
                         f"{why}. reconciler would remove it from the domain, so the domain "
                         "cannot be adopted with it.")
            continue
        assert disk is not None
        taken.add(disk.name)
        out.append(_disk_entry(disk, images.get(disk.name)))
    return out


def _inexpressible(disk: Disk, taken: set[str]) -> str:
    if not _DISK_NAME.match(disk.name):
        return (f"{disk.name!r} is not a disk name (lowercase letters, digits and '-', "
                "at most 32 characters)")
    if disk.name in taken:
        return f"another disk is already named {disk.name!r}"
    if disk.size <= 0:
        return "the volume was not found"
    if disk.size % 1024:
        return f"its size {disk.size} bytes is not a whole number of KiB"
    if disk.format not in _FORMATS:
        return f"its format {disk.format!r} is not one of {', '.join(_FORMATS)}"
    if disk.bus not in _BUSES:
        return f"its bus {disk.bus!r} is not one of {', '.join(_BUSES)}"
    return ""


def _disk_entry(disk: Disk, image: object) -> dict[str, object]:
    entry: dict[str, object] = {"name": disk.name, "size": format_bytes(disk.size),
                                "pool": disk.pool, "format": disk.format}
    if isinstance(image, str) and image:
        entry["image"] = image
    if disk.bus != "virtio":
        entry["bus"] = disk.bus
    if disk.reclaim != "retain":
        entry["reclaim"] = disk.reclaim
    return entry


def _source_text(element: etree._Element) -> str:
    source = element.find("source")
    kind = element.get("type", "?")
    if source is None:
        return f"{kind}, no source"
    value = source.get("file") or source.get("dev") or source.get("name") or ""
    return f"{kind} {value}".strip()


def _networks(nics: tuple[Nic, ...], elements: list[etree._Element],
              applied: Mapping[str, Any], *, managed: bool,
              notes: list[str]) -> list[dict[str, object]]:
    """NICs on a network or bridge; a note for every other interface.

    A managed domain's NIC shows its MAC only when its manifest gave one (otherwise the MAC is
    libvirt's and never diffed); an unmanaged domain's NICs always show theirs."""
    recorded = {n.get("mac") for n in applied.get("networks", []) if isinstance(n, dict)}
    readable = iter(nics)
    out: list[dict[str, object]] = []
    for element in elements:
        kind = element.get("type", "?")
        mac_element = element.find("mac")
        mac = mac_element.get("address", "").lower() if mac_element is not None else ""
        label = f"interface {mac}" if mac else "an interface"
        if kind not in ("network", "bridge") or element.find("source") is None:
            notes.append(f"{label} of type {kind!r}: not on a libvirt network or bridge; "
                         "reconciler leaves it as it is.")
            continue
        nic = next(readable)
        if nic.model not in _MODELS:
            notes.append(f"{label} cannot be expressed: its model {nic.model!r} is not one of "
                         f"{', '.join(_MODELS)}. reconciler would remove it from the domain, so "
                         "the domain cannot be adopted with it.")
            continue
        if element.find("model") is None:
            notes.append(f"{label} names no model; reconciler reads that as {nic.model}.")
        entry: dict[str, object] = (
            {"network": nic.network} if nic.network else {"bridge": nic.bridge})
        if nic.mac and (not managed or nic.mac in recorded):
            entry["mac"] = nic.mac
        entry["model"] = nic.model
        out.append(entry)
    return out


def _boot(boot: tuple[str, ...], notes: list[str]) -> list[str]:
    devices = [dev for dev in boot if dev in _BOOT]
    if len(devices) != len(boot):
        notes.append(f"boot order {', '.join(boot)} cannot be expressed (each one of "
                     f"{', '.join(_BOOT)}); the domain cannot be adopted with it.")
    return devices or ["hd"]


def _graphics(spec: VMSpec, notes: list[str]) -> str:
    kind = spec.graphics.split("@")[0]  # "vnc@0.0.0.0": not on loopback, noted below
    if kind not in _GRAPHICS:
        notes.append(f"graphics {spec.graphics!r} cannot be expressed (one of "
                     f"{', '.join(_GRAPHICS)}); the domain cannot be adopted with it.")
        return "none"
    if "@" in spec.graphics:  # what read_graphics found exposed, every listen counted
        listen = spec.graphics.split("@", 1)[1]
        notes.append(f"graphics {kind} listens on {listen}, not 127.0.0.1; the domain "
                     "cannot be adopted until it listens on 127.0.0.1 only.")
    return kind
