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
from reconciler.core.model.vm import DesiredVM, LiveVM, VMSpec
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
    delete the disk.

    The move is recorded in the domain's persistent definition there (``<moves>``), sent with
    it: a cold move defines it with the record, a live migration hands libvirt the persistent
    definition to keep there (VIR_MIGRATE_PARAM_PERSIST_XML). So a move that stops after the
    VM got there, before the volumes here were deleted, is known for one by the next plan
    (``core.moves.leftover``), whose action here has only those deletes (and no live VM)."""
    vm = action.live
    if isinstance(vm, LiveVM):
        name, spec = vm.name, vm.config
    else:  # the end of a move: the VM is there already, its volumes left here are deleted
        assert isinstance(action.desired, DesiredVM)
        name, spec = action.desired.spec.name, action.desired.spec
    source, destination = str(action.steps[0].old), str(action.steps[0].new)
    route = routes.get(destination)
    if route is None:
        raise PermanentError(f"no Host named {destination!r} to move {name} to")
    there = _open(route.uri)
    wants_autostart = bool(isinstance(vm, LiveVM) and vm.mark is not None
                           and vm.mark.applied.get("autostart"))
    # what the move takes, recorded with the domain there (how a stopped move's copy here is
    # told from a volume that only has its name: ``core.moves.leftover``)
    taken = [_volume(name, spec, s.target.part, s.target.key) for s in action.steps
             if s.op in (Op.PREPARE_VOLUME, Op.COPY_VOLUME)]
    try:
        _not_shared(here, there, name, spec, action, destination)
        for step in action.steps:
            if step.op == Op.PREPARE_VOLUME:
                pool, volume = _volume(name, spec, step.target.part, step.target.key)
                info = here.volume(pool, volume)
                if not there.volume_exists(pool, volume):  # else: left by an interrupted move
                    there.create_volume(pool, volume, capacity=info.capacity,
                                        fmt=info.format or "raw")
            elif step.op == Op.COPY_VOLUME:  # written over when an interrupted move left one
                pool, volume = _volume(name, spec, step.target.part, step.target.key)
                here.copy_volume_to(there, pool, volume, tick)
            elif step.op == Op.MIGRATE:
                persistent = add_move(here.domain_xml(name, inactive=True), source,
                                      destination, "live", _now(), taken)
                here.migrate(name, route.uri, data_uri=route.data_uri, persist_xml=persistent,
                             tick=tick)
                if wants_autostart:
                    there.set_autostart(name, True)  # not part of the domain's XML
            elif step.op == Op.DEFINE_THERE:
                if wants_autostart:  # a reboot here must never start the copy left here
                    here.set_autostart(name, False)
                xml = here.domain_xml(name, inactive=True)
                there.define(add_move(xml, source, destination, "cold", _now(), taken))
            elif step.op == Op.UNDEFINE_HERE:
                here.undefine(name)
                if wants_autostart:  # only now: one host, one definition that starts
                    there.set_autostart(name, True)
            elif step.op == Op.DELETE_HERE:
                pool, volume = _volume(name, spec, step.target.part, step.target.key)
                users = here.domains_using(pool, volume)  # one taken into use meanwhile
                if users:
                    raise PermanentError(
                        f"volume {volume} in pool {pool} is used by {', '.join(users)} now: "
                        f"kept; the move of {name} to {destination} is otherwise done")
                here.delete_volume(pool, volume)
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


def _not_shared(here: Libvirt, there: Libvirt, name: str, spec: VMSpec, action: Action,
                destination: str) -> None:
    """Raises ``PermanentError`` when a pool the move takes volumes from is the same storage
    on ``destination`` (NFS, a cluster file system): a probe volume written here shows up
    there. Its volumes would be deleted, not moved."""
    pools = sorted({_volume(name, spec, s.target.part, s.target.key)[0] for s in action.steps
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
                f"written here appears there): moving {name} would delete its disks; "
                "moves between hosts that share storage are not supported, move it by hand "
                "(virsh migrate without --copy-storage-all)")


def _volume(name: str, spec: VMSpec, part: Part, key: str) -> tuple[str, str]:
    """(pool, volume) of a disk (by its name) or of the seed of the VM ``name``."""
    if part == Part.SEED:
        assert spec.cloud_init is not None
        return spec.cloud_init.pool, seed_volume(name)
    disk = next(d for d in spec.disks if d.name == key)
    return disk.pool, disk.volume(name)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")



