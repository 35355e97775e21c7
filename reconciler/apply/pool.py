"""Carry out one storage pool action's steps on libvirt."""

from __future__ import annotations

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.model.pool import DesiredPool
from reconciler.core.plan import Action, Kind, Op
from reconciler.core.xml import pool as poolxml


def carry_out(action: Action, hv: Libvirt, *, instance: str) -> None:
    if action.has(Op.UNDEFINE):
        hv.remove_pool(action.name)  # stop and undefine; the directory and volumes stay
        return
    want = action.desired
    assert isinstance(want, DesiredPool)
    spec = want.spec
    if action.kind == Kind.CREATE:
        hv.define_pool(poolxml.build(spec), instance=instance)  # built, started, marked
    if action.has(Op.SET_AUTOSTART):
        hv.set_pool_autostart(spec.name, spec.autostart)
    if action.has(Op.START):
        hv.start_pool(spec.name)
