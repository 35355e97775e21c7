"""Volumes and the cloud-init seed, as apply's steps need them.

A volume is created in its pool (thin), or a retained one of an earlier VM of the same name is
reused when nothing else uses it; a volume is deleted only when no other domain uses it."""

from __future__ import annotations

import contextlib

import structlog

from reconciler.adapters.libvirt import Libvirt
from reconciler.core import cloudinit
from reconciler.core.errors import NotFoundError, PermanentError
from reconciler.core.model.vm import Disk, VMSpec

log = structlog.get_logger("reconciler.apply")


def ensure_volume(hv: Libvirt, vm: str, disk: Disk) -> None:
    """Create the disk's volume; a retained volume of an earlier VM is reused (and grown)."""
    name = disk.volume(vm)
    try:
        existing = hv.volume(disk.pool, name)
    except NotFoundError:
        if disk.image:
            users = hv.domains_using(disk.pool, disk.image)
            if users:  # another VM's live disk: its data would leak, its writes corrupt
                raise PermanentError(f"image {disk.image} is a disk of {', '.join(users)}; "
                                     "an image must be a volume no VM uses") from None
        hv.create_volume(disk.pool, name, capacity=disk.size, fmt=disk.format,
                              backing=disk.image)
        return
    users = [d for d in hv.domains_using(disk.pool, name) if d != vm]
    if users:
        raise PermanentError(f"volume {name} in pool {disk.pool} already exists and is a disk "
                             f"of {', '.join(users)}; rename the disk or the VM")
    if existing.format and existing.format != disk.format:
        raise PermanentError(f"volume {name} in pool {disk.pool} already exists as "
                             f"{existing.format}, not {disk.format}; rename the disk, or "
                             "remove the old volume if it is not needed")
    if existing.capacity > disk.size:
        raise PermanentError(f"volume {name} in pool {disk.pool} already exists and is "
                             f"larger ({existing.capacity} bytes) than the manifest's "
                             f"{disk.size}; raise the size to reuse it, or rename the disk")
    log.info("reusing an existing volume", vm=vm, volume=name, pool=disk.pool)
    if existing.capacity < disk.size:
        hv.resize_volume(disk.pool, name, disk.size)

def delete_volume(hv: Libvirt, vm: str, pool: str, name: str) -> None:
    """Delete a volume per ``reclaim: delete`` unless another domain still uses it."""
    users = [d for d in hv.domains_using(pool, name) if d != vm]
    if users:
        log.warning("volume kept: another domain uses it", vm=vm, volume=name,
                    users=users)
        return
    with contextlib.suppress(NotFoundError):
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
