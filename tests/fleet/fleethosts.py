"""Two hypervisor hosts: small OS-less guests, a live migration, a volume copied through libvirt
storage streams.

The two-host tests use these; the move implementation (reconciler/adapters/libvirt) may lift
``copy_volume`` and ``migrate_live`` as they are: they use only libvirt's API (no paths, no
shell), so they work the same between two real machines.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

import libvirt
from lxml import etree

MiB = 1 << 20
CHUNK = 256 * 1024  # what one libvirt stream message carries at most

# --- guests --------------------------------------------------------------------------------------


def guest_xml(name: str, *, domain_type: str, volume: str, fmt: str = "qcow2",
              pool: str = "default", memory_mib: int = 64) -> str:
    """An OS-less guest the way reconciler builds one: a disk by pool and volume name (so the
    same XML means the same disk on any host with that pool), SeaBIOS halting instead of
    retrying the boot forever (no CPU burnt), no NIC (the hosts share their bridges), no
    graphics."""
    root = etree.Element("domain", type=domain_type)
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "memory", unit="MiB").text = str(memory_mib)
    etree.SubElement(root, "vcpu").text = "1"
    os_element = etree.SubElement(root, "os")
    etree.SubElement(os_element, "type", arch="x86_64").text = "hvm"
    etree.SubElement(os_element, "bios", rebootTimeout="-1")
    features = etree.SubElement(root, "features")
    etree.SubElement(features, "acpi")
    etree.SubElement(features, "apic")
    etree.SubElement(root, "on_poweroff").text = "destroy"
    etree.SubElement(root, "on_crash").text = "destroy"
    devices = etree.SubElement(root, "devices")
    disk = etree.SubElement(devices, "disk", type="volume", device="disk")
    etree.SubElement(disk, "driver", name="qemu", type=fmt)
    etree.SubElement(disk, "source", pool=pool, volume=volume)
    etree.SubElement(disk, "target", dev="vda", bus="virtio")
    etree.SubElement(devices, "memballoon", model="none")
    text: str = etree.tostring(root, encoding="unicode")
    return text


def domain_type(conn: libvirt.virConnect) -> str:
    """kvm where the host offers it, else qemu (TCG)."""
    return "kvm" if "<domain type='kvm'" in conn.getCapabilities() else "qemu"


def make_guest(conn: libvirt.virConnect, name: str, *, fmt: str = "qcow2", start: bool = False,
               volume: libvirt.virStorageVol | None = None,
               disk_size: int = 16 * MiB) -> libvirt.virDomain:
    """An OS-less guest on ``conn`` (defined, started if ``start``) with ``volume`` as its disk,
    or a new blank one, ``name``-root, in the default pool."""
    if volume is None:
        volume = create_volume(conn, f"{name}-root", disk_size, fmt)
    dom = conn.defineXML(guest_xml(name, domain_type=domain_type(conn), volume=volume.name(),
                                   fmt=fmt))
    if start:
        dom.create()
    return dom


def volume_xml(name: str, capacity: int, fmt: str = "qcow2") -> str:
    """A thin volume, as reconciler makes them: without <allocation>, libvirt would preallocate
    a raw file in full (fallocate), and its whole length would count as data."""
    root = etree.Element("volume")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
    etree.SubElement(root, "allocation", unit="bytes").text = "0"
    target = etree.SubElement(root, "target")
    etree.SubElement(target, "format", type=fmt)
    text: str = etree.tostring(root, encoding="unicode")
    return text


def create_volume(conn: libvirt.virConnect, name: str, capacity: int, fmt: str = "qcow2",
                  pool: str = "default") -> libvirt.virStorageVol:
    return conn.storagePoolLookupByName(pool).createXML(volume_xml(name, capacity, fmt), 0)


def same_volume_on(conn: libvirt.virConnect, vol: libvirt.virStorageVol,
                   pool: str = "default") -> libvirt.virStorageVol:
    """A new, empty volume on ``conn`` with ``vol``'s name, capacity and format."""
    desc = etree.fromstring(vol.XMLDesc(0))
    fmt = desc.find("target/format")
    capacity = vol.info()[1]
    return create_volume(conn, vol.name(), capacity,
                         fmt.get("type", "raw") if fmt is not None else "raw", pool)


# --- live migration ------------------------------------------------------------------------------

LIVE_MOVE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_NON_SHARED_DISK)


def migrate_live(dom: libvirt.virDomain, dest_uri: str, *, data_uri: str | None = None,
                 flags: int = LIVE_MOVE) -> float:
    """Migrate running ``dom`` to the libvirtd at ``dest_uri`` (peer to peer: the source
    libvirtd connects to the destination itself, so ``dest_uri`` must work from the source
    host); its disks are copied over NBD into volumes that must already exist there with the
    same names and sizes. ``data_uri`` (e.g. tcp://ADDRESS) is where the source QEMU sends
    memory and disks; without it, the destination's host name. Returns the seconds taken."""
    params: dict[str, str] = {}
    if data_uri:
        params[libvirt.VIR_MIGRATE_PARAM_URI] = data_uri
    started = time.monotonic()
    dom.migrateToURI3(dest_uri, params, flags)
    return time.monotonic() - started


# --- volumes through storage streams -------------------------------------------------------------


@dataclass
class CopyStats:
    data: int = 0    # bytes sent as data
    holes: int = 0   # bytes sent as holes (not transferred)
    zeros: int = 0   # bytes of holes sent as zeros, over data the destination already had

    @property
    def size(self) -> int:
        return self.data + self.holes


def data_extents(vol: libvirt.virStorageVol) -> list[tuple[int, int]]:
    """Where ``vol``'s file holds data, as (start, end) pairs, read by a sparse download. For a
    volume just created that is its metadata only (e.g. a qcow2 header), a few hundred KiB."""
    stream = vol.connect().newStream(0)
    vol.download(stream, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)
    extents: list[tuple[int, int]] = []
    offset = 0
    try:
        while True:
            got = stream.recvFlags(CHUNK, libvirt.VIR_STREAM_RECV_STOP_AT_HOLE)
            if got == -3:  # a hole
                offset += stream.recvHole(0)
                continue
            if not isinstance(got, bytes):
                raise libvirt.libvirtError(f"cannot read {vol.name()}: {got}")
            if not got:
                break
            if extents and extents[-1][1] == offset:
                extents[-1] = (extents[-1][0], offset + len(got))
            else:
                extents.append((offset, offset + len(got)))
            offset += len(got)
        stream.finish()
    except BaseException:
        with contextlib.suppress(libvirt.libvirtError):
            stream.abort()
        raise
    return extents


def copy_volume(src: libvirt.virStorageVol, dst: libvirt.virStorageVol) -> CopyStats:
    """Make ``dst``'s file a byte-identical copy of ``src``'s, through libvirt storage streams:
    ``src`` downloaded from its host and uploaded, as it comes, to ``dst`` on another (or the
    same) host. Holes stay holes: they are not transferred, and the copy is as sparse as the
    original. ``dst`` must exist (e.g. ``same_volume_on``) and neither volume be in use.

    A hole in a sparse upload is not written: libvirt seeks over it (and truncates the file
    there), so whatever ``dst`` held in that range would survive. ``dst``'s own data (a new
    qcow2's header, or what an earlier interrupted copy wrote) is therefore located first, and
    every hole of ``src`` that overlaps it is sent as zeros instead. A ``dst`` holding data
    beyond ``src``'s end cannot be cut short through the API: that is refused; delete and
    recreate it.
    """
    src_size = src.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
    existing = data_extents(dst)
    if existing and existing[-1][1] > src_size:
        raise ValueError(f"{dst.name()} holds data up to {existing[-1][1]} bytes, beyond "
                         f"the {src_size} bytes of {src.name()}: recreate it first")
    stats = CopyStats()
    up = dst.connect().newStream(0)
    down = src.connect().newStream(0)
    try:
        dst.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        src.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)

        def on_data(_stream: libvirt.virStream, data: bytes, _opaque: None) -> int:
            _send_all(up, data)
            stats.data += len(data)
            return 0

        def on_hole(_stream: libvirt.virStream, length: int, _opaque: None) -> int:
            start = stats.size
            for kind, begin, end in _split(start, start + length, existing):
                if kind == "zeros":
                    for n in _chunks(end - begin):
                        _send_all(up, bytes(n))
                    stats.zeros += end - begin
                else:
                    up.sendHole(end - begin, 0)
            stats.holes += length
            return 0

        down.sparseRecvAll(on_data, on_hole, None)
        down.finish()
        up.finish()
    except BaseException:
        for stream in (down, up):
            with contextlib.suppress(libvirt.libvirtError):
                stream.abort()
        raise
    if stats.size != src_size:
        raise RuntimeError(f"copied {stats.size} bytes of {src.name()}, expected {src_size}")
    return stats


def read_volume(vol: libvirt.virStorageVol) -> bytes:
    """The whole file of ``vol`` (holes read as zeros), by a plain download: for checks."""
    stream = vol.connect().newStream(0)
    vol.download(stream, 0, 0, 0)
    parts: list[bytes] = []
    stream.recvAll(lambda _s, data, acc: acc.append(data), parts)
    stream.finish()
    return b"".join(parts)


def write_volume(vol: libvirt.virStorageVol, offset: int, data: bytes) -> None:
    """Write ``data`` into ``vol``'s file at ``offset`` (plain upload of that range)."""
    stream = vol.connect().newStream(0)
    vol.upload(stream, offset, len(data), 0)
    _send_all(stream, data)
    stream.finish()


def _send_all(stream: libvirt.virStream, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = stream.send(bytes(view[:CHUNK]))
        if sent < 0:
            raise libvirt.libvirtError(f"stream send returned {sent}")
        view = view[sent:]


def _chunks(total: int) -> Iterator[int]:
    while total > 0:
        n = min(total, CHUNK)
        yield n
        total -= n


def _split(start: int, end: int,
           extents: list[tuple[int, int]]) -> Iterator[tuple[str, int, int]]:
    """[start, end) cut into ("zeros", a, b) where it overlaps ``extents`` and ("hole", a, b)
    elsewhere, in order."""
    pos = start
    for begin, stop in extents:
        if stop <= pos or begin >= end:
            continue
        if begin > pos:
            yield "hole", pos, begin
            pos = begin
        upto = min(stop, end)
        yield "zeros", pos, upto
        pos = upto
    if pos < end:
        yield "hole", pos, end

