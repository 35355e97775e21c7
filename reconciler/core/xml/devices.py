"""Domain devices in XML: disks, the cloud-init seed CD-ROM, NICs and graphics; build them,
read them back, edit them in place, choose free target names. Pure (lxml).

libvirt names a disk's target by its bus (``vd*`` for virtio, ``sd*`` for SATA and SCSI)."""

from __future__ import annotations

import copy
import string
from collections.abc import Iterator, Mapping
from typing import Any

from lxml import etree

from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.vm import CloudInit, Disk, Nic, VMSpec
from reconciler.core.xml.common import sub, to_xml

_BUS_PREFIX = {"virtio": "vd", "sata": "sd", "scsi": "sd"}


VolumeKey = tuple[str, str]  # (pool, volume)


def next_target(bus: str, used: set[str]) -> str:
    prefix = _BUS_PREFIX[bus]
    for letter in string.ascii_lowercase:
        if prefix + letter not in used:
            used.add(prefix + letter)
            return prefix + letter
    raise ValueError("too many disks")


def disk_element(vm: str, disk: Disk, target: str) -> etree._Element:
    element = etree.Element("disk", type="volume", device="disk")
    sub(element, "driver", name="qemu", type=disk.format, discard="unmap")
    sub(element, "source", pool=disk.pool, volume=disk.volume(vm))
    sub(element, "target", dev=target, bus=disk.bus)
    return element


def seed_element(vm: str, seed: CloudInit, target: str) -> etree._Element:
    """The cloud-init seed volume as a read-only SATA CD-ROM."""
    element = etree.Element("disk", type="volume", device="cdrom")
    sub(element, "driver", name="qemu", type="raw")
    sub(element, "source", pool=seed.pool, volume=seed_volume(vm))
    sub(element, "target", dev=target, bus="sata")
    sub(element, "readonly")
    return element


def is_seed(vm: str, element: etree._Element) -> bool:
    source = element.find("source")
    return (element.get("device") == "cdrom" and source is not None
            and source.get("volume") == seed_volume(vm))


def seed_ejected_xml(root: etree._Element, vm: str) -> str | None:
    """The seed CD-ROM of ``root`` with its medium taken out (for a live eject), or None."""
    for element in root.iterfind("devices/disk"):
        if is_seed(vm, element):
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
        sub(element, "mac", address=nic.mac)
    sub(element, "source", **{kind: nic.network or nic.bridge or ""})
    sub(element, "model", type=nic.model)
    return element


def nic_xml(nic: Nic) -> str:
    return to_xml(nic_element(nic))


def set_graphics(devices: etree._Element, graphics: str) -> None:
    for old in devices.findall("graphics"):
        devices.remove(old)
    if graphics != "none":
        element = sub(devices, "graphics", type=graphics, autoport="yes", listen="127.0.0.1")
        sub(element, "listen", type="address", address="127.0.0.1")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


UNKNOWN_SIZE = -1  # the volume could not be found or read


GUEST_AGENT = "org.qemu.guest_agent.0"  # the channel name qemu-guest-agent listens on


def read_guest_agent(devices: etree._Element) -> str | None:
    """The guest agent channel's state: "connected" or "disconnected" in a running domain's
    XML (libvirt tracks the agent's virtio port), "" in a persistent definition; None when the
    domain has no such channel."""
    for target in devices.iterfind("channel/target"):
        if target.get("type") == "virtio" and target.get("name") == GUEST_AGENT:
            return str(target.get("state", ""))
    return None


def set_guest_agent(devices: etree._Element, wanted: bool) -> None:
    """Add or remove the guest agent channel (``<channel type='unix'>``: libvirt chooses the
    socket path under its own directory)."""
    for channel in devices.findall("channel"):
        target = channel.find("target")
        if target is not None and target.get("name") == GUEST_AGENT:
            devices.remove(channel)
    if wanted:
        channel = sub(devices, "channel", type="unix")
        sub(channel, "target", type="virtio", name=GUEST_AGENT)


def read_graphics(devices: etree._Element) -> str:
    """The graphics a domain has, as a manifest names them: "none", "vnc" or "spice" for one
    device listening on loopback only; otherwise a value no manifest has, that says what is
    exposed ("vnc@0.0.0.0", "vnc+spice", "vnc@network default"), so the diff sees it.

    Every <graphics> device counts, and every listen of each: the ``listen`` attribute and
    each <listen> (type address: its address, none meaning qemu.conf's default 127.0.0.1;
    type network: the network's address, exposed; socket and none: not on the network)."""
    shown = []
    for element in devices.findall("graphics"):
        kind = element.get("type", "none")
        exposed = list(dict.fromkeys(_exposed(element)))
        shown.append(f"{kind}@{','.join(exposed)}" if exposed else kind)
    if not shown:
        return "none"
    return "+".join(shown)


def _exposed(element: etree._Element) -> Iterator[str]:
    listen = element.get("listen")
    if listen and listen not in LOOPBACK:
        yield listen
    for child in element.iterfind("listen"):
        kind = child.get("type", "address")
        if kind == "network":
            yield f"network {child.get('network', '')}".rstrip()
        elif kind == "address" and child.get("address") and child.get("address") not in LOOPBACK:
            yield child.get("address", "")


def read_seed(vm: str, devices: etree._Element, volumes: Mapping[VolumeKey, int],
               applied: Mapping[str, Any]) -> CloudInit | None:
    """The seed CD-ROM. Its content is known only by the hash in the applied record, and only
    while its volume exists (a missing volume reads as unknown content, so it is rebuilt)."""
    for element in devices.iterfind("disk"):
        if is_seed(vm, element):
            pool = element.find("source").get("pool", "")
            recorded = applied.get("cloudInit")
            known = isinstance(recorded, str) and (pool, seed_volume(vm)) in volumes
            return CloudInit(digest=str(recorded) if known else "", pool=pool)
    return None


def own_volume(vm: str, element: etree._Element) -> tuple[str, str, str | None] | None:
    """(pool, volume, overlay) of the VM's own volume (``<vm>-<disk>``) that a disk element
    runs on: its source, or the first volume of its backing chain when the source is a file
    over it (an external snapshot's overlay, as ``virsh snapshot-create-as --disk-only``
    leaves it: libvirt writes ``<source file=overlay>`` and ``<backingStore type='volume'>``
    with the volume, in both definitions). ``overlay``: the overlay's path, None for a disk
    on the volume itself. None for a disk on anything else."""
    source = element.find("source")
    if source is None:
        return None
    if source.get("volume") is not None:
        volume = source.get("volume", "")
        return (source.get("pool", ""), volume, None) if volume.startswith(f"{vm}-") else None
    overlay = source.get("file")
    if overlay is None:
        return None
    for base in element.iterfind(".//backingStore/source"):
        volume = base.get("volume") or ""
        if volume.startswith(f"{vm}-"):
            return base.get("pool", ""), volume, overlay
        if base.get("volume") is not None or base.get("file") is None:
            return None  # another volume's or a device's chain: not this VM's disk
    return None


def read_disk(vm: str, element: etree._Element, volumes: Mapping[VolumeKey, int]) -> Disk | None:
    """The VM's disk on one of its own volumes (directly, or under an external snapshot's
    overlay: then ``overlay`` is the overlay's path and ``format`` the volume's own), or None
    for any other disk element. ``volumes``: capacity in bytes by (pool, volume)."""
    if element.get("device", "disk") != "disk":
        return None
    own = own_volume(vm, element)
    if own is None:
        return None
    pool, volume, overlay = own
    driver = element.find("driver")
    if overlay is not None:  # the volume's format is that of its backing store
        driver = next((b.find("format") for b in element.iterfind(".//backingStore")
                       if b.find(f"source[@volume='{volume}']") is not None), None)
    target = element.find("target")
    return Disk(
        name=volume[len(vm) + 1:],
        size=volumes.get((pool, volume), UNKNOWN_SIZE),
        pool=pool,
        format=driver.get("type", "raw") if driver is not None else "raw",
        bus=target.get("bus", "virtio") if target is not None else "virtio",
        overlay=overlay,
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
    """Volume name -> target dev of each volume disk, e.g. {'web-01-root': 'vda'}; a disk on an
    external snapshot's overlay counts under its base volume when that is the VM's own."""
    out = {}
    name = root.findtext("name") or ""
    for element in root.iter("disk"):
        source, target = element.find("source"), element.find("target")
        if source is None or target is None:
            continue
        if source.get("volume"):
            out[source.get("volume")] = target.get("dev")
        else:
            own = own_volume(name, element) if name else None
            if own is not None:
                out[own[1]] = target.get("dev")
    return out


def free_target(root: etree._Element, bus: str) -> str:
    used = {t.get("dev") for t in root.iter("target") if t.get("dev")}
    return next_target(bus, used)


def edit_disks(devices: etree._Element, root: etree._Element, spec: VMSpec,
               chosen: Mapping[str, str] | None = None) -> None:
    """``chosen``: volume -> the target the plan chose for a disk it adds (free in the live
    definition too); others take the first free one of the persistent definition."""
    wanted = {d.volume(spec.name): d for d in spec.disks}
    present = set()
    for element in list(devices.iter("disk")):
        own = own_volume(spec.name, element)
        if own is None:
            continue
        volume = own[1]
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
        target = (chosen or {}).get(volume) or free_target(root, disk.bus)
        element = disk_element(spec.name, disk, target)
        if anchor:
            anchor[-1].addnext(element)
            anchor.append(element)
        else:
            devices.insert(0, element)
            anchor = [element]


def edit_seed(devices: etree._Element, root: etree._Element, spec: VMSpec) -> None:
    """Attach, repoint or detach the cloud-init seed CD-ROM; other CD-ROMs are left alone."""
    seeds = [e for e in devices.findall("disk") if is_seed(spec.name, e)]
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
        target = sub(element, "target")
    if target.get("bus") == bus and target.get("dev"):
        return
    dev = target.get("dev") or ""
    if not dev.startswith(_BUS_PREFIX[bus]):
        dev = free_target(root, bus)
    target.set("dev", dev)
    target.set("bus", bus)
    for address in element.findall("address"):
        element.remove(address)


def edit_nics(devices: etree._Element, spec: VMSpec) -> None:
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

