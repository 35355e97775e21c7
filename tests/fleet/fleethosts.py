"""Two hypervisor hosts: small OS-less guests, a live migration, a volume copied through libvirt
storage streams.

The two-host tests use these; the volume copy is the product's own
(``reconciler.adapters.libvirt.migration``): libvirt's API only (no paths, no shell), so it works
the same between two real machines.
"""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import libvirt
from lxml import etree

from reconciler.adapters.libvirt.migration import Copied, copy, send_all

# --- the CLI as one host's reconciler ---------------------------------------------------------


def run_as(folder: Path, me: str, uri: str, command: str, m: Path, *extra: str):  # type: ignore[no-untyped-def]
    """``reconciler COMMAND`` (in-process) as host ``me`` of the fleet in ``m``, on ``uri``: its
    config names the host; apply gets --yes and a state directory of its own."""
    from conftest import run_cli

    config = folder / f"{me}.yaml"
    config.write_text(f"host: {me}\n")
    args = [command, "--connect", uri, "--config", config]
    if command == "apply":
        args += ["--yes", "--state-dir", folder / f"state-{me}"]
    r = run_cli(*args, *extra, m)
    print(f"$ {command} as {me} {' '.join(map(str, extra))} -> {r.code}\n{r.stdout}{r.stderr}")
    return r

MiB = 1 << 20

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


def copy_volume(src: libvirt.virStorageVol, dst: libvirt.virStorageVol) -> Copied:
    """The product's stream copy (``reconciler.adapters.libvirt.migration.copy``): ``dst``
    made a byte-identical, as sparse, copy of ``src``; ``dst`` holding data beyond ``src``'s
    end is refused."""
    return copy(src, dst)


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
    send_all(stream, data)
    stream.finish()


def write_hosts(folder: Path, uri_a: str, uri_b: str) -> None:
    """The Host manifests of the test bed: hv-a (the first libvirtd) and hv-b (the second),
    a live migration's data sent to 127.0.0.1 (both are this machine)."""
    (folder).mkdir(parents=True, exist_ok=True)
    (folder / "hosts.yaml").write_text(textwrap.dedent(f"""\
        apiVersion: reconciler/v1
        kind: Host
        metadata: {{name: hv-a}}
        spec: {{uri: "{uri_a}"}}
        ---
        apiVersion: reconciler/v1
        kind: Host
        metadata: {{name: hv-b}}
        spec:
          uri: "{uri_b}"
          migrateUri: tcp://127.0.0.1
        """))
