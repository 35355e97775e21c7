"""Carry out one network action's steps on libvirt."""

from __future__ import annotations

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.model.common import Mark
from reconciler.core.model.network import DesiredNetwork
from reconciler.core.plan import Action, Kind, Op
from reconciler.core.xml import network as networkxml

# Steps carried out by rewriting the persistent definition.
_DEFINED = (Op.SET_BRIDGE, Op.SET_FORWARD, Op.SET_IPV4, Op.SET_SPEC_HASH)


def carry_out(action: Action, hv: Libvirt, *, instance: str, commit: str | None) -> None:
    if action.has(Op.UNDEFINE):
        hv.remove_network(action.name)  # destroy (if active) and undefine
        return
    want = action.desired
    assert isinstance(want, DesiredNetwork)
    spec = want.spec
    mark = Mark(want.source.relative, want.spec_hash, commit, {}, instance)
    if action.kind == Kind.CREATE:
        hv.define_network(networkxml.build(spec, mark=mark))
    elif action.has(*_DEFINED):
        hv.define_network(networkxml.edit(hv.network_xml(spec.name), spec, mark=mark))
    if action.has(Op.SET_AUTOSTART):
        hv.set_network_autostart(spec.name, spec.autostart)
    if action.has(Op.START):
        hv.start_network(spec.name)
