"""The one module that talks to libvirt. Named operations; libvirt errors become ours here."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from functools import cached_property
from typing import TypeVar

import libvirt
from lxml import etree

from reconciler.adapters import cache
from reconciler.adapters.cache import Cache
from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import NotFoundError, PermanentError, TransientError
from reconciler.core.model.common import Mark
from reconciler.core.model.network import LiveNetwork
from reconciler.core.model.pool import LivePool
from reconciler.core.model.vm import DomainDefinition, LiveHold, LiveVM, VolumeInfo, volume_name
from reconciler.core.plan import seen
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import domain as domainxml
from reconciler.core.xml import network as networkxml
from reconciler.core.xml import pool as poolxml

_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NETWORK,
}
_TRANSIENT = {
    libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_OPERATION_INVALID,
}
_RUNNING_STATES = {libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_PAUSED,
                   libvirt.VIR_DOMAIN_BLOCKED, libvirt.VIR_DOMAIN_PMSUSPENDED}
_STATE_NAMES = {
    libvirt.VIR_DOMAIN_NOSTATE: "no state", libvirt.VIR_DOMAIN_RUNNING: "running",
    libvirt.VIR_DOMAIN_BLOCKED: "blocked", libvirt.VIR_DOMAIN_PAUSED: "paused",
    libvirt.VIR_DOMAIN_SHUTDOWN: "shutting down", libvirt.VIR_DOMAIN_SHUTOFF: "shut off",
    libvirt.VIR_DOMAIN_CRASHED: "crashed", libvirt.VIR_DOMAIN_PMSUSPENDED: "suspended",
}
_LIVE = libvirt.VIR_DOMAIN_AFFECT_LIVE
POOL_MARKER = ".reconciler-"  # a pool holding a volume named so was created by that instance
_CONFIG = libvirt.VIR_DOMAIN_AFFECT_CONFIG
_UPLOAD_CHUNK = 256 * 1024
_READERS = 4  # concurrent calls on one connection; libvirtd serves 5 of a client at once
_BATCH = 16  # domains (or volumes) one reader task fetches
VolumeKey = tuple[str, str]  # (pool, volume)
_T = TypeVar("_T")


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_silence, None)


@contextlib.contextmanager
def translated(what: str) -> Iterator[None]:
    """Turn a libvirtError into NotFoundError, TransientError or PermanentError."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        message = f"{what}: {exc.get_error_message() or exc}"
        if code in _NOT_FOUND:
            raise NotFoundError(message) from exc
        if code in _TRANSIENT:
            raise TransientError(message) from exc
        raise PermanentError(message) from exc


class Libvirt:
    """A connection and the operations the reconciler needs on it."""

    def __init__(self, uri: str, *, readonly: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        with translated(f"cannot connect to {uri}"):
            self.conn = (libvirt.openReadOnly if readonly else libvirt.open)(uri)
        self._lock = threading.Lock()

    def close(self) -> None:
        with contextlib.suppress(libvirt.libvirtError):
            self.conn.close()

    @cached_property
    def domain_type(self) -> str:
        """The best accelerator the host offers for x86_64 guests: kvm, else qemu (TCG)."""
        with translated("reading host capabilities"):
            caps = etree.fromstring(self.conn.getCapabilities().encode())
        types = {d.get("type") for d in caps.iterfind("guest/arch[@name='x86_64']/domain")}
        for preferred in ("kvm", "qemu", "test"):
            if preferred in types:
                return preferred
        return sorted(types)[0] if types else "qemu"

    # --- reading -------------------------------------------------------------------------------

    def read_live(self, expected: Mapping[VolumeKey, int] | None = None,
                  memo: Cache | None = None) -> tuple[LiveVM, ...]:
        """Every domain, its persistent definition and its running values, in one pass.

        The states come in one call; a few worker threads fetch the XML (and then the volume
        sizes) while this thread parses what has arrived.

        ``expected``: the sizes the manifests give their disks' volumes. A stopped managed
        domain's volume whose recorded size (the last one applied) is the expected one is not
        asked for its capacity (one libvirt call per volume; libvirt has no bulk call): nothing
        would change it. Its existence is still checked (one listing per pool). Without
        ``expected`` every capacity is read, as the daemon's resync does.

        ``memo``: parsed domains by a digest of their XML (see ``reconciler.cache``)."""
        with translated("listing domains"):
            domains = self._domain_states()
            autostart = {d.name() for d in self.conn.listAllDomains(
                libvirt.VIR_CONNECT_LIST_DOMAINS_AUTOSTART)}
        parsed: list[_Fetched] = []
        wanted: set[VolumeKey] = set()
        batch: list[tuple[VolumeKey, libvirt.virStorageVol]] = []
        capacities: list[Future[list[tuple[VolumeKey, int]]]] = []
        listed: dict[str, dict[str, libvirt.virStorageVol]] = {}
        known_sizes: dict[VolumeKey, int] = {}
        with _readers() as workers:
            for fetched in workers.map(_fetch_domains, _batches(domains)):
                for dom, state, inactive, active in fetched:
                    item = _Fetched.of(dom, state, inactive, active, memo)
                    # Sizes of a managed domain's volumes, and of an unmanaged one's named like
                    # its disks would be (an adoption compares them with the manifest).
                    own = "" if item.mark else f"{dom.name()}-"
                    seed = seed_volume(dom.name())
                    known = (_known_sizes(dom.name(), item.mark.applied, expected)
                             if item.mark and active is None and expected else {})
                    for key in item.volumes:
                        if key[1].startswith(own) and key not in wanted:
                            wanted.add(key)
                            vol = self._pool_volumes(listed, key[0]).get(key[1])
                            if vol is None:
                                continue
                            if key in known:
                                known_sizes[key] = known[key]
                            elif expected is not None and key[1] == seed and key in item.cdroms:
                                known_sizes[key] = 0  # a seed: only its existence is diffed
                            else:
                                batch.append((key, vol))
                    if len(batch) >= _BATCH:
                        capacities.append(workers.submit(_capacities, batch))
                        batch = []
                    parsed.append(item)
            if batch:
                capacities.append(workers.submit(_capacities, batch))
            sizes = dict(pair for future in capacities for pair in future.result())
            sizes.update(known_sizes)
        return tuple(item.live_vm(autostart, sizes, memo) for item in parsed)

    def _domain_states(self) -> list[tuple[libvirt.virDomain, int | None]]:
        """Every domain with its state, from one bulk call; ``None`` (ask each domain) where the
        driver has no bulk statistics."""
        try:
            stats = self.conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)
            return [(dom, int(values["state.state"])) for dom, values in stats]
        except (libvirt.libvirtError, KeyError, TypeError, ValueError):
            return [(dom, None) for dom in self.conn.listAllDomains(0)]

    def _pool_volumes(self, listed: dict[str, dict[str, libvirt.virStorageVol]],
                      pool_name: str) -> dict[str, libvirt.virStorageVol]:
        """The volumes of a pool by name (listed once; none if the pool does not exist)."""
        if pool_name not in listed:
            try:
                with translated(f"listing volumes of pool {pool_name}"):
                    pool = self.conn.storagePoolLookupByName(pool_name)
                    listed[pool_name] = {vol.name(): vol for vol in pool.listAllVolumes(0)}
            except NotFoundError:
                listed[pool_name] = {}
        return listed[pool_name]

    def _volume_sizes(self, keys: set[VolumeKey]) -> dict[VolumeKey, int]:
        listed: dict[str, dict[str, libvirt.virStorageVol]] = {}
        found = [(key, vol) for key in sorted(keys)
                 if (vol := self._pool_volumes(listed, key[0]).get(key[1])) is not None]
        return dict(_capacities(found))

    def volume(self, pool: str, name: str) -> VolumeInfo:
        with translated(f"volume {name} in pool {pool}"):
            vol = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            root = etree.fromstring(vol.XMLDesc(0).encode())
        fmt = root.find("target/format")
        backing = root.findtext("backingStore/path")
        return VolumeInfo(pool, name, int(root.findtext("capacity") or 0),
                          fmt.get("type") if fmt is not None else None, backing)

    def domain_xml(self, name: str, *, inactive: bool = True) -> str:
        with translated(f"reading domain {name}"):
            flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
            return self._dom(name).XMLDesc(flags)

    def domain_state(self, name: str) -> tuple[bool, int | None]:
        """(running, domain id)."""
        with translated(f"reading state of {name}"):
            dom = self._dom(name)
            state, _ = dom.state()
            running = state in _RUNNING_STATES
            return running, dom.ID() if running else None

    def read_definition(self, name: str) -> DomainDefinition:
        """One domain's persistent XML, state, autostart and its volume disks' capacities."""
        with translated(f"reading domain {name}"):
            dom = self._dom(name)
            xml = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
            state, _ = dom.state()
            autostart = bool(dom.autostart())
        volumes = self._volume_sizes(set(_volume_keys(xmlcommon.parse(xml))))
        return DomainDefinition(name, xml, state in _RUNNING_STATES, autostart, volumes)

    def _dom(self, name: str) -> libvirt.virDomain:
        with translated(f"domain {name}"):
            return self.conn.lookupByName(name)

    # --- domains -------------------------------------------------------------------------------

    def define(self, xml: str) -> None:
        with translated("defining domain"):
            self.conn.defineXML(xml)

    def start(self, name: str) -> None:
        with translated(f"starting {name}"):
            self._dom(name).create()

    def shutdown(self, name: str) -> None:
        """Ask the guest to power off (ACPI). Returns at once."""
        with translated(f"shutting down {name}"):
            self._dom(name).shutdown()

    def power_off(self, name: str) -> None:
        with translated(f"powering off {name}"):
            dom = self._dom(name)
            if dom.isActive():
                dom.destroy()

    def undefine(self, name: str) -> None:
        """Undefine, with managed save, snapshot metadata, checkpoints and NVRAM."""
        flags = (libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                 | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
                 | libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
        with translated(f"undefining {name}"):
            dom = self._dom(name)
            try:
                dom.undefineFlags(flags)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() not in (libvirt.VIR_ERR_NO_SUPPORT,
                                                libvirt.VIR_ERR_INVALID_ARG):
                    raise
                dom.undefine()

    def set_autostart(self, name: str, enabled: bool) -> None:
        with translated(f"setting autostart of {name}"):
            self._dom(name).setAutostart(1 if enabled else 0)

    def set_vcpus_live(self, name: str, count: int) -> None:
        with translated(f"setting live vCPUs of {name}"):
            self._dom(name).setVcpusFlags(count, _LIVE)

    def set_memory_live(self, name: str, size: int) -> None:
        with translated(f"setting live memory of {name}"):
            self._dom(name).setMemoryFlags(size // 1024, _LIVE)

    def set_hold(self, name: str, hold: LiveHold | None) -> None:
        """Record (or clear) a live change the VM did not take, on the running domain only."""
        with translated(f"recording live state of {name}"):
            self._dom(name).setMetadata(
                libvirt.VIR_DOMAIN_METADATA_ELEMENT,
                _bare(xmlcommon.hold_xml(hold)) if hold else None,
                xmlcommon.HOLD_KEY if hold else None,
                xmlcommon.HOLD_NS, _LIVE)

    def set_mark(self, name: str, mark: Mark) -> None:
        """Record the tool's mark in the persistent definition, and on the running domain if it
        runs; nothing else of the domain changes (adoption)."""
        with translated(f"recording metadata of {name}"):
            dom = self._dom(name)
            flags = _CONFIG | (_LIVE if dom.isActive() else 0)
            dom.setMetadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, _bare(xmlcommon.mark_xml(mark)),
                            xmlcommon.MARK_KEY, xmlcommon.NS, flags)

    def attach_live(self, name: str, device_xml: str) -> None:
        with translated(f"hot-plugging a device into {name}"):
            self._dom(name).attachDeviceFlags(device_xml, _LIVE)

    def detach_live(self, name: str, device_xml: str) -> None:
        with translated(f"unplugging a device from {name}"):
            self._dom(name).detachDeviceFlags(device_xml, _LIVE)

    def block_resize(self, name: str, target: str, size: int) -> None:
        with translated(f"growing disk {target} of {name}"):
            self._dom(name).blockResize(target, size, libvirt.VIR_DOMAIN_BLOCK_RESIZE_BYTES)

    # --- networks and pools ----------------------------------------------------------------------

    def read_networks(self) -> tuple[LiveNetwork, ...]:
        with translated("listing networks"):
            autostart = {n.name() for n in self.conn.listAllNetworks(
                libvirt.VIR_CONNECT_LIST_NETWORKS_AUTOSTART)}
            out = []
            for net in self.conn.listAllNetworks(0):
                config, mark = networkxml.read(
                    _inactive_xml(net, libvirt.VIR_NETWORK_XML_INACTIVE),
                    autostart=net.name() in autostart)
                out.append(LiveNetwork(net.name(), bool(net.isActive()), config, mark))
        return tuple(out)

    def read_pools(self) -> tuple[LivePool, ...]:
        """Pools, with the instance whose marker volume (``.reconciler-<instance>``) is in it."""
        with translated("listing storage pools"):
            autostart = {p.name() for p in self.conn.listAllStoragePools(
                libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART)}
            out = []
            for pool in self.conn.listAllStoragePools(0):
                active = bool(pool.isActive())
                owner = None
                if active:
                    for name in pool.listVolumes():
                        if name.startswith(POOL_MARKER):
                            owner = name[len(POOL_MARKER):]
                config = poolxml.read(_inactive_xml(pool, libvirt.VIR_STORAGE_XML_INACTIVE),
                                         autostart=pool.name() in autostart)
                out.append(LivePool(pool.name(), active, config, owner))
        return tuple(out)

    def define_network(self, xml: str) -> None:
        with translated("defining network"):
            self.conn.networkDefineXML(xml)

    def start_network(self, name: str) -> None:
        with translated(f"starting network {name}"):
            self.conn.networkLookupByName(name).create()

    def set_network_autostart(self, name: str, enabled: bool) -> None:
        with translated(f"setting autostart of network {name}"):
            self.conn.networkLookupByName(name).setAutostart(1 if enabled else 0)

    def remove_network(self, name: str) -> None:
        with translated(f"removing network {name}"):
            net = self.conn.networkLookupByName(name)
            if net.isActive():
                net.destroy()
            net.undefine()

    def network_xml(self, name: str) -> str:
        with translated(f"reading network {name}"):
            return _inactive_xml(self.conn.networkLookupByName(name),
                                 libvirt.VIR_NETWORK_XML_INACTIVE)

    def define_pool(self, xml: str, *, instance: str) -> None:
        """Define, build (mkdir), start, and put the instance's marker volume in the pool."""
        with translated("defining storage pool"):
            pool = self.conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
            pool.create(0)
            self.mark_pool(pool.name(), instance)

    def mark_pool(self, name: str, instance: str) -> None:
        root = etree.Element("volume")
        etree.SubElement(root, "name").text = POOL_MARKER + instance
        etree.SubElement(root, "capacity").text = "0"
        etree.SubElement(etree.SubElement(root, "target"), "format", type="raw")
        with translated(f"marking storage pool {name}"):
            self.conn.storagePoolLookupByName(name).createXML(
                etree.tostring(root, encoding="unicode"), 0)

    def start_pool(self, name: str) -> None:
        with translated(f"starting storage pool {name}"):
            pool = self.conn.storagePoolLookupByName(name)
            pool.create(0)

    def set_pool_autostart(self, name: str, enabled: bool) -> None:
        with translated(f"setting autostart of storage pool {name}"):
            self.conn.storagePoolLookupByName(name).setAutostart(1 if enabled else 0)

    def remove_pool(self, name: str) -> None:
        """Stop and undefine the pool; its directory and every volume in it stay on disk."""
        with translated(f"removing storage pool {name}"):
            pool = self.conn.storagePoolLookupByName(name)
            if pool.isActive():
                for volume in pool.listAllVolumes(0):
                    if volume.name().startswith(POOL_MARKER):
                        volume.delete(0)
                pool.destroy()
            pool.undefine()

    # --- events (the daemon) ----------------------------------------------------------------

    def watch(self, on_event: Callable[[str, str], None],
              on_lost: Callable[[str], None]) -> None:
        """Call ``on_event(domain, kind)`` on domain lifecycle and device events, and
        ``on_lost(reason)`` when the connection drops (keepalive: 5s x 3)."""

        def domain_event(_conn: object, dom: libvirt.virDomain, *args: object) -> None:
            try:
                on_event(dom.name(), str(args[-1]) if args else "")
            except Exception:
                import structlog

                structlog.get_logger("reconciler.libvirt").exception("event callback failed")

        def closed(_conn: object, reason: int, _opaque: object) -> None:
            on_lost({0: "error", 1: "end of file", 2: "keepalive timeout",
                     3: "client closed"}.get(reason, str(reason)))

        with translated("registering for libvirt events"):
            for name, event_id in _EVENT_IDS.items():
                self.conn.domainEventRegisterAny(None, event_id, domain_event, name)
            self.conn.registerCloseCallback(closed, None)
            with contextlib.suppress(libvirt.libvirtError):  # test:/// has no keepalive
                self.conn.setKeepAlive(5, 3)

    def live_values(self, names: set[str]) -> dict[str, tuple[int, int, int]]:
        """(state, live vCPUs, live memory KiB) of the running domains among ``names``: one cheap
        call each, to notice drift that raises no libvirt event (setvcpus --live)."""
        out = {}
        with translated("polling running domains"):
            for dom in self.conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                if dom.name() in names:
                    try:
                        state, _max, memory, vcpus, _cpu = dom.info()
                    except libvirt.libvirtError:
                        continue
                    out[dom.name()] = (state, vcpus, memory)
        return out

    # --- volumes -------------------------------------------------------------------------------

    def create_volume(self, pool: str, name: str, *, capacity: int, fmt: str,
                      backing: str | None = None) -> None:
        root = etree.Element("volume")
        etree.SubElement(root, "name").text = name
        etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
        etree.SubElement(root, "allocation").text = "0"  # thin: space is taken as written
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "format", type=fmt)
        with translated(f"creating volume {name} in pool {pool}"):
            storage = self.conn.storagePoolLookupByName(pool)
            if backing:
                try:
                    base = storage.storageVolLookupByName(backing)
                except libvirt.libvirtError as exc:
                    raise NotFoundError(f"image {backing!r} is not a volume of pool {pool}; "
                                        "upload it first (virsh vol-upload)") from exc
                base_size = base.info()[1]
                if capacity < base_size:
                    raise PermanentError(f"volume {name}: size {capacity} bytes is smaller than "
                                         f"its image {backing} ({base_size} bytes)")
                if fmt == "raw":  # no backing chain for raw: a full copy, then grown
                    storage.createXMLFrom(etree.tostring(root, encoding="unicode"), base, 0)
                    if capacity > base_size:
                        storage.storageVolLookupByName(name).resize(capacity, 0)
                    return
                store = etree.SubElement(root, "backingStore")
                etree.SubElement(store, "path").text = base.path()
                base_fmt = etree.fromstring(base.XMLDesc(0).encode()).find("target/format")
                etree.SubElement(store, "format",
                                 type=base_fmt.get("type") if base_fmt is not None else "raw")
            storage.createXML(etree.tostring(root, encoding="unicode"), 0)

    def domains_using(self, pool: str, name: str) -> list[str]:
        """Domains with the volume as a disk (by pool/volume or by its path), live or config."""
        try:
            path = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name).path()
        except libvirt.libvirtError:
            path = None
        users = []
        with translated(f"looking for users of volume {name}"):
            for dom in self.conn.listAllDomains(0):
                flags = [libvirt.VIR_DOMAIN_XML_INACTIVE] + ([0] if dom.isActive() else [])
                for flag in flags:
                    try:
                        root = etree.fromstring(dom.XMLDesc(flag).encode())
                    except libvirt.libvirtError:
                        continue
                    if any((s.get("pool") == pool and s.get("volume") == name)
                           or (path and s.get("file") == path)
                           for s in root.iterfind("devices/disk/source")):
                        users.append(dom.name())
                        break
        return users

    def volume_exists(self, pool: str, name: str) -> bool:
        try:
            self.volume(pool, name)
        except NotFoundError:
            return False
        return True

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        with translated(f"resizing volume {name} in pool {pool}"):
            vol = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            vol.resize(capacity, 0)

    def delete_volume(self, pool: str, name: str) -> None:
        with translated(f"deleting volume {name} in pool {pool}"):
            self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name).delete(0)

    def upload_volume(self, pool: str, name: str, data: bytes) -> None:
        """Make ``name`` a raw volume holding exactly ``data``, sent through libvirt's storage
        stream API (so it works on a remote host too). A volume of another size is replaced."""
        with translated(f"uploading volume {name} to pool {pool}"):
            storage = self.conn.storagePoolLookupByName(pool)
            try:
                vol = storage.storageVolLookupByName(name)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
                    raise
                vol = None
            if vol is not None and vol.info()[1] != len(data):
                vol.delete(0)
                vol = None
            created = vol is None
            if vol is None:
                root = etree.Element("volume")
                etree.SubElement(root, "name").text = name
                etree.SubElement(root, "capacity", unit="bytes").text = str(len(data))
                etree.SubElement(etree.SubElement(root, "target"), "format", type="raw")
                vol = storage.createXML(etree.tostring(root, encoding="unicode"), 0)
            stream = self.conn.newStream(0)
            try:
                vol.upload(stream, 0, len(data), 0)
                offset = 0
                while offset < len(data):
                    sent = stream.send(data[offset:offset + _UPLOAD_CHUNK])
                    if sent < 0:
                        raise libvirt.libvirtError("the upload stream would block")
                    offset += sent
                stream.finish()
            except libvirt.libvirtError:
                with contextlib.suppress(libvirt.libvirtError):
                    stream.abort()
                if created:  # no half-written volume left behind
                    with contextlib.suppress(libvirt.libvirtError):
                        vol.delete(0)
                raise

    def eject_live(self, name: str, device_xml: str) -> None:
        """Take the medium out of a CD-ROM of the running domain (``device_xml`` has no
        source), even when the guest has locked the tray."""
        with translated(f"ejecting a CD-ROM of {name}"):
            self._dom(name).updateDeviceFlags(
                device_xml, _LIVE | libvirt.VIR_DOMAIN_DEVICE_MODIFY_FORCE)


@contextlib.contextmanager
def _readers() -> Iterator[ThreadPoolExecutor]:
    """Worker threads for read calls (libvirt-python lets go of the GIL while it waits). On an
    error, what has not started yet is dropped."""
    workers = ThreadPoolExecutor(_READERS, thread_name_prefix="libvirt-read")
    try:
        yield workers
    finally:
        workers.shutdown(wait=True, cancel_futures=True)


def _batches(items: list[_T]) -> Iterator[list[_T]]:
    for start in range(0, len(items), _BATCH):
        yield items[start:start + _BATCH]


def _fetch_domains(
    batch: list[tuple[libvirt.virDomain, int | None]],
) -> list[tuple[libvirt.virDomain, int, str, str | None]]:
    """Each domain's state, persistent XML and, when it runs, live XML; not those undefined
    meanwhile."""
    out = []
    for dom, state in batch:
        try:
            with translated(f"reading domain {dom.name()}"):
                if state is None:
                    state, _ = dom.state()
                inactive = dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
                active = dom.XMLDesc(0) if state in _RUNNING_STATES else None
        except NotFoundError:
            continue
        out.append((dom, state, inactive, active))
    return out


def _capacities(
    batch: list[tuple[VolumeKey, libvirt.virStorageVol]],
) -> list[tuple[VolumeKey, int]]:
    """Each volume's capacity in bytes; not those deleted meanwhile."""
    out = []
    for key, vol in batch:
        try:
            with translated(f"listing volumes of pool {key[0]}"):
                out.append((key, vol.info()[1]))
        except NotFoundError:
            continue
    return out


def _bare(xml: str) -> str:
    """``xml`` without namespaces: setMetadata puts the element in the namespace it is given and
    fails ("failed to create a new XML namespace") when the element already declares one."""
    root = etree.fromstring(xml.encode())
    for element in root.iter():
        element.tag = etree.QName(element).localname
    etree.cleanup_namespaces(root)
    return etree.tostring(root, encoding="unicode")


def _inactive_xml(obj: libvirt.virNetwork | libvirt.virStoragePool, flag: int) -> str:
    """The persistent XML; drivers without the flag (test:///) give their only one."""
    try:
        return obj.XMLDesc(flag)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT):
            raise
        return obj.XMLDesc(0)


class _Fetched:
    """One domain as read: its XML, and what the first pass needs from it (its mark and the
    volumes its disks name), parsed or from the cache.

    The cache keeps, by a digest of the XML: the mark, the volumes, and the LiveVM last built
    from it with the key of what else went into it (autostart, volume sizes, state)."""

    def __init__(self, dom: libvirt.virDomain, state: int, inactive: str, active: str | None,
                 digest: bytes, mark: Mark | None, volumes: tuple[VolumeKey, ...],
                 cdroms: frozenset[VolumeKey] = frozenset(),
                 built: tuple[Hashable, LiveVM] | None = None) -> None:
        self.dom, self.state, self.inactive, self.active = dom, state, inactive, active
        self.digest, self.mark, self.volumes, self.built = digest, mark, volumes, built
        self.cdroms = cdroms  # volumes attached as CD-ROMs (a cloud-init seed)
        self.roots: tuple[etree._Element, etree._Element | None] | None = None

    @classmethod
    def of(cls, dom: libvirt.virDomain, state: int, inactive: str, active: str | None,
           memo: Cache | None) -> _Fetched:
        key = cache.digest(inactive.encode(), (active or "").encode()) if memo else b""
        entry = memo.get("domain", key) if memo else None
        if isinstance(entry, tuple) and len(entry) == 4:
            return cls(dom, state, inactive, active, key, *entry)
        item = cls(dom, state, inactive, active, key, None, ())
        root, live_root = item.parse()
        item.mark = xmlcommon.read_mark(root)
        roots = [r for r in (root, live_root) if r is not None]
        item.volumes = tuple(dict.fromkeys(k for r in roots for k in _volume_keys(r)))
        item.cdroms = frozenset(k for r in roots for k in _volume_keys(r, device="cdrom"))
        if memo:
            memo.put("domain", key, (item.mark, item.volumes, item.cdroms, None))
        return item

    def parse(self) -> tuple[etree._Element, etree._Element | None]:
        if self.roots is None:
            self.roots = (xmlcommon.parse(self.inactive),
                          xmlcommon.parse(self.active) if self.active is not None else None)
        return self.roots

    def live_vm(self, autostart: set[str], sizes: Mapping[VolumeKey, int],
                memo: Cache | None) -> LiveVM:
        dom, name = self.dom, self.dom.name()
        # Everything else the LiveVM holds comes from the XML (name, uuid and id too).
        key = (name in autostart, tuple(sizes.get(k) for k in self.volumes), self.state)
        if self.built is not None and self.built[0] == key:
            return self.built[1]
        running = self.active is not None
        root, live_root = self.parse()
        applied = self.mark.applied if self.mark else {}
        config = domainxml.read_spec(root, running=running, autostart=name in autostart,
                                     volumes=sizes, applied=applied)
        live_spec = (domainxml.read_spec(live_root, running=True, autostart=False,
                                         volumes=sizes, applied=applied)
                     if live_root is not None else None)
        vm = LiveVM(
            name=name, uuid=dom.UUIDString(), running=running,
            state=_STATE_NAMES.get(self.state, "unknown"),
            domain_id=dom.ID() if running else None,
            config=config, mark=self.mark,
            live_vcpus=live_spec.vcpus if live_spec else None,
            live_max_vcpus=live_spec.max_vcpus if live_spec else None,
            live_memory=live_spec.memory if live_spec else None,
            live_max_memory=live_spec.max_memory if live_spec else None,
            hold=xmlcommon.read_hold(live_root) if live_root is not None else None,
            live_disks=live_spec.disks if live_spec else None,
            live_nics=live_spec.nics if live_spec else None,
        )
        vm = replace(vm, seen=seen(vm))  # before owned_view: the same with or without a cache
        if memo:
            memo.put("domain", self.digest, (self.mark, self.volumes, self.cdroms, (key, vm)))
        return vm


def _known_sizes(vm: str, applied: Mapping[str, object],
                 expected: Mapping[VolumeKey, int]) -> dict[VolumeKey, int]:
    """The volumes of a stopped managed domain whose size needs no reading: the size last
    applied (recorded in its metadata) is the one the manifest asks for."""
    out: dict[VolumeKey, int] = {}
    disks = applied.get("disks")
    for disk in disks if isinstance(disks, list) else []:
        if not isinstance(disk, dict):
            continue
        key = (str(disk.get("pool")), volume_name(vm, str(disk.get("name"))))
        size = disk.get("size")
        if isinstance(size, int) and expected.get(key) == size:
            out[key] = size
    return out


def _volume_keys(root: etree._Element, device: str | None = None) -> Iterator[VolumeKey]:
    """(pool, volume) of each disk (of one ``device`` kind: disk, cdrom) with a volume source."""
    for disk in root.iterfind("devices/disk"):
        source = disk.find("source")
        if device is not None and disk.get("device", "disk") != device:
            continue
        if source is not None and source.get("pool") and source.get("volume"):
            yield source.get("pool"), source.get("volume")


# --- events (the daemon) -------------------------------------------------------------------------

_event_loop_started = False
_EVENT_IDS = {
    "lifecycle": libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE,
    "balloon": libvirt.VIR_DOMAIN_EVENT_ID_BALLOON_CHANGE,
    "device-added": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_ADDED,
    "device-removed": libvirt.VIR_DOMAIN_EVENT_ID_DEVICE_REMOVED,
}


def start_event_loop() -> None:
    """libvirt's default event loop in a daemon thread; needed before events can be received.
    Call it before opening the connections that should deliver events."""
    global _event_loop_started
    if _event_loop_started:
        return
    libvirt.virEventRegisterDefaultImpl()

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()

    threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
    _event_loop_started = True
