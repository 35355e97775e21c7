"""The connection to libvirt, and the one place its errors become the project's own."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Iterator
from functools import cached_property
from typing import Any
from urllib.parse import urlsplit

import libvirt

from reconciler.adapters import files
from reconciler.core import observe
from reconciler.core.errors import NotFoundError, PermanentError, TransientError

_NOT_FOUND = {
    libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL,
    libvirt.VIR_ERR_NO_NETWORK,
}
_TRANSIENT = {
    libvirt.VIR_ERR_SYSTEM_ERROR, libvirt.VIR_ERR_RPC, libvirt.VIR_ERR_NO_CONNECT,
    libvirt.VIR_ERR_OPERATION_TIMEOUT, libvirt.VIR_ERR_AGENT_UNRESPONSIVE,
    libvirt.VIR_ERR_INTERNAL_ERROR, libvirt.VIR_ERR_OPERATION_INVALID,
}
# Asked of a flag some drivers (test:///) do not know.
UNSUPPORTED = (libvirt.VIR_ERR_INVALID_ARG, libvirt.VIR_ERR_NO_SUPPORT)


def _silence(_ctx: object, _err: object) -> None:
    """libvirt prints every error to stderr by default; we report them ourselves."""


libvirt.registerErrorHandler(_silence, None)


def library_version() -> str:
    """The version of the libvirt library this process uses (``9.0.0``)."""
    number = int(libvirt.getVersion())
    return f"{number // 1_000_000}.{number // 1000 % 1000}.{number % 1000}"


@contextlib.contextmanager
def translated(what: str, *, settled: bool = False) -> Iterator[None]:
    """Turn a libvirtError into NotFoundError, TransientError or PermanentError.

    ``settled``: an internal error is the final word (storage work: qemu-img and the file
    system say the same again, as "Can't resize a v2 image which has snapshots"); elsewhere
    an internal error (a busy QEMU monitor) may pass, and is retried."""
    try:
        yield
    except libvirt.libvirtError as exc:
        code = exc.get_error_code()
        message = f"{what}: {exc.get_error_message() or exc}"
        if code in _NOT_FOUND:
            raise NotFoundError(message) from exc
        if settled and code == libvirt.VIR_ERR_INTERNAL_ERROR:
            raise PermanentError(message) from exc
        if code in _TRANSIENT:
            raise TransientError(message) from exc
        raise PermanentError(message) from exc


def inactive_xml(obj: Any, flag: int) -> str:
    """The persistent XML of a network or pool (``flag``: its kind's XML_INACTIVE); drivers
    without the flag (test:///) give their only one."""
    try:
        return str(obj.XMLDesc(flag))
    except libvirt.libvirtError as exc:
        if exc.get_error_code() not in UNSUPPORTED:
            raise
        return str(obj.XMLDesc(0))


def free_memory_of(conn: Any) -> int | None:
    """``Connection.free_memory`` of a virConnect (also another host's, ``peers``)."""
    try:
        stats = conn.getMemoryStats(libvirt.VIR_NODE_MEMORY_STATS_ALL_CELLS)
    except libvirt.libvirtError:
        return None
    try:
        kib = sum(int(stats[key]) for key in ("free", "buffers", "cached") if key in stats)
    except (TypeError, ValueError):
        return None
    return kib * 1024 if "free" in stats else None


def host_uuid_of(conn: Any, uri: str) -> str | None:
    """``Connection.host_uuid`` of a virConnect opened on ``uri`` (also another host's)."""
    from lxml import etree

    if uri.startswith("test:"):
        return None
    try:
        caps = etree.fromstring(conn.getCapabilities().encode())
    except libvirt.libvirtError:
        return None
    return caps.findtext("host/uuid") or None


class Connection:
    """An open libvirt connection (``conn``, a virConnect). The operations are added by the
    classes of the sibling modules, which all build on this one."""

    taken: str | None = None  # read live (a snapshot says when it was read)

    def __init__(self, uri: str, *, readonly: bool = False) -> None:
        self.uri = uri
        self.readonly = readonly
        self._uuid: dict[str, str | None] = {}  # host_uuid, once read
        with translated(f"cannot connect to {uri}"):
            self.conn: Any = (libvirt.openReadOnly if readonly else libvirt.open)(uri)

    def close(self, *, within: float | None = None) -> bool:
        """Close the connection. Closing is itself a call to libvirtd, which one that hangs
        does not answer (until keepalive gives up on it): with ``within`` (seconds) it is
        made in a thread of its own and waited for that long. Whether it finished."""

        def close() -> None:
            with contextlib.suppress(libvirt.libvirtError):
                self.conn.close()

        if within is None:
            close()
            return True
        closer = threading.Thread(target=close, name="libvirt-close", daemon=True)
        closer.start()
        closer.join(within)
        return not closer.is_alive()

    def alive(self) -> bool:
        """Whether the connection is still open: libvirtd did not close it and keepalive did
        not give up on it (virConnectIsAlive, which asks libvirtd nothing, so it never
        blocks)."""
        try:
            return bool(self.conn.isAlive() == 1)
        except libvirt.libvirtError:
            return False

    def free_memory(self) -> int | None:
        """The memory the host can give new guests, in bytes: free, buffers and page cache
        (``virNodeGetMemoryStats``, as the kernel's MemAvailable counts them); None where the
        driver cannot say (test:///)."""
        return free_memory_of(self.conn)

    def host_interfaces(self) -> tuple[str, ...] | None:
        """The names of the host's network interfaces, bridges included (libvirt's interface
        driver, active or not); None where the driver cannot say."""
        try:
            return tuple(sorted(i.name() for i in self.conn.listAllInterfaces(0)))
        except libvirt.libvirtError:
            return None

    def max_vcpus(self) -> int | None:
        """The most vCPUs a domain may have on its default machine type ("pc": the host
        capabilities' <machine maxCpus> for x86_64, which read-only connections may read);
        None where the driver does not say."""
        from lxml import etree

        try:
            caps = etree.fromstring(self.conn.getCapabilities().encode())
        except (libvirt.libvirtError, etree.XMLSyntaxError):
            return None
        for machine in caps.iterfind("guest/arch[@name='x86_64']/machine"):
            if machine.text == "pc" and machine.get("maxCpus", "").isdigit():
                return int(machine.get("maxCpus"))
        return None

    @property
    def local(self) -> bool:
        """The host is this machine (a URI with no host part: qemu:///system), so its files
        can be looked at from here; the test driver's host is not a machine at all."""
        return urlsplit(self.uri).hostname in (None, "", "localhost")

    def real_paths(self, paths: Iterable[str]) -> dict[str, str] | None:
        """Each path with its symbolic links resolved on the host; None where the host's file
        system cannot be seen from here (a remote connection)."""
        return files.real_paths(paths) if self.local else None

    def host_routes(self) -> tuple[tuple[str, str], ...]:
        """The host's IPv4 routes as (interface, CIDR), see ``core.observe.routes``; none where
        they cannot be read from here (a remote connection, the test driver)."""
        if not self.local or self.uri.startswith("test:"):
            return ()
        return observe.routes(files.read_routes())

    def hostname(self) -> str:
        """The host's name as libvirt gives it ("" where the driver does not say)."""
        try:
            return str(self.conn.getHostname())
        except libvirt.libvirtError:
            return ""

    def host_uuid(self) -> str | None:
        """libvirt's UUID of the host (capabilities <host><uuid>: host_uuid in libvirtd.conf,
        else the SMBIOS one): which machine a URI reaches. None for the test driver (every
        test host has the same one) or when libvirt cannot say. Read once per connection."""
        if "host" not in self._uuid:
            self._uuid["host"] = host_uuid_of(self.conn, self.uri)
        return self._uuid["host"]

    @cached_property
    def domain_type(self) -> str:
        """The best accelerator the host offers for x86_64 guests: kvm, else qemu (TCG)."""
        from lxml import etree

        with translated("reading host capabilities"):
            caps = etree.fromstring(self.conn.getCapabilities().encode())
        types = {d.get("type") for d in caps.iterfind("guest/arch[@name='x86_64']/domain")}
        for preferred in ("kvm", "qemu", "test"):
            if preferred in types:
                return preferred
        return sorted(types)[0] if types else "qemu"

    def _dom(self, name: str) -> Any:
        """The virDomain named ``name`` (NotFoundError if there is none)."""
        with translated(f"domain {name}"):
            return self.conn.lookupByName(name)
