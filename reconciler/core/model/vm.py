"""The desired and live models of a virtual machine. Frozen values, no I/O.

Sizes are bytes, durations seconds. The manifest loader and the domain-XML parser both produce a
``VMSpec``, so desired and live state compare field by field.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from reconciler.core.model.common import Mark, Source
from reconciler.core.record import Record


class PowerState(StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"


def volume_name(vm: str, disk: str) -> str:
    """A VM's disk (or cloud-init seed) volume: ``<vm>-<disk>``."""
    return f"{vm}-{disk}"


@dataclass(frozen=True, eq=False, repr=False)
class Disk(Record):
    name: str
    size: int
    pool: str = "default"
    format: str = "qcow2"
    image: str | None = None
    bus: str = "virtio"
    reclaim: str = "retain"
    # Live disks only: the path of the external snapshot overlay the disk runs on, over its
    # volume (None: on the volume itself). Not part of the desired state, so not compared.
    overlay: str | None = field(default=None, compare=False)

    def volume(self, vm: str) -> str:
        return volume_name(vm, self.name)


@dataclass(frozen=True, eq=False, repr=False)
class Nic(Record):
    network: str | None = None
    bridge: str | None = None
    mac: str | None = None
    model: str = "virtio"

    @property
    def source(self) -> str:
        return f"network {self.network}" if self.network else f"bridge {self.bridge}"


@dataclass(frozen=True, eq=False, repr=False)
class CloudInit(Record):
    """A NoCloud seed: a short hash of its files and the pool of its volume ``<vm>-cidata``.

    The content is carried on the desired side only (a domain's XML holds the hash, from the
    applied record), never compared and never shown in a repr: user data stays out of logs.
    An empty ``digest`` on the live side means the content is unknown (the seed volume is gone).
    """

    digest: str
    pool: str = "default"
    user_data: str | None = field(default=None, repr=False, compare=False)
    meta_data: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # overrides
    network_config: str | None = field(default=None, repr=False, compare=False)


def simple(manifest: str, *, restart: bool = False) -> dict[str, object]:
    """The metadata of a ``VMSpec`` field that a manifest field sets as it is and the domain XML
    keeps as a value (``description``): validation reads it, the diff compares it
    (``Op.SET_FIELD``), the plan shows it, export writes it and apply persists it by redefining
    the domain, all without code of their own for it. ``manifest``: its name under ``spec``;
    ``restart``: a running VM takes a new value only at its next start."""
    return {"manifest": manifest, "restart": restart}


def simple_fields() -> tuple[dataclasses.Field[Any], ...]:
    """The ``VMSpec`` fields declared with ``simple``."""
    return tuple(f for f in dataclasses.fields(VMSpec) if "manifest" in f.metadata)


@dataclass(frozen=True, eq=False, repr=False)
class VMSpec(Record):
    """What a manifest asks for (or what a domain's persistent definition says)."""

    name: str
    vcpus: int
    memory: int
    max_vcpus: int
    max_memory: int
    state: PowerState = PowerState.RUNNING
    autostart: bool = False
    update_policy: str = "live"
    shutdown_timeout: int = 60
    protect: bool = False
    disks: tuple[Disk, ...] = ()
    nics: tuple[Nic, ...] = ()
    graphics: str = "none"
    firmware: str = "bios"
    boot: tuple[str, ...] = ("hd",)
    labels: tuple[tuple[str, str], ...] = ()
    cloud_init: CloudInit | None = None
    description: str = field(default="", metadata=simple("description"))
    # The QEMU guest agent's virtio channel (org.qemu.guest_agent.0); the VM is healthy only
    # while an agent answers on it. A channel is plugged at the next start.
    guest_agent: bool = field(default=False, metadata=simple("guestAgent", restart=True))


@dataclass(frozen=True, eq=False, repr=False)
class DesiredVM(Record):
    spec: VMSpec
    source: Source
    spec_hash: str
    adopt: bool = False  # annotation reconciler/adopt: "true": adopt a matching unmanaged domain
    suspend: bool = False  # annotation reconciler/suspend: "true": leave the VM as it is
    # Many hosts (kind: Host): the host named by spec.host, or the labels of spec.hostSelector
    # (sorted pairs). Where the VM runs, not what it is: kept out of the spec and its hash.
    host: str | None = None
    host_selector: tuple[tuple[str, str], ...] = ()

    @property
    def applied(self) -> dict[str, Any]:
        """The normalised spec, JSON-ready, as the mark records it (derived, so a cached
        manifest set does not carry it twice)."""
        return applied_record(self.spec)


@dataclass(frozen=True, eq=False, repr=False)
class LiveHold(Record):
    """A live change the hypervisor or guest did not take up, recorded on the running domain only.

    It disappears when the domain stops, so a restart clears it by itself.
    """

    vcpus: int | None = None
    memory: int | None = None
    reason: str = ""
    # The running values when it was recorded: it holds only while the VM still has them. Once
    # the guest moves (a balloon taken up late, a change by hand), the live value is diffed again.
    seen_vcpus: int | None = None
    seen_memory: int | None = None
    # Each held value's own reason (``reason`` joins them); empty in a hold an older version
    # wrote, whose ``reason`` then stands for every held value.
    vcpus_reason: str = ""
    memory_reason: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class VolumeInfo(Record):
    """A storage volume as libvirt describes it: capacity in bytes, format (qcow2, raw, ...),
    its path on the host and the path of its backing file (a copy-on-write base)."""

    pool: str
    name: str
    capacity: int
    format: str | None = None
    backing: str | None = None
    path: str | None = None


@dataclass(frozen=True, eq=False, repr=False)
class LiveVM(Record):
    """A domain as libvirt reports it: its persistent definition, and the running values."""

    name: str
    uuid: str
    running: bool
    state: str  # libvirt's word: running, paused, shut off, ...
    domain_id: int | None
    config: VMSpec  # parsed from the persistent (inactive) XML
    mark: Mark | None  # None: not created by this tool
    live_vcpus: int | None = None  # running domains only
    live_max_vcpus: int | None = None
    live_memory: int | None = None
    live_max_memory: int | None = None
    hold: LiveHold | None = None
    live_disks: tuple[Disk, ...] | None = None  # running domains only
    live_nics: tuple[Nic, ...] | None = None
    owner: str | None = None  # the other reconciler instance that manages it (mark hidden)
    # Why it is in that state: booted, unpaused, user, ioerror, destroyed, saved, ... Not in the
    # repr, hence not in the plan's fingerprint: a pause and resume changes only the reason.
    reason: str = field(default="", repr=False)
    persistent: bool = True  # False: a transient domain (gone once it stops)
    managed_save: bool = False  # a managed-save image exists: a start resumes from it
    # Every disk target name (vda, sdb, ...) in the persistent or the live definition: a disk
    # added gets one free in both (a disk whose unplug is pending still holds its own).
    targets: tuple[str, ...] = ()  # sorted
    # (MAC, network, port UUID) of each running NIC on a libvirt network: a port its network
    # no longer has is a NIC off its bridge (the network was restarted).
    live_ports: tuple[tuple[str, str, str], ...] = ()
    # The persistent definition has NUMA cells (<cpu><numa>): libvirt derives the memory from
    # them, and they name the vCPUs.
    numa: bool = False
    # The guest agent channel's state in the running domain: "connected", "disconnected", ""
    # (not known); None without a channel or when not running. Health, not the plan's input.
    agent: str | None = field(default=None, compare=False, repr=False)

    @property
    def managed(self) -> bool:
        return self.mark is not None


@dataclass(frozen=True, eq=False, repr=False)
class DomainDefinition(Record):
    """One domain as read for `reconciler export`: its persistent XML and what is not in it."""

    name: str
    xml: str  # the persistent (inactive) definition
    running: bool
    autostart: bool
    # (pool, volume) -> capacity in bytes, of its disks' volumes
    volumes: dict[tuple[str, str], int] = field(compare=False, hash=False)


def applied_record(vm: VMSpec) -> dict[str, Any]:
    """The spec as recorded in a managed domain's metadata (what destroy later needs). Pure."""
    return {
        "vcpus": vm.vcpus, "maxVcpus": vm.max_vcpus, "memory": vm.memory,
        "maxMemory": vm.max_memory, "state": str(vm.state), "autostart": vm.autostart,
        "updatePolicy": vm.update_policy, "shutdownTimeout": vm.shutdown_timeout,
        "protect": vm.protect, "graphics": vm.graphics, "firmware": vm.firmware,
        "boot": list(vm.boot),
        "disks": [{"name": d.name, "size": d.size, "pool": d.pool, "format": d.format,
                   "image": d.image, "bus": d.bus, "reclaim": d.reclaim} for d in vm.disks],
        "networks": [{"network": n.network, "bridge": n.bridge, "mac": n.mac, "model": n.model}
                     for n in vm.nics],
        # Only a short hash of the cloud-init files: user data never goes into the metadata.
        **({"cloudInit": vm.cloud_init.digest} if vm.cloud_init else {}),
        # Simple fields only when set: a record (and its hash) without them stays as it was.
        **{f.metadata["manifest"]: getattr(vm, f.name) for f in simple_fields()
           if getattr(vm, f.name) != f.default},
    }
