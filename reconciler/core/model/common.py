"""Values every kind of resource shares: where a desired object came from, and the mark
the tool records on what it manages. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class Source(Record):
    """Where a desired object came from."""

    file: str  # as shown to the user
    relative: str  # relative to the manifest directory, recorded in the domain's metadata
    line: int


# What an entry of a mark's record of unfinished work (``Pending``) asks for.
CREATE = "create"  # the disk's volume is the tool's to make: missing, it is made, not restored
WRITE = "write"  # the cloud-init seed's content is not known to be complete: written again
DELETE = "delete"  # the volume (of a disk, or the seed) is deleted once no domain holds it
UNPLUG = "unplug"  # the disk or NIC (gone from the persistent definition) leaves the running VM
# ... and which part of the VM it is about.
DISK, SEED, NIC = "disk", "seed", "nic"


@dataclass(frozen=True, eq=False, repr=False)
class Pending(Record):
    """One piece of work apply recorded in a domain's mark before it began it, so that a run
    interrupted at any point (kill -9, a host crash) leaves it visible and owned: the next plan
    reads it and finishes it, with the manifest or, once the manifest is gone, by destroying.

    ``op``: ``CREATE``, ``WRITE``, ``DELETE`` or ``UNPLUG`` (above). ``part``: ``DISK``,
    ``SEED`` or ``NIC``. ``key``: the disk's name, the NIC's MAC ("" for the seed). ``pool``:
    where the volume is (disks and the seed). A volume is always the VM's own, named from the
    VM and ``key`` (``<vm>-<disk>``, ``<vm>-cidata``), never one the record names freely."""

    op: str
    part: str
    key: str = ""
    pool: str = ""


@dataclass(frozen=True, eq=False, repr=False)
class Mark(Record):
    """The tool's element in a managed domain's <metadata>."""

    manifest: str
    spec_hash: str
    commit: str | None
    # The last applied spec (protect, reclaim, ...), as JSON.
    applied: dict[str, Any] = field(compare=False, hash=False)
    instance: str = "default"  # which reconciler instance owns the domain
    corrupt: bool = False  # the element is there but unreadable: never destroyed on its word
    pending: tuple[Pending, ...] = ()  # work begun and not known to be finished, in order
    dirty: bool = False  # the manifests differed from ``commit`` when it was applied

