"""The plan: what apply will do, as frozen values."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.model.vm import DesiredVM, LiveVM


class Kind(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    DESTROY = "destroy"
    BLOCKED = "blocked"


class Mode(StrEnum):
    LIVE = "live"  # changed on the running VM and persisted
    CONFIG = "config"  # persisted only (stopped VM, or a setting of the tool's own)
    RESTART = "restart"  # persisted now; the running VM takes it at its next start
    PENDING = "pending"  # already persisted; the running VM still waits for a restart
    REFUSED = "refused"  # will not be done (it would lose data)


WRITES = (Mode.LIVE, Mode.CONFIG, Mode.RESTART)
SUSPENDED = "suspended (annotation reconciler/suspend)"


@dataclass(frozen=True)
class Change:
    field: str
    old: str | None
    new: str | None
    mode: Mode
    note: str = ""


@dataclass(frozen=True)
class Action:
    kind: Kind
    name: str
    changes: tuple[Change, ...] = ()
    reason: str = ""  # blocked: why; destroy: what happens to the volumes
    restart: bool = False  # apply restarts the VM to finish restart-needing changes
    desired: DesiredVM | None = None
    live: LiveVM | None = None
    resource: str = "vm"  # vm | network | pool
    infra: object | None = None  # a DesiredNetwork or DesiredPool
    infra_live: object | None = None  # a LiveNetwork or LivePool

    @property
    def label(self) -> str:
        """The name as plans show it: VMs bare, others prefixed (``network/lab``)."""
        return self.name if self.resource == "vm" else f"{self.resource}/{self.name}"

    @property
    def writes(self) -> bool:
        """Whether apply changes anything for this action."""
        if self.kind in (Kind.CREATE, Kind.DESTROY):
            return True
        if self.kind == Kind.BLOCKED:  # a suspended VM's changes are shown, not made
            return False
        if any(c.mode == Mode.REFUSED for c in self.changes):
            return False
        return self.restart or any(c.mode in WRITES for c in self.changes)

    @property
    def conflict(self) -> bool:
        """A domain with the manifest's name exists and is not this tool's to change (nor to
        adopt as it is)."""
        return self.kind == Kind.BLOCKED and self.reason.startswith(("conflict", "adopt refused"))

    @property
    def suspended(self) -> bool:
        """Left as it is on purpose (annotation reconciler/suspend): not a failure."""
        return self.kind == Kind.BLOCKED and self.reason.startswith(SUSPENDED)

    @property
    def refused(self) -> bool:
        return any(c.mode == Mode.REFUSED for c in self.changes)

    @property
    def pending_restart(self) -> tuple[Change, ...]:
        """Changes the running VM will only see after a restart nobody has done yet."""
        if self.restart:
            return ()
        return tuple(c for c in self.changes if c.mode in (Mode.RESTART, Mode.PENDING))

    @property
    def blocked(self) -> bool:
        return self.kind == Kind.BLOCKED or self.refused or bool(self.pending_restart)


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...]
    fingerprint: str  # of the live state the plan was computed from
    problems: int = 0  # manifest problems met (nothing is destroyed when there are any)

    @property
    def has_changes(self) -> bool:
        return any(a.writes for a in self.actions)

    def count(self, kind: Kind) -> int:
        return sum(1 for a in self.actions if a.kind == kind and a.writes and not a.blocked)

    @property
    def blocked_count(self) -> int:
        return sum(1 for a in self.actions if a.blocked)


def seen(vm: LiveVM) -> str:
    """A digest of everything read about one domain. Pure."""
    text = repr(vm) + (repr(sorted(vm.mark.applied.items())) if vm.mark else "")
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def fingerprint(live: tuple[LiveVM, ...]) -> str:
    """A digest of the live state. Pure."""
    digest = hashlib.sha256()
    for vm in sorted(live, key=lambda v: v.name):
        digest.update(f"{vm.seen or seen(vm)}\0{vm.owner}\0{vm.mark is None}\n".encode())
    return digest.hexdigest()[:16]
