"""What the libvirt adapter observes, as raw values, and the functions that turn them into the
live model (``LiveVM``, ``LiveNetwork``, ``LivePool``). Pure: no libvirt, no I/O.

The adapter reads; it maps libvirt's integer constants to the words used here (a domain's state
and the reason for it) and hands over the XML as libvirt gave it. Everything that XML means is
decided here, so golden XML files test it without libvirt (``tests/observe/``).
"""

from __future__ import annotations

import ipaddress
import posixpath
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, NamedTuple

from reconciler.core.model.common import Mark
from reconciler.core.model.network import LiveNetwork, NetworkSpec
from reconciler.core.model.pool import LivePool, PoolSpec
from reconciler.core.model.vm import DomainDefinition, LiveVM, VolumeInfo

if TYPE_CHECKING:
    from lxml import etree

# The XML modules (and lxml) are imported where XML is parsed: a plan whose domains, networks
# and pools were all parsed before (the cache's steady state) does not load them.

VolumeKey = tuple[str, str]  # (pool, volume)

# A domain's state, as libvirt's virDomainState names it (lower case, words apart).
DOMAIN_STATES = ("no state", "running", "blocked", "paused", "shutting down", "shut off",
                 "crashed", "pmsuspended")
# States in which the domain has a QEMU process (and live XML): a paused, blocked or
# PM-suspended domain runs for the reconciler (it is not started again).
RUNNING_STATES = frozenset({"running", "blocked", "paused", "pmsuspended"})
_SHOWN_STATE = {"pmsuspended": "suspended"}  # LiveVM.state's word where it differs

POOL_MARKER = ".reconciler-"  # a pool holding a volume named so was created by that instance


# The values read and the values made of them below are NamedTuples, not dataclasses: every
# run defines them, a cached plan with nothing to do included, and Python 3.11 compiles five or
# six methods for each dataclass it defines (about 0.4 ms each, against 0.06 ms for a
# NamedTuple; see bench/startup_bench.py).


class RawDomain(NamedTuple):
    """One domain as the adapter read it.

    ``state``: one of ``DOMAIN_STATES`` ("unknown" for a value this code does not know).
    ``reason``: why it is in that state, libvirt's virDomain<State>Reason name in lower case with
    spaces (running: booted, unpaused, restored, from snapshot, ...; paused: user, ioerror,
    migration, ...; shut off: shutdown, destroyed, saved, crashed, ...); "unknown" when libvirt
    does not say. ``id``: the running domain's id, None when it is not running.
    ``managed_save``: a managed-save image exists (``virsh managedsave``; start resumes it).
    ``inactive_xml``: the persistent definition (a transient domain: its only one).
    ``live_xml``: the running definition, None unless the state is one of ``RUNNING_STATES``.
    """

    name: str
    uuid: str
    id: int | None
    state: str
    reason: str
    persistent: bool
    managed_save: bool
    autostart: bool
    inactive_xml: str
    live_xml: str | None = None

    @property
    def running(self) -> bool:
        return self.state in RUNNING_STATES

    def facts(self) -> tuple[int | None, str, str, bool, bool, bool]:
        """What the XML does not say (its name and uuid are in it): with a digest of the XML,
        the key of the live model made from this value (``live_vm``), kept small and cheap."""
        return (self.id, self.state, self.reason, self.persistent, self.managed_save,
                self.autostart)


class RawNetwork(NamedTuple):
    """One network as read. ``xml``: its persistent (inactive) definition. ``ports``: the
    UUIDs of the ports guests are connected by (an active network; None: not known)."""

    name: str
    active: bool
    persistent: bool
    autostart: bool
    xml: str
    ports: tuple[str, ...] | None = None
    live_xml: str | None = None  # an active network's running definition


class RawPool(NamedTuple):
    """One storage pool as read. ``xml``: its persistent (inactive) definition. Sizes in bytes
    (libvirt's figures at the last refresh; 0 for an inactive pool). ``volumes``: the names of
    its volumes (an inactive pool cannot be listed: empty), which tell its owner."""

    name: str
    active: bool
    autostart: bool
    xml: str
    capacity: int = 0
    allocation: int = 0
    available: int = 0
    volumes: tuple[str, ...] = ()


class RawVolume(NamedTuple):
    """One storage volume as read: its pool, its name and its XML (``virsh vol-dumpxml``)."""

    pool: str
    name: str
    xml: str


class DomainTrees(NamedTuple):
    """A domain's two definitions, parsed: the persistent one, and the live one when it runs."""

    inactive: etree._Element
    live: etree._Element | None


class DomainRefs(NamedTuple):
    """What a domain's XML says that the adapter needs before it reads the volume sizes.

    ``volumes``: (pool, volume) of each disk with a volume source, persistent definition first,
    then the live one, without repeats. ``cdroms``: those attached as CD-ROMs (a cloud-init
    seed). ``mark``: the tool's mark, None on a domain it did not create. ``files``: the paths
    its disks name directly (``<source file=...>``), and every path of a backing chain the live
    definition shows: a volume is in use by this domain under its path too."""

    mark: Mark | None
    volumes: tuple[VolumeKey, ...]
    cdroms: frozenset[VolumeKey]
    files: tuple[str, ...] = ()


class Observation(NamedTuple):
    """Every domain as read: the live models; for each domain name a digest of what was read
    of it (for the plan's fingerprint); and who uses which storage: (pool, volume) -> the
    domains whose disks name it, and file path -> the domains whose disks (or their live
    backing chains) name it."""

    vms: tuple[LiveVM, ...]
    read: dict[str, str]
    users: dict[VolumeKey, tuple[str, ...]]
    file_users: dict[str, tuple[str, ...]]


def parse_domain(raw: RawDomain) -> DomainTrees:
    """Parse the domain's XML (the live one only when it was read). Pure."""
    from reconciler.core.xml import common as xmlcommon

    return DomainTrees(
        xmlcommon.parse(raw.inactive_xml),
        xmlcommon.parse(raw.live_xml) if raw.live_xml is not None else None)


def domain_refs(trees: DomainTrees) -> DomainRefs:
    """The mark and the volumes a domain's disks name. Pure."""
    from reconciler.core.xml import common as xmlcommon

    roots = [r for r in (trees.inactive, trees.live) if r is not None]
    return DomainRefs(
        mark=xmlcommon.read_mark(trees.inactive),
        volumes=tuple(dict.fromkeys(k for r in roots for k in volume_keys(r))),
        cdroms=frozenset(k for r in roots for k in volume_keys(r, device="cdrom")),
        files=tuple(dict.fromkeys(path for r in roots for path in file_paths(r))))


def file_paths(root: etree._Element) -> Iterator[str]:
    """The file paths a domain's disks name (``<source file>``), with the paths of the backing
    chains libvirt shows in a running domain's XML (``<backingStore><source file>``). Pure."""
    for source in root.iterfind("devices/disk//source[@file]"):
        yield posixpath.normpath(source.get("file"))  # libvirt keeps "//" and "/./" as written


def volume_keys(root: etree._Element, device: str | None = None) -> Iterator[VolumeKey]:
    """(pool, volume) of each disk (of one ``device`` kind: disk, cdrom) with a volume source,
    and of each volume in a disk's backing chain (an external snapshot's base), in document
    order. Pure."""
    for disk in root.iterfind("devices/disk"):
        if device is not None and disk.get("device", "disk") != device:
            continue
        for source in disk.iter("source"):
            if source.get("pool") and source.get("volume"):
                yield source.get("pool"), source.get("volume")


def live_vm(raw: RawDomain, sizes: Mapping[VolumeKey, int], *,
            trees: DomainTrees | None = None, mark: Mark | None = None) -> LiveVM:
    """The live model of one domain. Pure.

    ``sizes``: capacity in bytes of the volumes read, by (pool, volume); a disk whose volume is
    missing from it reads as of unknown size. ``trees`` and ``mark``: the domain's parsed XML
    and its mark when the caller already has them (they are parsed from ``raw`` otherwise)."""
    from reconciler.core.xml import common as xmlcommon
    from reconciler.core.xml import devices as devicexml
    from reconciler.core.xml import domain as domainxml

    if trees is None:
        trees = parse_domain(raw)
        mark = xmlcommon.read_mark(trees.inactive)
    running = raw.running
    applied = mark.applied if mark else {}
    config = domainxml.read_spec(trees.inactive, running=running, autostart=raw.autostart,
                                 volumes=sizes, applied=applied)
    live_root = trees.live
    live = (domainxml.read_spec(live_root, running=True, autostart=False, volumes=sizes,
                                applied=applied)
            if live_root is not None else None)
    return LiveVM(
        name=raw.name, uuid=raw.uuid, running=running,
        state=_SHOWN_STATE.get(raw.state, raw.state),
        domain_id=raw.id if running else None,
        config=config, mark=mark,
        live_vcpus=live.vcpus if live else None,
        live_max_vcpus=live.max_vcpus if live else None,
        live_memory=live.memory if live else None,
        live_max_memory=live.max_memory if live else None,
        hold=xmlcommon.read_hold(live_root) if live_root is not None else None,
        live_disks=live.disks if live else None,
        live_nics=live.nics if live else None,
        reason=raw.reason, persistent=raw.persistent, managed_save=raw.managed_save,
        targets=tuple(sorted({t.get("dev") for r in (trees.inactive, live_root)
                              if r is not None for t in r.iterfind("devices/disk/target")
                              if t.get("dev")})),
        live_ports=tuple(_ports(live_root)) if live_root is not None else (),
        numa=trees.inactive.find("cpu/numa/cell") is not None,
        agent=(devicexml.read_guest_agent(live_root.find("devices"))
               if live_root is not None and live_root.find("devices") is not None else None),
    )


def _ports(root: etree._Element) -> Iterator[tuple[str, str, str]]:
    """(MAC, network, port UUID) of each running NIC on a libvirt network."""
    for element in root.iterfind("devices/interface[@type='network']"):
        source, mac = element.find("source"), element.find("mac")
        if source is not None and source.get("portid") and mac is not None:
            yield (mac.get("address", "").lower(), source.get("network", ""),
                   source.get("portid", ""))


def definition(raw: RawDomain, sizes: Mapping[VolumeKey, int]) -> DomainDefinition:
    """One domain as `reconciler export` needs it: its persistent XML, whether it runs, its
    autostart flag and the capacity in bytes of its disks' volumes. Pure."""
    return DomainDefinition(raw.name, raw.inactive_xml, raw.running, raw.autostart, dict(sizes))


def network_xml(raw: RawNetwork) -> tuple[NetworkSpec, Mark | None, NetworkSpec | None]:
    """What a network's XML says: its persistent definition, the tool's mark in it, and what
    it runs with when active (its live XML; None when not read). Pure."""
    from reconciler.core.xml import network as networkxml

    config, mark = networkxml.read(raw.xml, autostart=raw.autostart)
    running = (networkxml.read(raw.live_xml, autostart=raw.autostart)[0]
               if raw.live_xml is not None else None)
    return config, mark, running


def live_network(raw: RawNetwork,
                 parsed: tuple[NetworkSpec, Mark | None, NetworkSpec | None] | None = None,
                 ) -> LiveNetwork:
    """The live model of one network; ``parsed``: ``network_xml(raw)``, when known. Pure."""
    config, mark, running = parsed if parsed is not None else network_xml(raw)
    ports = tuple(sorted(raw.ports)) if raw.ports is not None else None
    return LiveNetwork(raw.name, raw.active, config, mark, ports, running)


def pool_owner(volumes: tuple[str, ...]) -> str | None:
    """The reconciler instance whose marker volume (``.reconciler-<instance>``) is among a
    pool's volumes (the last one listed, should there be several). Pure."""
    owner = None
    for name in volumes:
        if name.startswith(POOL_MARKER):
            owner = name[len(POOL_MARKER):]
    return owner


def pool_xml(raw: RawPool) -> PoolSpec:
    """What a storage pool's XML says (its persistent definition). Pure."""
    from reconciler.core.xml import pool as poolxml

    return poolxml.read(raw.xml, autostart=raw.autostart)


def live_pool(raw: RawPool, config: PoolSpec | None = None) -> LivePool:
    """The live model of one storage pool, with its owner (see ``pool_owner``); ``config``:
    ``pool_xml(raw)``, when known. Pure."""
    return LivePool(raw.name, raw.active, config if config is not None else pool_xml(raw),
                    pool_owner(raw.volumes) if raw.active else None)


def volume_info(raw: RawVolume) -> VolumeInfo:
    """A volume's capacity (bytes), format (qcow2, raw, ...) and backing file path. Pure."""
    from reconciler.core.xml import common as xmlcommon

    root = xmlcommon.parse(raw.xml)
    fmt = root.find("target/format")
    return VolumeInfo(raw.pool, raw.name, int(root.findtext("capacity") or 0),
                      fmt.get("type") if fmt is not None else None,
                      root.findtext("backingStore/path"), root.findtext("target/path"))


class VolumeFile(NamedTuple):
    """A volume's file: its path, the path of its backing file, and when it last changed
    (seconds since the epoch): the later of its data and its inode changes (libvirt's
    ``<timestamps>`` ``mtime`` and ``ctime``, file-based pools), so a file copied with its old
    times kept (``cp -p``, ``rsync -a``) still reads as new; None: not known. The time is kept
    out of ``VolumeInfo``, whose every field is part of what a plan observed: a running
    guest's disk is written all the time."""

    path: str | None
    backing: str | None
    changed: float | None


def volume_file(raw: RawVolume) -> VolumeFile:
    """``VolumeFile`` of a volume as read. Pure."""
    from reconciler.core.xml import common as xmlcommon

    root = xmlcommon.parse(raw.xml)
    times = []
    for which in ("mtime", "ctime"):
        try:
            times.append(float(root.findtext(f"target/timestamps/{which}") or ""))
        except ValueError:
            continue
    return VolumeFile(root.findtext("target/path"), root.findtext("backingStore/path"),
                      max(times) if times else None)


def routes(text: str) -> tuple[tuple[str, str], ...]:
    """(interface, CIDR) of each IPv4 route in the text of Linux's ``/proc/net/route``
    (destination and mask in host-order hex, little-endian on x86), the default route left
    out. Lines that do not parse are skipped. Pure."""
    out = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            dest = ipaddress.IPv4Address(int(fields[1], 16).to_bytes(4, "little"))
            mask = ipaddress.IPv4Address(int(fields[7], 16).to_bytes(4, "little"))
            net = ipaddress.IPv4Network(f"{dest}/{mask}", strict=False)
        except (ValueError, OverflowError):
            continue
        if net.prefixlen:
            out.append((fields[0], str(net)))
    return tuple(dict.fromkeys(out))
