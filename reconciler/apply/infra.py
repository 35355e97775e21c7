"""Carry out network and pool actions on libvirt."""

from __future__ import annotations

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.model.common import Mark
from reconciler.core.model.network import DesiredNetwork
from reconciler.core.model.pool import DesiredPool
from reconciler.core.plan import Action, Kind, Mode
from reconciler.core.xml import infra as xmlio


def carry_out(action: Action, hv: Libvirt, *, instance: str, commit: str | None) -> None:
    if action.kind == Kind.DESTROY:
        if action.resource == "network":
            hv.remove_network(action.name)
        else:
            hv.remove_pool(action.name)
        return
    want = action.infra
    if isinstance(want, DesiredNetwork):
        _network(action, want, hv, Mark(want.source.relative, want.spec_hash, commit, {},
                                        instance))
    elif isinstance(want, DesiredPool):
        _pool(action, want, hv, instance)


def _network(action: Action, want: DesiredNetwork, hv: Libvirt, mark: Mark) -> None:
    spec = want.spec
    if action.kind == Kind.CREATE:
        hv.define_network(xmlio.build_network(spec, mark=mark))
        hv.set_network_autostart(spec.name, spec.autostart)
        hv.start_network(spec.name)
        return
    if any(c.field not in ("state", "autostart") for c in action.changes):
        hv.define_network(xmlio.edit_network(hv.network_xml(spec.name), spec, mark=mark))
    if any(c.field == "autostart" for c in action.changes):
        hv.set_network_autostart(spec.name, spec.autostart)
    if any(c.field == "state" and c.mode == Mode.LIVE for c in action.changes):
        hv.start_network(spec.name)


def _pool(action: Action, want: DesiredPool, hv: Libvirt, instance: str) -> None:
    spec = want.spec
    if action.kind == Kind.CREATE:
        hv.define_pool(xmlio.build_pool(spec), instance=instance)
        hv.set_pool_autostart(spec.name, spec.autostart)
        return
    if any(c.field == "autostart" for c in action.changes):
        hv.set_pool_autostart(spec.name, spec.autostart)
    if any(c.field == "state" and c.mode == Mode.LIVE for c in action.changes):
        hv.start_pool(spec.name)
