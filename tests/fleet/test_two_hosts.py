"""Two hypervisor hosts on one machine: qemu:///system and the second host (scripts/second-host,
another libvirtd in its own mount namespace). The proof of the test bed for fleet tests, and the
recipe the move implementation follows: a running guest moves live (memory and disk over NBD), a
stopped one cold (its XML defined on the destination, its volumes copied through storage
streams).

Every guest is OS-less (64 MiB, a small blank disk) and of the host's accelerator (KVM here).
"""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path

import libvirt
import pytest
from conftest import Host
from fleethosts import (
    MiB,
    copy_volume,
    create_volume,
    domain_type,
    make_guest,
    migrate_live,
    read_volume,
    same_volume_on,
    write_volume,
)
from lxml import etree

from reconciler.core.errors import PermanentError

pytestmark = pytest.mark.libvirtd

RUNNING = libvirt.VIR_DOMAIN_RUNNING
SHUTOFF = libvirt.VIR_DOMAIN_SHUTOFF
DISK = 16 * MiB  # the guests' disks (make_guest's default)
# Where the source QEMU sends memory and disks: the destination's own address here (both hosts
# are this machine), which does not depend on how this machine's host name resolves.
DATA_URI = "tcp://127.0.0.1"


def host_uuid(conn: libvirt.virConnect) -> str:
    text: str = etree.fromstring(conn.getCapabilities()).findtext("host/uuid")
    return text


def names(host: Host) -> set[str]:
    return {d.name() for d in host.conn.listAllDomains(0)}


def state(host: Host, name: str) -> int:
    code: int = host.domain(name).state()[0]
    return code


def write_pattern(vol: libvirt.virStorageVol, fmt: str) -> None:
    """Two stretches of known bytes the guest sees on its disk, with holes around them."""
    if fmt == "raw":  # through libvirt (a raw file is what the guest sees)
        write_volume(vol, 1 * MiB, b"\x5a" * MiB)
        write_volume(vol, 9 * MiB, b"\xa5" * (64 * 1024))
        return
    # qcow2: through QEMU's own tool on the file (the first host's files are this machine's)
    subprocess.run(["qemu-io", "-f", fmt, "-c", "write -P 0x5a 1M 1M",
                    "-c", "write -P 0xa5 9M 64k", vol.path()], check=True,
                   capture_output=True)


def same_guest_data(a: libvirt.virStorageVol, b: libvirt.virStorageVol, fmt: str,
                    folder: Path) -> bool:
    """What a guest would read from either volume is the same (qemu-img compare on copies of
    both files, taken through libvirt)."""
    files = []
    for side, vol in (("a", a), ("b", b)):
        path = folder / f"{side}.{fmt}"
        path.write_bytes(read_volume(vol))
        files.append(str(path))
    r = subprocess.run(["qemu-img", "compare", "-f", fmt, "-F", fmt, *files],
                       capture_output=True, text=True)
    print(r.stdout, r.stderr)
    return r.returncode == 0


# --- two hosts ----------------------------------------------------------------------------------


def test_two_hosts_answer_at_once_and_are_apart(host, host_b):
    # both daemons answer, from two threads at the same time
    versions: dict[str, int] = {}

    def ask(h: Host) -> None:
        versions[h.uri] = libvirt.open(h.uri).getLibVersion()

    threads = [threading.Thread(target=ask, args=(h,)) for h in (host, host_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert set(versions) == {host.uri, host_b.uri}

    # two hosts to libvirt: migrations between them are allowed only then
    uuid_a, uuid_b = host_uuid(host.conn), host_uuid(host_b.conn)
    print(f"host UUIDs: {uuid_a} (first), {uuid_b} (second)")
    assert uuid_a != uuid_b

    # neither sees the other's domains
    a, b = f"{host.prefix}only-a", f"{host.prefix}only-b"
    make_guest(host.conn, a)
    make_guest(host_b.conn, b, start=True)  # KVM (or TCG) works in the second host's QEMU too
    assert a in names(host) and a not in names(host_b)
    assert b in names(host_b) and b not in names(host)
    assert state(host_b, b) == RUNNING
    assert domain_type(host_b.conn) == domain_type(host.conn)
    # a kvm guest does not start unless its QEMU (user libvirt-qemu) can open /dev/kvm
    print(f"guest on the second host: type {etree.fromstring(host_b.xml(b)).get('type')}")
    assert etree.fromstring(host_b.xml(b)).get("type") == domain_type(host.conn)

    # the same pool name and path, two different directories
    path_a = host.volume(f"{a}-root").path()
    path_b = host_b.volume(f"{b}-root").path()
    assert Path(path_a).parent == Path(path_b).parent == Path("/var/lib/libvirt/images")
    assert host_b.volume(f"{a}-root") is None and host.volume(f"{b}-root") is None


# --- live migration ------------------------------------------------------------------------------


def test_live_migration_of_a_running_guest(host, host_b, tmp_path):
    name = f"{host.prefix}live"
    source = create_volume(host.conn, f"{name}-root", DISK)
    write_pattern(source, "qcow2")
    dom = make_guest(host.conn, name, volume=source, start=True)
    assert state(host, name) == RUNNING

    # the destination volume: same name, size and format, in the destination's default pool
    target = same_volume_on(host_b.conn, source)
    seconds = migrate_live(dom, host_b.uri, data_uri=DATA_URI)
    print(f"live migration of {name} (64 MiB, {DISK // MiB} MiB disk over NBD): {seconds:.2f}s")

    assert state(host_b, name) == RUNNING
    assert host_b.domain(name).isPersistent()  # PERSIST_DEST
    assert not host.exists(name)  # UNDEFINE_SOURCE
    assert host_b.volume(f"{name}-root") is not None
    assert seconds < 60

    # the disk came along (compared once the guest is off: nothing writes to it then)
    host_b.domain(name).destroy()
    assert same_guest_data(source, target, "qcow2", tmp_path)
    # the source volume stays behind: a move deletes it itself, once the guest runs there
    assert host.volume(f"{name}-root") is not None


# --- cold move -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["qcow2", "raw"])
def test_cold_move_of_a_stopped_guest(host, host_b, fmt, tmp_path):
    name = f"{host.prefix}cold-{fmt}"
    source = create_volume(host.conn, f"{name}-root", DISK, fmt)
    write_pattern(source, fmt)
    dom = make_guest(host.conn, name, volume=source, fmt=fmt)
    assert state(host, name) == SHUTOFF
    xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_MIGRATABLE)

    # the move: volumes first, then the definition there, then the definition here goes
    target = same_volume_on(host_b.conn, source)
    stats = copy_volume(source, target)
    print(f"copied {source.name()} ({fmt}): {stats}")
    host_b.conn.defineXML(xml)
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)

    assert read_volume(target) == read_volume(source)  # byte for byte, the file
    assert same_guest_data(source, target, fmt, tmp_path)
    assert stats.holes > 0 and stats.data < stats.size  # the holes were not sent...
    allocated_a, allocated_b = source.info()[2], target.info()[2]
    assert allocated_b <= allocated_a + 64 * 1024  # ...and stayed holes there
    assert host_b.domain(name).UUIDString() == etree.fromstring(xml).findtext("uuid")
    assert not host.exists(name)

    # the moved guest starts there, on its copied disk; then the source volume goes
    host_b.domain(name).create()
    assert state(host_b, name) == RUNNING
    source.delete(0)
    assert host.volume(f"{name}-root") is None


def test_copy_over_a_destination_that_holds_other_data(host, host_b):
    """A hole is not written by a sparse upload, so a destination that already holds data (an
    earlier copy cut short, say) would keep it there. copy_volume sends zeros over it."""
    name = f"{host.prefix}over"
    source = create_volume(host.conn, f"{name}-root", DISK, "raw")
    write_pattern(source, "raw")
    target = same_volume_on(host_b.conn, source)
    write_volume(target, 0, b"\xff" * DISK)  # stale bytes everywhere

    stats = copy_volume(source, target)
    print(stats)
    assert read_volume(target) == read_volume(source)
    assert stats.zeros == stats.holes  # every hole was over stale data


def test_copy_refuses_a_destination_longer_than_the_source(host, host_b):
    name = f"{host.prefix}long"
    source = create_volume(host.conn, f"{name}-root", 4 * MiB, "raw")
    target = create_volume(host_b.conn, f"{name}-root", 8 * MiB, "raw")
    write_volume(target, 7 * MiB, b"\x01" * MiB)
    with pytest.raises(PermanentError, match="delete it there"):
        copy_volume(source, target)
