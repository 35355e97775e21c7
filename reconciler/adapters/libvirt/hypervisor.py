"""Kept so that ``reconciler.adapters.libvirt.hypervisor`` imports keep working; import from
``reconciler.adapters.libvirt`` instead."""

from __future__ import annotations

from reconciler.adapters.libvirt import (
    POOL_MARKER,
    Libvirt,
    VolumeKey,
    start_event_loop,
    translated,
)

__all__ = ["POOL_MARKER", "Libvirt", "VolumeKey", "start_event_loop", "translated"]
