"""Why a step cannot be done, in words: the refusals the plan makes from what it observed.
With ``words`` the only code that turns them into text. Pure."""

from __future__ import annotations

from reconciler.core.cloudinit import seed_volume
from reconciler.core.model.vm import Disk, Nic, VolumeInfo, volume_name
from reconciler.core.plan import Cause, Step
from reconciler.core.units import format_bytes


def _about(size: int) -> str:
    """A size as people read a free-space figure: exact when it is whole, else one decimal."""
    exact = format_bytes(size)
    if not exact.endswith("B") or exact.endswith("iB"):
        return exact
    for suffix, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= factor:
            return f"{size / factor:.1f}{suffix}"
    return exact


def _users(names: tuple[str, ...]) -> str:
    """"is a disk of web-01", "backs volume default/child-root", or both."""
    volumes = [n.removeprefix("volume ") for n in names if n.startswith("volume ")]
    domains = [n for n in names if not n.startswith("volume ")]
    parts = ([f"is a disk of {', '.join(domains)}"] if domains else []) + (
        [f"backs volume {', '.join(volumes)}"] if volumes else [])
    return " and ".join(parts)


def refusal(step: Step) -> str:
    """Why a step cannot be done, from what was observed before the plan."""
    new, old = step.new, step.old
    vm = step.target.name
    if step.cause == Cause.SUBNET_TAKEN and step.names[0].startswith("the host"):
        return (f"its subnet {new} is already routed on {step.names[0]}: libvirt would "
                "not start it ('Network is already in use'); choose another subnet")
    if step.cause == Cause.SUBNET_TAKEN:
        return (f"its subnet {new} overlaps network {step.names[0]}'s ({step.names[1]}): "
                "libvirt would not start it; choose another subnet")
    if step.cause == Cause.BRIDGE_TAKEN:
        owner = step.names[0]
        owner = owner if owner.startswith("the host") else f"network {owner}"
        return (f"{owner} already has the bridge {step.names[1]}; choose another bridge name, "
                "or leave it out (libvirt picks one)")
    if step.cause == Cause.OUTSIDE_ROOTS:
        return (f"its real path {new} is below no storage root ({', '.join(step.names)}); "
                "a symbolic link must not lead a pool out of them: name a directory below "
                "a root, or add a root (storageRoots in the host's config)")
    if step.cause == Cause.PATH_TAKEN:
        return (f"pool {step.names[0]} already has the directory {step.names[1]}; one "
                "directory holds one pool")
    if step.cause == Cause.PATH_NESTED:
        return (f"{new} and the directory of pool {step.names[0]} ({step.names[1]}) lie one "
                "inside the other: each pool would list the other's files as its volumes; "
                "put pools side by side (see storageRoots in the README)")
    if step.cause == Cause.NO_SPACE and len(step.names) == 3:
        pool, needed, free = step.names
        return (f"pool {pool} has {_about(int(free))} free, and the disks this plan "
                f"creates or grows there need {_about(int(needed))}; free space in the "
                "pool, or put the disk in another pool")
    if step.cause == Cause.NO_MEMORY and len(step.names) == 2:
        needed, free = step.names
        return (f"the host has {_about(int(free))} of memory free, and the VMs this plan "
                f"starts need {_about(int(needed))} (each its memory); stop a VM or give "
                "less memory")
    if step.cause == Cause.BRIDGE_MISSING and isinstance(new, Nic):
        return (f"the host has no interface {new.bridge}; create the bridge on the host, or "
                "use a libvirt network")
    if step.cause == Cause.NUMA_CELLS:
        return ("the domain's NUMA cells (<cpu><numa>) fix its memory and vCPUs; change the "
                "cells with virsh edit, then the manifest")
    if step.cause == Cause.OVERLAY and step.names:
        return (f"the disk runs on the external snapshot overlay {step.names[0]} over its "
                "volume; changing the volume would break the chain: merge the overlay back "
                "(virsh blockcommit DOMAIN DISK --active --pivot) or remove the disk by hand")
    if step.cause == Cause.VCPUS_LIMIT:
        return (f"the host's machine type allows at most {step.names[0]} vCPUs "
                "(virsh domcapabilities)")
    if step.cause == Cause.MAC_TAKEN and isinstance(new, Nic):
        return (f"MAC {new.mac} is already a NIC of {', '.join(step.names)}; two guests with "
                "one MAC lose each other's frames: choose another MAC, or leave it out "
                "(libvirt picks one)")
    if step.cause == Cause.NETWORK_MISSING and isinstance(new, Nic):
        return (f"network {new.network} does not exist or is not active; declare it (kind: "
                "Network), or create or start it on the host")
    if step.cause == Cause.IN_USE and step.target.part.value == "seed":
        return (f"volume {seed_volume(vm)} is a disk of {', '.join(step.names)}; it cannot "
                f"become {vm}'s cloud-init seed: rename the VM or that disk")
    if not isinstance(new, Disk):
        return ""
    volume, pool = volume_name(vm, new.name), new.pool
    if step.cause == Cause.POOL_MISSING:
        return (f"pool {pool} does not exist or is not active; declare it (kind: StoragePool) "
                "or create and start it on the host")
    if step.cause == Cause.IMAGE_MISSING:
        return (f"image {new.image!r} is not a volume of pool {pool}; upload it first "
                "(virsh vol-upload)")
    if step.cause == Cause.IMAGE_LARGER and isinstance(old, VolumeInfo):
        return (f"image {new.image} ({format_bytes(old.capacity)}) is larger than the disk "
                f"({format_bytes(new.size)}); raise the disk's size to at least the image's")
    if step.cause == Cause.IN_USE and not isinstance(old, VolumeInfo):
        return (f"image {new.image} is a disk of {', '.join(step.names)}; an image must be a "
                "volume no VM uses")
    if step.cause == Cause.IN_USE:
        return (f"volume {volume} in pool {pool} already exists and {_users(step.names)}; "
                "rename the disk or the VM")
    if step.cause == Cause.VOLUME_FORMAT and isinstance(old, VolumeInfo):
        return (f"volume {volume} in pool {pool} already exists as {old.format}, not "
                f"{new.format}; rename the disk, or remove the old volume if it is not needed")
    if step.cause == Cause.VOLUME_LARGER and isinstance(old, VolumeInfo):
        return (f"volume {volume} in pool {pool} already exists and is larger "
                f"({format_bytes(old.capacity)}) than the manifest's {format_bytes(new.size)}; "
                "raise the size to reuse it, or rename the disk")
    return ""

