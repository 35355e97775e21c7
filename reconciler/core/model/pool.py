"""The desired and live models of a storage pool. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.core.model.common import Source
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class PoolSpec(Record):
    name: str
    path: str
    autostart: bool = True
    type: str = "dir"


@dataclass(frozen=True, eq=False, repr=False)
class DesiredPool(Record):
    spec: PoolSpec
    source: Source
    spec_hash: str


@dataclass(frozen=True, eq=False, repr=False)
class LivePool(Record):
    name: str
    active: bool
    config: PoolSpec
    owner: str | None  # the reconciler instance whose marker volume is in the pool


def below(path: str, folder: str) -> bool:
    """Whether ``path`` lies inside ``folder`` (not the folder itself); both normalised. Pure."""
    return path != folder and path.startswith(folder.rstrip("/") + "/")
