"""Moves between hosts through libvirt's own engines: live migration (peer to peer, disks
copied over NBD) and volumes copied through storage streams. libvirt's API only (no paths, no
shell), so it works the same between two machines as between the test bed's two libvirtds."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import libvirt

from reconciler.adapters.libvirt.connection import Connection, translated
from reconciler.adapters.libvirt.storage import existing_volume
from reconciler.core import defaults
from reconciler.core.errors import PermanentError, TransientError

CHUNK = 256 * 1024  # what one libvirt stream message carries at most

# libvirt's flags for a move of a running VM (virDomainMigrateToURI3): live, the source
# libvirtd talks to the destination itself, the definition made persistent there and undefined
# here only once the migration has succeeded, and every writable disk copied (NBD) into the
# volume prepared there with the same pool, name and size.
LIVE_MOVE = (libvirt.VIR_MIGRATE_LIVE | libvirt.VIR_MIGRATE_PEER2PEER
             | libvirt.VIR_MIGRATE_PERSIST_DEST | libvirt.VIR_MIGRATE_UNDEFINE_SOURCE
             | libvirt.VIR_MIGRATE_NON_SHARED_DISK
             # a guest dirtying memory faster than it is sent is slowed down until it converges
             | libvirt.VIR_MIGRATE_AUTO_CONVERGE)
MIGRATION_TIMEOUT = defaults.MIGRATION_TIMEOUT
POLL = 2.0  # seconds between two looks at a migration in flight


@dataclass
class Copied:
    """Bytes of a volume copy: sent as ``data``, skipped as ``holes``, and holes of the source
    sent as ``zeros`` over data the destination already held."""

    data: int = 0
    holes: int = 0
    zeros: int = 0

    @property
    def size(self) -> int:
        return self.data + self.holes


class Migration(Connection):
    def live_cpu(self, name: str) -> str | None:
        """The running domain's <cpu> element (libvirt expands host-model there), or None
        when it has none with a model (nothing to check against another host's CPU)."""
        from lxml import etree

        with translated(f"reading the CPU of {name}"):
            root = etree.fromstring(self._dom(name).XMLDesc(0).encode())
        cpu = root.find("cpu")
        if cpu is None or cpu.find("model") is None:
            return None
        return str(etree.tostring(cpu, encoding="unicode"))

    def migrate(self, name: str, destination: str, *, data_uri: str | None = None,
                persist_xml: str | None = None, tick: Callable[[], object] = lambda: None,
                timeout: float = MIGRATION_TIMEOUT) -> None:
        """Live-migrate the running domain to the libvirtd at ``destination`` (a URI the
        source libvirtd itself can open: peer to peer). ``data_uri``: where QEMU sends memory
        and disks (tcp://ADDRESS); default, the destination's host name. Its disks' volumes
        must exist there (same pool, name and size). ``persist_xml``: the persistent
        definition it is to have there (VIR_MIGRATE_PARAM_PERSIST_XML; default: the one it
        has here), sent with the migration itself. ``tick`` is called every ``POLL``
        seconds while the migration job answers (progress, for a watchdog); after
        ``timeout`` seconds the job is aborted (virDomainAbortJob) and the VM runs on here.

        Raises ``TransientError`` when it was aborted, ``ReconcilerError`` as libvirt
        fails."""
        params: dict[str, str] = {}
        if data_uri:
            params[libvirt.VIR_MIGRATE_PARAM_URI] = data_uri
        if persist_xml:
            params[libvirt.VIR_MIGRATE_PARAM_PERSIST_XML] = persist_xml
        dom = self._dom(name)
        box: dict[str, BaseException] = {}

        def run() -> None:
            try:
                with translated(f"migrating {name} to {destination}"):
                    dom.migrateToURI3(destination, params, LIVE_MOVE)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name=f"migrate-{name}", daemon=True)
        worker.start()
        deadline = time.monotonic() + timeout
        while worker.is_alive():
            worker.join(POLL)
            if worker.is_alive():
                with contextlib.suppress(libvirt.libvirtError):
                    if dom.jobInfo()[0] != libvirt.VIR_DOMAIN_JOB_NONE:
                        tick()  # the job is there and libvirtd answers
                if time.monotonic() > deadline:
                    with contextlib.suppress(libvirt.libvirtError):
                        dom.abortJob()
                    worker.join(60)
                    raise TransientError(f"migrating {name} to {destination}: not done within "
                                         f"{timeout:g} s; aborted, it runs on here")
        if "error" in box:
            raise box["error"]

    def refresh_pool(self, pool: str) -> None:
        """Have libvirt look at the pool's directory again (virStoragePoolRefresh): a volume
        written there by another host appears."""
        with translated(f"refreshing pool {pool}"):
            self.conn.storagePoolLookupByName(pool).refresh(0)

    def copy_volume_to(self, other: Connection, pool: str, name: str,
                       tick: Callable[[], object] = lambda: None) -> Copied:
        """Make volume ``name`` of ``pool`` on ``other`` (created there with this one's
        capacity and format when missing) a byte-identical, as sparse, copy of this host's,
        through storage streams. Neither may be in use. A hole in a sparse upload is not
        written (libvirt seeks over it), so where the destination already holds data (a new
        qcow2's header, an interrupted earlier copy) the source's holes are sent as zeros."""
        with translated(f"copying volume {name} of pool {pool}", settled=True):
            src = self.conn.storagePoolLookupByName(pool).storageVolLookupByName(name)
            target_pool = other.conn.storagePoolLookupByName(pool)
            dst = existing_volume(target_pool, name)
            if dst is None:
                dst = target_pool.createXML(_same_volume(src), 0)
            return copy(src, dst, tick)


def _same_volume(src: libvirt.virStorageVol) -> str:
    """A thin volume with ``src``'s name, capacity and format (without <allocation>, libvirt
    would preallocate a raw file in full)."""
    from lxml import etree

    desc = etree.fromstring(src.XMLDesc(0).encode())
    fmt = desc.find("target/format")
    root = etree.Element("volume")
    etree.SubElement(root, "name").text = src.name()
    etree.SubElement(root, "capacity", unit="bytes").text = str(src.info()[1])
    etree.SubElement(root, "allocation", unit="bytes").text = "0"
    target = etree.SubElement(root, "target")
    etree.SubElement(target, "format", type=fmt.get("type", "raw") if fmt is not None else "raw")
    return str(etree.tostring(root, encoding="unicode"))


def extents(vol: libvirt.virStorageVol) -> list[tuple[int, int]]:
    """Where ``vol``'s file holds data, (start, end) pairs, read by a sparse download."""
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


def copy(src: libvirt.virStorageVol, dst: libvirt.virStorageVol,
         tick: Callable[[], object] = lambda: None) -> Copied:
    """Make ``dst`` (an existing volume, on any host) a byte-identical, as sparse, copy of
    ``src`` through storage streams (see ``Migration.copy_volume_to``). Raises
    ``PermanentError`` when ``dst`` holds data beyond ``src``'s end (it cannot be cut short
    through the API: delete and recreate it)."""
    size = src.infoFlags(libvirt.VIR_STORAGE_VOL_GET_PHYSICAL)[2]
    existing = extents(dst)
    if existing and existing[-1][1] > size:
        raise PermanentError(f"volume {dst.name()} on the destination holds data beyond the "
                             f"{size} bytes of the source; delete it there, the next run "
                             "copies it again")
    stats = Copied()
    up = dst.connect().newStream(0)
    down = src.connect().newStream(0)
    try:
        dst.upload(up, 0, 0, libvirt.VIR_STORAGE_VOL_UPLOAD_SPARSE_STREAM)
        src.download(down, 0, 0, libvirt.VIR_STORAGE_VOL_DOWNLOAD_SPARSE_STREAM)

        def on_data(_stream: libvirt.virStream, data: bytes, _opaque: None) -> int:
            send_all(up, data)
            stats.data += len(data)
            tick()  # progress, for a watchdog
            return 0

        def on_hole(_stream: libvirt.virStream, length: int, _opaque: None) -> int:
            start = stats.size
            for kind, begin, end in _split(start, start + length, existing):
                if kind == "zeros":
                    for n in _chunks(end - begin):
                        send_all(up, bytes(n))
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
    if stats.size != size:
        raise PermanentError(f"copied {stats.size} bytes of volume {src.name()}, expected "
                             f"{size}")
    return stats


def send_all(stream: libvirt.virStream, data: bytes) -> None:
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
