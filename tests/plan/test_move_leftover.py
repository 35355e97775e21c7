"""``core.moves.leftover``: what tells the copy a stopped move left on the host it left from a
volume that only has its name. Pure; the two-host test is tests/fleet/test_move_leftovers.py."""

from __future__ import annotations

from datetime import UTC, datetime

from planbuild import desired_vm

from reconciler.core.defaults import MIGRATION_TIMEOUT
from reconciler.core.model.host import Destination
from reconciler.core.moves import SETTLE, SKEW, leftover
from reconciler.core.plan import Kind, Op, Part, Why
from reconciler.core.words import reason_text

AT = "2026-11-30T12:00:00Z"
BEGAN = datetime(2026, 11, 30, 12, tzinfo=UTC).timestamp()
VM = desired_vm({"name": "web-01", "vcpus": 1, "memory": "64MiB",
                 "disks": [{"name": "root", "size": "16MiB"}, {"name": "data", "size": "16MiB"}]})


TAKEN = (("default", "web-01-root"), ("default", "web-01-data"))
NOW = BEGAN + 86400.0


def _there(*, instance: str = "default", source: str = "hv-a", at: str = AT,
           error: str = "", taken: tuple[tuple[str, str], ...] = TAKEN) -> Destination:
    return Destination("hv-b", "qemu+ssh://hv-b/system", error=error,
                       domains=(("web-01", instance),), moved=(("web-01", source, at, taken),))


def _left(written: float | None) -> tuple[tuple[str, str, str, float | None], ...]:
    return (("default", "web-01-root", "root", written), ("default", "web-01-data", "data", BEGAN))


def test_the_copy_a_move_from_here_left_is_deleted_here() -> None:
    action = leftover(VM, "hv-a", "default", _there(), _left(BEGAN + 30), NOW)
    assert action is not None and action.kind == Kind.MOVE and action.live is None
    assert [(s.op, s.target.part, s.target.key, s.old, s.new) for s in action.steps] == [
        (Op.DELETE_HERE, Part.DISK, "root", "hv-a", "hv-b"),
        (Op.DELETE_HERE, Part.DISK, "data", "hv-a", "hv-b")]


def test_a_volume_written_after_the_move_can_have_ended_is_left_alone() -> None:
    late = BEGAN + MIGRATION_TIMEOUT + SETTLE + 1
    action = leftover(VM, "hv-a", "default", _there(), _left(late), NOW)
    assert action is not None and [s.target.key for s in action.steps] == ["data"]
    assert leftover(VM, "hv-a", "default", _there(), _left(None), NOW) is not None  # data only
    assert leftover(VM, "hv-a", "default", _there(),
                    (("default", "web-01-root", "root", None),), NOW) is None  # time unknown


def test_only_a_volume_the_move_took_is_its_copy() -> None:
    """A volume of the VM's that the move did not take (a disk removed from the manifest
    before, its volume retained) is not its copy, however old."""
    only_root = _there(taken=(("default", "web-01-root"),))
    action = leftover(VM, "hv-a", "default", only_root, _left(BEGAN - 86400), NOW)
    assert action is not None and [s.target.key for s in action.steps] == ["root"]
    assert leftover(VM, "hv-a", "default", _there(taken=()), _left(BEGAN), NOW) is None


def test_without_the_evidence_nothing_is_deleted() -> None:
    left = _left(BEGAN + 30)
    assert leftover(VM, "hv-a", "default", _there(source="hv-c"), left, NOW) is None
    assert leftover(VM, "hv-a", "default", _there(instance="other"), left, NOW) is None
    assert leftover(VM, "hv-a", "default", _there(instance=""), left, NOW) is None  # by hand
    assert leftover(VM, "hv-a", "default", _there(at="yesterday"), left, NOW) is None
    bare = Destination("hv-b", "qemu+ssh://hv-b/system", domains=(("web-01", "default"),))
    assert leftover(VM, "hv-a", "default", bare, left, NOW) is None  # no record of a move
    # a record from the future proves nothing (a clock ahead, a forged record)
    assert leftover(VM, "hv-a", "default", _there(), left, BEGAN - SKEW - 1) is None
    assert leftover(VM, "hv-a", "default", _there(), left, BEGAN - SKEW + 1) is not None


def test_an_unread_destination_keeps_the_volumes_and_says_so() -> None:
    action = leftover(VM, "hv-a", "default", _there(error="no route to host"), _left(BEGAN),
                      NOW)
    assert action is not None and action.kind == Kind.BLOCKED and not action.writes
    assert action.reason is not None and action.reason.why == Why.LEFT_BEHIND
    assert action.stuck  # `plan` exits 1
    assert reason_text(action) == (
        "kept: default/web-01-root, default/web-01-data here, named like its volumes and used "
        "by nothing, may be the copy a stopped move to hv-b left (hv-b cannot be read: no "
        "route to host); delete them by hand once you know they are")
