"""Carry out a move (``core.moves``): the VM goes from this host to the one the repository
places it on, through libvirt's migration and storage-stream APIs. The destination is opened
read-write over its Host's URI for the move alone."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import PermanentError
from reconciler.core.model.vm import LiveVM
from reconciler.core.plan import Action, Op, Part
from reconciler.core.xml.common import add_move


@dataclass(frozen=True)
class Route:
    """How to reach a host for a move: its libvirt ``uri`` (which this host's libvirtd must be
    able to open too: peer to peer) and, optionally, ``data_uri`` where QEMU sends memory
    and disks (tcp://ADDRESS; default the destination's host name)."""

    uri: str
    data_uri: str | None = None


def carry_out(action: Action, here: Libvirt, routes: Mapping[str, Route]) -> None:
    """Each step of the move, in order. Raises ``ReconcilerError`` on the first that fails;
    the VM then still runs here (a migration either succeeds or leaves it where it was), and
    the next plan starts over from what it finds."""
    vm = action.live
    assert isinstance(vm, LiveVM)
    source, destination = str(action.steps[0].old), str(action.steps[0].new)
    route = routes.get(destination)
    if route is None:
        raise PermanentError(f"no Host named {destination!r} to move {vm.name} to")
    there = Libvirt(route.uri)
    try:
        for step in action.steps:
            if step.op == Op.PREPARE_VOLUME:
                pool, name = _volume(vm, step.target.part, step.target.key)
                info = here.volume(pool, name)
                if not there.volume_exists(pool, name):  # else: left by an interrupted move
                    there.create_volume(pool, name, capacity=info.capacity,
                                        fmt=info.format or "raw")
            elif step.op == Op.COPY_VOLUME:
                pool, name = _volume(vm, step.target.part, step.target.key)
                if there.volume_exists(pool, name):  # a copy an interrupted move left (the
                    there.delete_volume(pool, name)  # plan checked no domain there uses it)
                here.copy_volume_to(there, pool, name)
            elif step.op == Op.MIGRATE:
                here.migrate(vm.name, route.uri, data_uri=route.data_uri)
                _record(there, vm.name, source, destination, "live")
                if vm.mark is not None and vm.mark.applied.get("autostart"):
                    there.set_autostart(vm.name, True)  # not part of the domain's XML
            elif step.op == Op.DEFINE_THERE:
                xml = here.domain_xml(vm.name, inactive=True)
                there.define(add_move(xml, source, destination, "cold", _now()))
                if vm.mark is not None and vm.mark.applied.get("autostart"):
                    there.set_autostart(vm.name, True)
            elif step.op == Op.UNDEFINE_HERE:
                here.undefine(vm.name)
            elif step.op == Op.DELETE_HERE:
                pool, name = _volume(vm, step.target.part, step.target.key)
                here.delete_volume(pool, name)
    finally:
        there.close()


def _volume(vm: LiveVM, part: Part, key: str) -> tuple[str, str]:
    """(pool, volume) of a disk (by its name) or of the seed."""
    if part == Part.SEED:
        assert vm.config.cloud_init is not None
        return vm.config.cloud_init.pool, seed_volume(vm.name)
    disk = next(d for d in vm.config.disks if d.name == key)
    return disk.pool, disk.volume(vm.name)


def _record(there: Libvirt, name: str, source: str, destination: str, how: str) -> None:
    """The move in the domain's history on the destination (its persistent definition)."""
    xml = there.domain_xml(name, inactive=True)
    there.define(add_move(xml, source, destination, how, _now()))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



