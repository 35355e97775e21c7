"""libvirt storage: pools (read, define, mark, start, remove) and volumes (read, create, grow,
upload, delete). All through libvirt's storage API, so a remote host works the same."""

from __future__ import annotations

import contextlib
from typing import Any

import libvirt

from reconciler.adapters.libvirt.connection import Connection, inactive_xml, translated
from reconciler.core import observe
from reconciler.core.errors import NotFoundError, PermanentError
from reconciler.core.model.vm import VolumeInfo
from reconciler.core.observe import POOL_MARKER, RawPool, RawVolume, VolumeKey

_UPLOAD_CHUNK = 256 * 1024
Listed = dict[str, dict[str, Any]]  # pool -> volume name -> virStorageVol


def pool_volumes(conn: Any, listed: Listed, pool_name: str) -> dict[str, Any]:
    """The volumes (virStorageVol) of a pool by name, listed once into ``listed``; none if the
    pool does not exist."""
    if pool_name not in listed:
        try:
            with translated(f"listing volumes of pool {pool_name}"):
                pool = conn.storagePoolLookupByName(pool_name)
                listed[pool_name] = {vol.name(): vol for vol in pool.listAllVolumes(0)}
        except NotFoundError:
            listed[pool_name] = {}
    return listed[pool_name]


def existing_volume(pool: Any, name: str) -> Any | None:
    """The volume ``name`` of the virStoragePool ``pool``, or None when it has none (any other
    libvirt error is raised)."""
    try:
        return pool.storageVolLookupByName(name)
    except libvirt.libvirtError as exc:
        if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_VOL:
            raise
        return None


def capacities(batch: list[tuple[VolumeKey, Any]]) -> list[tuple[VolumeKey, int]]:
    """Each volume's capacity in bytes (one call each); not those deleted meanwhile."""
    out = []
    for key, vol in batch:
        try:
            with translated(f"listing volumes of pool {key[0]}"):
                out.append((key, int(vol.info()[1])))
        except NotFoundError:
            continue
    return out


def volume_sizes(conn: Any, keys: set[VolumeKey]) -> dict[VolumeKey, int]:
    """The capacity in bytes of each of these volumes that exists."""
    listed: Listed = {}
    found = [(key, vol) for key in sorted(keys)
             if (vol := pool_volumes(conn, listed, key[0]).get(key[1])) is not None]
    return dict(capacities(found))


def _info(pool: Any) -> tuple[int, int, int, int]:
    """(state, capacity, allocation, available) of a pool, zeros where libvirt cannot say: the
    sizes are not worth failing the whole read for."""
    try:
        state, capacity, allocation, available = pool.info()
    except libvirt.libvirtError:
        return 0, 0, 0, 0
    return int(state), int(capacity), int(allocation), int(available)


class Storage(Connection):
    # --- pools ---------------------------------------------------------------------------------

    def read_raw_pools(self) -> tuple[RawPool, ...]:
        """Every pool: its persistent XML, sizes, and (when active) the names of its volumes.
        A pool removed meanwhile is left out."""
        with translated("listing storage pools"):
            autostart = {p.name() for p in self.conn.listAllStoragePools(
                libvirt.VIR_CONNECT_LIST_STORAGE_POOLS_AUTOSTART)}
            pools = self.conn.listAllStoragePools(0)
        out = []
        for pool in pools:
            name = pool.name()
            try:
                with translated(f"reading storage pool {name}"):
                    active = bool(pool.isActive())
                    _state, capacity, allocation, available = _info(pool)
                    out.append(RawPool(
                        name=name, active=active, autostart=name in autostart,
                        xml=inactive_xml(pool, libvirt.VIR_STORAGE_XML_INACTIVE),
                        capacity=capacity, allocation=allocation, available=available,
                        volumes=tuple(pool.listVolumes()) if active else ()))
            except NotFoundError:
                continue
        return tuple(out)

    def define_pool(self, xml: str, *, instance: str) -> None:
        """Define, build (mkdir), start, and put the instance's marker volume in the pool."""
        with translated("defining storage pool"):
            pool = self.conn.storagePoolDefineXML(xml, 0)
            pool.build(0)
            pool.create(0)
            self.mark_pool(pool.name(), instance)

    def mark_pool(self, name: str, instance: str) -> None:
        from lxml import etree

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

    # --- volumes -------------------------------------------------------------------------------

    def read_raw_volume(self, pool: str, name: str) -> RawVolume:
        with translated(f"volume {name} in pool {pool}"):
            vol = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            return RawVolume(pool, name, str(vol.XMLDesc(0)))

    def read_volumes(self, pool: str) -> tuple[VolumeInfo, ...]:
        """Every volume of a pool with its capacity, format, path and backing file (one call
        per volume); a volume removed meanwhile is left out; none for a pool that does not
        exist or is inactive."""
        return tuple(observe.volume_info(raw) for raw in self.read_raw_volumes(pool))

    def read_raw_volumes(self, pool: str) -> tuple[RawVolume, ...]:
        """Every volume of a pool as read (``read_volumes`` parses them)."""
        try:
            with translated(f"listing volumes of pool {pool}"):
                storage = self.conn.storagePoolLookupByName(pool)
                volumes = storage.listAllVolumes(0) if storage.isActive() else []
        except NotFoundError:
            return ()
        out = []
        for vol in volumes:
            try:
                with translated(f"reading volume {vol.name()} of pool {pool}"):
                    out.append(RawVolume(pool, vol.name(), str(vol.XMLDesc(0))))
            except NotFoundError:
                continue
        return tuple(out)

    def volume(self, pool: str, name: str) -> VolumeInfo:
        """Capacity (bytes), format and backing file of a volume; NotFoundError if missing."""
        return observe.volume_info(self.read_raw_volume(pool, name))

    def volume_exists(self, pool: str, name: str) -> bool:
        try:
            self.volume(pool, name)
        except NotFoundError:
            return False
        return True

    def create_volume(self, pool: str, name: str, *, capacity: int, fmt: str,
                      backing: str | None = None) -> None:
        """A thin volume of ``capacity`` bytes; with ``backing`` (a volume of the same pool) a
        qcow2 overlay on it, or for raw a full copy grown to ``capacity``."""
        from lxml import etree

        root = etree.Element("volume")
        etree.SubElement(root, "name").text = name
        etree.SubElement(root, "capacity", unit="bytes").text = str(capacity)
        etree.SubElement(root, "allocation").text = "0"  # thin: space is taken as written
        target = etree.SubElement(root, "target")
        etree.SubElement(target, "format", type=fmt)
        if fmt == "qcow2":  # the current format (v3): libvirt's default, 0.10 (v2), cannot
            etree.SubElement(target, "compat").text = "1.1"  # resize with internal snapshots
        with translated(f"creating volume {name} in pool {pool}", settled=True):
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
        """Domains with the volume as a disk (by pool/volume or by its path, also in a live
        backing chain), live or config. A domain undefined while it is read is no user; any
        other error is raised (it never reads as "no users")."""
        from lxml import etree

        try:
            path = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name).path()
        except libvirt.libvirtError:
            path = None
        users = []
        with translated(f"looking for users of volume {name}"):
            domains = self.conn.listAllDomains(0)
        for dom in domains:
            try:
                with translated(f"looking for users of volume {name}"):
                    flags = [libvirt.VIR_DOMAIN_XML_INACTIVE] + ([0] if dom.isActive() else [])
                    roots = [etree.fromstring(dom.XMLDesc(flag).encode()) for flag in flags]
            except NotFoundError:
                continue  # undefined meanwhile: it uses nothing
            if any((s.get("pool") == pool and s.get("volume") == name)
                   or (path and s.get("file") == path)
                   for root in roots for s in root.iterfind("devices/disk//source")):
                users.append(dom.name())
        return users

    def resize_volume(self, pool: str, name: str, capacity: int) -> None:
        """Grow the volume to ``capacity`` bytes."""
        with translated(f"resizing volume {name} in pool {pool}", settled=True):
            vol = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            vol.resize(capacity, 0)

    def delete_volume(self, pool: str, name: str) -> None:
        """Delete the volume. NotFoundError only when the pool is there and has no volume of
        that name (libvirt's VIR_ERR_NO_STORAGE_VOL): a missing pool is a PermanentError,
        never taken for the volume being gone (its file may still be on disk)."""
        what = f"deleting volume {name} in pool {pool}"
        with translated(what, settled=True):
            try:
                storage = self.conn.storagePoolLookupByName(pool)
            except libvirt.libvirtError as exc:
                if exc.get_error_code() != libvirt.VIR_ERR_NO_STORAGE_POOL:
                    raise
                raise PermanentError(f"{what}: the pool does not exist (any more); the volume "
                                     "was not deleted") from exc
            storage.storageVolLookupByName(name).delete(0)

    def upload_volume(self, pool: str, name: str, data: bytes) -> None:
        """Make ``name`` a raw volume holding exactly ``data``, sent through libvirt's storage
        stream API (so it works on a remote host too). A volume of another size is replaced."""
        from lxml import etree

        with translated(f"uploading volume {name} to pool {pool}", settled=True):
            storage = self.conn.storagePoolLookupByName(pool)
            vol = existing_volume(storage, name)
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
