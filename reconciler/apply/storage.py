"""Volumes and the cloud-init seed, as apply's steps need them.

The plan decides which volumes are created, reused or deleted (``core.resolve``); these
functions carry that out and read each result back."""

from __future__ import annotations

import contextlib

from reconciler.adapters.lazylog import get_logger
from reconciler.adapters.libvirt import Libvirt
from reconciler.core import cloudinit
from reconciler.core.errors import NotFoundError, PermanentError
from reconciler.core.model.vm import Disk, VMSpec

log = get_logger("reconciler.apply")


def create_volume(hv: Libvirt, vm: str, disk: Disk) -> None:
    """Create the disk's volume (the plan saw none of that name), then read it back."""
    name = disk.volume(vm)
    hv.create_volume(disk.pool, name, capacity=disk.size, fmt=disk.format, backing=disk.image)
    _check_size(hv, disk, name)


def reuse_volume(hv: Libvirt, vm: str, disk: Disk) -> None:
    """Take up a retained volume of the same name (the plan found it unused, of the disk's
    format and not larger): grown to the disk's size when smaller, then read back."""
    name = disk.volume(vm)
    existing = hv.volume(disk.pool, name)
    if existing.capacity > disk.size:  # grown by hand since the plan: never shrunk
        raise PermanentError(f"volume {name} in pool {disk.pool} is now larger "
                             f"({existing.capacity} bytes) than the manifest's {disk.size}; "
                             "raise the size to reuse it, or rename the disk")
    log.info("reusing an existing volume", vm=vm, volume=name, pool=disk.pool)
    if existing.capacity < disk.size:
        hv.resize_volume(disk.pool, name, disk.size)
    _check_size(hv, disk, name)


def _check_size(hv: Libvirt, disk: Disk, name: str) -> None:
    capacity = hv.volume(disk.pool, name).capacity
    if capacity < disk.size:
        raise PermanentError(f"volume {name} in pool {disk.pool} has {capacity} bytes after "
                             f"it was made, not {disk.size}")


def delete_volume(hv: Libvirt, vm: str, pool: str, name: str) -> None:
    """Delete a volume the plan found unused. Read again first: a domain that took it up since
    keeps it, and the step fails saying so. A volume already gone (its pool there, the volume
    not in it: an interrupted run deleted it) is deleted; a missing or inactive pool fails the
    step, so that the record of it stays."""
    users = [d for d in hv.domains_using(pool, name) if d != vm]
    if users:
        raise PermanentError(f"volume {name} in pool {pool} is now a disk of "
                             f"{', '.join(users)}; it was kept")
    with contextlib.suppress(NotFoundError):  # this volume is gone from its pool: as wanted
        hv.delete_volume(pool, name)


def upload_seed(hv: Libvirt, spec: VMSpec) -> None:
    """Build the cloud-init seed ISO and upload it as the raw volume ``<vm>-cidata``."""
    seed = spec.cloud_init
    assert seed is not None
    image = cloudinit.seed_iso(cloudinit.files(spec.name, seed))
    volume = cloudinit.seed_volume(spec.name)
    users = [d for d in hv.domains_using(seed.pool, volume) if d != spec.name]
    if users:  # replacing it would destroy another VM's disk
        raise PermanentError(f"volume {volume} in pool {seed.pool} is a disk of "
                             f"{', '.join(users)}; it cannot become {spec.name}'s "
                             "cloud-init seed: rename the VM or that disk")
    hv.upload_volume(seed.pool, volume, image)
    # The hash only: user data is never logged.
    log.info("cloud-init seed uploaded", vm=spec.name, volume=volume, pool=seed.pool,
             digest=seed.digest, size=len(image))

def remove_seed(hv: Libvirt, name: str, pool: str) -> None:
    """The seed is derived data: it goes with the VM or with its cloudInit."""
    delete_volume(hv, name, pool, cloudinit.seed_volume(name))
