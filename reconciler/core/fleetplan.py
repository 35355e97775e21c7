"""The fleet's plan: each host's plan, side by side, with what only the whole fleet sees (a VM
that runs on one host and is placed on another is a move, not a create) and one summary. Pure.

Made by ``reconciler plan --fleet`` (``shells.fleet``): every Host is read at once (over its
URI, or from its snapshot file), each host's plan is made by the same code as its own
reconciler's, and a host that cannot be read is reported without stopping the others."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from reconciler.core import words
from reconciler.core.errors import Problem
from reconciler.core.fleet import arrivals
from reconciler.core.model.vm import DesiredVM, LiveVM
from reconciler.core.plan import Header, Kind, Op, Plan, Why
from reconciler.core.record import Record


@dataclass(frozen=True, eq=False, repr=False)
class HostPlan(Record):
    """One host of the fleet: its plan and header, or why it could not be planned
    (``error``: unreachable, no snapshot file, not in sync with libvirt...)."""

    host: str
    uri: str
    plan: Plan | None = None
    header: Header | None = None
    error: str = ""
    # For the fleet's status: the VMs placed on the host, and those of this instance found
    # there (the host's plan was made from them).
    desired: tuple[DesiredVM, ...] = ()
    live: tuple[LiveVM, ...] = ()


@dataclass(frozen=True, eq=False, repr=False)
class Move(Record):
    """A VM that runs on ``source`` and that the repository places on ``destination``.
    ``live``: a live migration (else a cold move); ``text``: as the source's plan says it
    (``core.words.move_text``)."""

    vm: str
    source: str
    destination: str
    live: bool
    text: str


@dataclass(frozen=True, eq=False, repr=False)
class FleetPlan(Record):
    hosts: tuple[HostPlan, ...]
    problems: tuple[Problem, ...] = ()  # the manifests' (the same for every host)
    moves: tuple[Move, ...] = ()

    @property
    def unreachable(self) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.plan is None)

    def count(self, kind: Kind) -> int:
        return sum(h.plan.count(kind) for h in self.hosts if h.plan is not None)

    @property
    def blocked_count(self) -> int:
        """What will not be done, moves apart (each is counted once, as a move)."""
        return sum(1 for h in self.hosts if h.plan is not None for a in h.plan.actions
                   if a.blocked and not _move_half(a.reason.why if a.reason else None))

    @property
    def has_changes(self) -> bool:
        return bool(self.moves) or any(h.plan.has_changes for h in self.hosts if h.plan)


def _move_half(why: Why | None) -> bool:
    return why in (Why.LEAVING, Why.ARRIVING)


def combine(hosts: Sequence[HostPlan], live: dict[str, tuple[LiveVM, ...]],
            problems: Iterable[Problem] = ()) -> FleetPlan:
    """The fleet plan from each host's own plan and the VMs read on it (``live``: host -> the
    VMs this instance manages there). A create of a VM that runs on another host becomes
    arriving (the host it leaves moves it), and each such pair is listed once as a move. Pure.
    """
    where: dict[str, str] = {}
    for host in sorted(live):
        for vm in live[host]:
            where.setdefault(vm.name, host)
    unread = {h.host: h.error for h in hosts if h.plan is None}
    out = []
    for entry in hosts:
        if entry.plan is None:
            out.append(entry)
            continue
        found = {name: host for name, host in where.items() if host != entry.host}
        # as the host's own reconciler does: nothing is created while a host is not read
        others = {host: error for host, error in unread.items() if host != entry.host}
        out.append(replace(entry, plan=arrivals(entry.plan, found, others)))
    # (each host's plan reads its VMs' destinations: a leaving VM is a move, or blocked)
    moves = [Move(a.name, entry.host, str(a.steps[0].new), a.has(Op.MIGRATE),
                  words.move_text(a))
             for entry in out for a in (entry.plan.actions if entry.plan else ())
             if a.kind == Kind.MOVE]
    return FleetPlan(tuple(out), tuple(problems), tuple(sorted(moves, key=lambda m: m.vm)))
