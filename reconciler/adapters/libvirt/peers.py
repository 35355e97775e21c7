"""Reads of the fleet's other hosts, over the libvirt URIs of their Host manifests: which of
some VMs already run there. Read-only; each host is given a bounded time to answer."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Sequence
from typing import Any

import libvirt
from lxml import etree

from reconciler.adapters.libvirt.connection import free_memory_of, host_uuid_of
from reconciler.core.errors import TransientError
from reconciler.core.model.host import Destination
from reconciler.core.moves import volumes as move_volumes
from reconciler.core.xml.common import last_move, read_mark

PEER_TIMEOUT = 10.0  # seconds a peer host has to answer a whole read (connect included)


def managed_here(uri: str, names: Sequence[str] | None, instance: str,
                 *, timeout: float = PEER_TIMEOUT) -> tuple[str | None, frozenset[str]]:
    """Which of ``names`` (None: of all its domains) are domains on ``uri`` that the reconciler
    ``instance`` manages (its mark names the instance). A domain of that name made by hand
    does not count. Also the host's libvirt UUID (None when it cannot say: which machine the
    URI reaches).

    Raises ``TransientError`` when the host cannot be read (no answer within ``timeout``
    seconds, connection refused, authentication failed)."""
    def read(conn: Any) -> tuple[str | None, frozenset[str]]:
        found = set()
        for name in names if names is not None else [d.name() for d in conn.listAllDomains(0)]:
            try:
                dom = conn.lookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                    continue
                raise
            mark = read_mark(etree.fromstring(dom.XMLDesc(0).encode()))
            if mark is not None and mark.instance == instance:
                found.add(name)
        return host_uuid_of(conn, uri), frozenset(found)

    result: tuple[str | None, frozenset[str]] = within(uri, read, timeout)
    return result


def within(uri: str, read: Callable[[Any], Any], timeout: float) -> Any:
    """``read`` of a read-only connection to ``uri``, in a thread of its own given ``timeout``
    seconds (a host that does not answer must not hold the caller); the connection is closed
    after. Raises ``TransientError`` (no answer in time, or libvirt's error)."""
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            conn = libvirt.openReadOnly(uri)
        except libvirt.libvirtError as exc:
            box["error"] = exc.get_error_message() or str(exc)
            return
        try:
            box["result"] = read(conn)
        except libvirt.libvirtError as exc:
            box["error"] = exc.get_error_message() or str(exc)
        except Exception as exc:  # what it sent could not be read (bad XML): not "no VMs"
            box["error"] = f"unreadable answer: {exc!r}"
        finally:
            with contextlib.suppress(libvirt.libvirtError):
                conn.close()

    reader = threading.Thread(target=run, name="libvirt-peer", daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        raise TransientError(f"{uri}: no answer within {timeout:g} s")
    if "error" in box:
        raise TransientError(f"{uri}: {box['error']}")
    return box["result"]


def destination(host: str, uri: str, vms: Sequence[Any], cpus: dict[str, str],
                left: Sequence[str] = (), *, timeout: float = PEER_TIMEOUT) -> Destination:
    """What a move of ``vms`` (live VMs) to ``host`` needs to know of it, read over ``uri``
    (read-only, within ``timeout`` seconds). ``cpus``: VM -> its running <cpu> element, checked
    with the destination's hypervisor. ``left``: VMs gone from the reading host whose volumes
    are still there: their domains there, with the host each last moved from. Never raises: a
    host that cannot be read gives a Destination with ``error``."""
    pools_used = {d.pool for vm in vms for d in vm.config.disks}
    pools_used |= {vm.config.cloud_init.pool for vm in vms if vm.config.cloud_init}
    names = {vm.name for vm in vms} | set(left)
    wanted = [(pool, volume) for vm in vms for pool, volume, *_ in move_volumes(vm)]

    def _read(conn: Any) -> Destination:
        free = free_memory_of(conn)
        pools, volumes = [], set()
        for pool in conn.listAllStoragePools(libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_ACTIVE):
            pools.append((pool.name(), int(pool.info()[3])))
            if pool.name() in pools_used:
                volumes |= {(pool.name(), v) for v in pool.listVolumes()}
        domains, uuids, moved = [], [], []
        for dom in conn.listAllDomains(0):
            if dom.name() in names:
                mark = read_mark(etree.fromstring(dom.XMLDesc(0).encode()))
                domains.append((dom.name(), mark.instance if mark else ""))
                uuids.append((dom.name(), dom.UUIDString()))
            if dom.name() in left and dom.isPersistent():  # the record is in its definition
                last = last_move(etree.fromstring(
                    dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE).encode()))
                if last is not None:
                    moved.append((dom.name(), last[0], last[2], last[3]))
        networks = frozenset(n.name() for n in conn.listAllNetworks(
            libvirt.VIR_CONNECT_LIST_NETWORKS_ACTIVE))
        found = _found(conn, [v for v in wanted if v in volumes])
        arch = etree.fromstring(conn.getCapabilities().encode()).findtext("host/cpu/arch")
        cpu = []
        for name, xml in sorted(cpus.items()):
            try:
                verdict = conn.compareHypervisorCPU(None, arch, None, None, xml, 0)
            except libvirt.libvirtError:
                continue  # the driver cannot say: libvirt checks again when migrating
            cpu.append((name, verdict != libvirt.VIR_CPU_COMPARE_INCOMPATIBLE))
        return Destination(host, uri, uuid=host_uuid_of(conn, uri), free_memory=free,
                           pools=tuple(sorted(pools)),
                           volumes=frozenset(volumes), domains=tuple(sorted(domains)),
                           uuids=tuple(sorted(uuids)), moved=tuple(sorted(moved)),
                           networks=networks, cpu=tuple(cpu), found=found)

    try:
        result: Destination = within(uri, _read, timeout)
    except TransientError as exc:
        return Destination(host, uri, error=str(exc).removeprefix(f"{uri}: "))
    return result


def _found(conn: Any, wanted: list[tuple[str, str]]) -> tuple[tuple[str, str, int, str, bool],
                                                              ...]:
    """(pool, volume, capacity, format, in use) of each of ``wanted`` on ``conn``: in use when a
    domain there has it as a disk (by pool and volume, or by its path)."""
    if not wanted:
        return ()
    sources = []
    for dom in conn.listAllDomains(0):
        root = etree.fromstring(dom.XMLDesc(0).encode())
        sources += [(s.get("pool"), s.get("volume"), s.get("file"))
                    for s in root.iterfind("devices/disk/source")]
    out = []
    for pool, name in wanted:
        vol = conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
        fmt = etree.fromstring(vol.XMLDesc(0).encode()).find("target/format")
        path = vol.path()
        used = any((p == pool and v == name) or (f and f == path) for p, v, f in sources)
        out.append((pool, name, int(vol.info()[1]),
                    fmt.get("type", "raw") if fmt is not None else "raw", used))
    return tuple(out)
