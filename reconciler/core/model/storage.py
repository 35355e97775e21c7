"""What a plan knows of the host's storage: which volumes each pool holds, who uses which volume,
and, for the pools where the plan creates, reuses or deletes volumes, every volume's details.
Frozen values, no I/O."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.core.model.pool import LivePool
from reconciler.core.model.vm import VolumeInfo
from reconciler.core.record import Record

VolumeKey = tuple[str, str]  # (pool, volume)


@dataclass(frozen=True, eq=False, repr=False)
class StorageView(Record):
    """``pool_volumes``: each active pool's volume names. ``users``: (pool, volume) -> the
    domains whose disks name it (persistent or live definition). ``file_users``: path -> the
    domains whose disks name the file, or show it in a live backing chain. ``details``: pool ->
    every volume of it, read for the pools the plan touches (see ``core.resolve.needs``).
    ``available``: each active pool's free bytes, as libvirt last refreshed it."""

    pool_volumes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    users: Mapping[VolumeKey, tuple[str, ...]] = field(default_factory=dict)
    file_users: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    details: Mapping[str, tuple[VolumeInfo, ...]] = field(default_factory=dict)
    available: Mapping[str, int] = field(default_factory=dict)  # pool -> free bytes

    def exists(self, key: VolumeKey) -> bool:
        return key[1] in self.pool_volumes.get(key[0], frozenset())

    def info(self, key: VolumeKey) -> VolumeInfo | None:
        return next((v for v in self.details.get(key[0], ()) if v.name == key[1]), None)

    def path(self, key: VolumeKey, pools: Mapping[str, LivePool]) -> str | None:
        """The volume's path on the host: as libvirt gave it, else (a dir pool) the pool's
        directory and the volume's name."""
        info = self.info(key)
        if info is not None and info.path:
            return info.path
        pool = pools.get(key[0])
        return posixpath.join(pool.config.path, key[1]) if pool and pool.config.path else None

    def using(self, key: VolumeKey, pools: Mapping[str, LivePool]) -> tuple[str, ...]:
        """Who uses a volume: domains naming it by pool and name or by its path (also in a live
        backing chain), and volumes of the pools read in detail that it backs (a copy-on-write
        base), as ``volume <pool>/<name>``. Sorted, without repeats."""
        found = set(self.users.get(key, ()))
        path = self.path(key, pools)
        if path:
            found.update(self.file_users.get(path, ()))
            for volumes in self.details.values():
                found.update(f"volume {v.pool}/{v.name}" for v in volumes if v.backing == path)
        return tuple(sorted(found))
