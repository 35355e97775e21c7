"""Carry out a move (``core.moves``): the VM goes from this host to the one the repository
places it on, through libvirt's migration and storage-stream APIs. The destination is opened
read-write over its Host's URI for the move alone."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from reconciler.adapters.libvirt import Libvirt
from reconciler.core.cloudinit import seed_volume
from reconciler.core.errors import PermanentError, TransientError
from reconciler.core.model.vm import LiveVM
from reconciler.core.plan import Action, Op, Part
from reconciler.core.record import Record
from reconciler.core.xml.common import add_move


@dataclass(frozen=True, eq=False, repr=False)
class Route(Record):
    """How to reach a host for a move: its libvirt ``uri`` (which this host's libvirtd must be
    able to open too: peer to peer) and, optionally, ``data_uri`` where QEMU sends memory
    and disks (tcp://ADDRESS; default the destination's host name)."""

    uri: str
    data_uri: str | None = None


def carry_out(action: Action, here: Libvirt, routes: Mapping[str, Route],
              tick: Callable[[], object] = lambda: None) -> None:
    """Each step of the move, in order. Raises ``ReconcilerError`` on the first that fails;
    the VM then still runs here (a migration either succeeds or leaves it where it was), and
    the next plan starts over from what it finds. ``tick``: called while a long step makes
    progress (a migration, a volume copy), for the daemon's watchdog.

    Before anything is written, the pools the move takes volumes from are checked not to be
    shared with the destination (a probe volume written here must not appear there): on
    shared storage the "copy" there would be the very file, and deleting the copy here would
    delete the disk."""
    vm = action.live
    assert isinstance(vm, LiveVM)
    source, destination = str(action.steps[0].old), str(action.steps[0].new)
    route = routes.get(destination)
    if route is None:
        raise PermanentError(f"no Host named {destination!r} to move {vm.name} to")
    there = _open(route.uri)
    wants_autostart = bool(vm.mark is not None and vm.mark.applied.get("autostart"))
    try:
        _not_shared(here, there, vm, action, destination)
        for step in action.steps:
            if step.op == Op.PREPARE_VOLUME:
                pool, name = _volume(vm, step.target.part, step.target.key)
                info = here.volume(pool, name)
                if not there.volume_exists(pool, name):  # else: left by an interrupted move
                    there.create_volume(pool, name, capacity=info.capacity,
                                        fmt=info.format or "raw")
            elif step.op == Op.COPY_VOLUME:  # written over when an interrupted move left one
                pool, name = _volume(vm, step.target.part, step.target.key)
                here.copy_volume_to(there, pool, name, tick)
            elif step.op == Op.MIGRATE:
                here.migrate(vm.name, route.uri, data_uri=route.data_uri, tick=tick)
                _record(there, vm.name, source, destination, "live")
                if wants_autostart:
                    there.set_autostart(vm.name, True)  # not part of the domain's XML
            elif step.op == Op.DEFINE_THERE:
                if wants_autostart:  # a reboot here must never start the copy left here
                    here.set_autostart(vm.name, False)
                xml = here.domain_xml(vm.name, inactive=True)
                there.define(add_move(xml, source, destination, "cold", _now()))
            elif step.op == Op.UNDEFINE_HERE:
                here.undefine(vm.name)
                if wants_autostart:  # only now: one host, one definition that starts
                    there.set_autostart(vm.name, True)
            elif step.op == Op.DELETE_HERE:
                pool, name = _volume(vm, step.target.part, step.target.key)
                here.delete_volume(pool, name)
    finally:
        there.close()


OPEN_TIMEOUT = 30.0  # seconds the destination has to answer the connection


def _open(uri: str) -> Libvirt:
    """A read-write connection to the destination, given ``OPEN_TIMEOUT`` seconds."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["hv"] = Libvirt(uri)
        except BaseException as exc:
            box["error"] = exc

    opener = threading.Thread(target=run, name="libvirt-move-open", daemon=True)
    opener.start()
    opener.join(OPEN_TIMEOUT)
    if opener.is_alive():
        raise TransientError(f"cannot connect to {uri}: no answer within {OPEN_TIMEOUT:g} s")
    error = box.get("error")
    if isinstance(error, BaseException):
        raise error
    hv = box["hv"]
    assert isinstance(hv, Libvirt)
    return hv


def _not_shared(here: Libvirt, there: Libvirt, vm: LiveVM, action: Action,
                destination: str) -> None:
    """Raises ``PermanentError`` when a pool the move takes volumes from is the same storage
    on ``destination`` (NFS, a cluster file system): a probe volume written here shows up
    there. Its volumes would be deleted, not moved."""
    pools = sorted({_volume(vm, s.target.part, s.target.key)[0] for s in action.steps
                    if s.target.part in (Part.DISK, Part.SEED)})
    for pool in pools:
        probe = f".reconciler-probe-{secrets.token_hex(6)}"
        here.create_volume(pool, probe, capacity=1 << 20, fmt="raw")
        try:
            there.refresh_pool(pool)
            shared = there.volume_exists(pool, probe)
        finally:
            here.delete_volume(pool, probe)
        if shared:
            raise PermanentError(
                f"pool {pool!r} is the same storage here and on {destination} (a volume "
                f"written here appears there): moving {vm.name} would delete its disks; "
                "moves between hosts that share storage are not supported, move it by hand "
                "(virsh migrate without --copy-storage-all)")


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



