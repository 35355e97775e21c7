"""What validation gives: the desired resources and the problems. Kept apart from the validator so
that a cached result (see ``reconciler.cache``) loads without YAML or JSON Schema."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from reconciler.core import defaults
from reconciler.core.errors import Problem
from reconciler.core.model.network import DesiredNetwork
from reconciler.core.model.pool import DesiredPool
from reconciler.core.model.vm import DesiredVM
from reconciler.core.record import Record

if TYPE_CHECKING:  # a fleet's Host manifests only
    from reconciler.core.model.host import DesiredHost

DEFAULT_STORAGE_ROOTS = defaults.STORAGE_ROOTS


@dataclass(frozen=True, eq=False, repr=False)
class Validated(Record):
    vms: tuple[DesiredVM, ...]
    problems: tuple[Problem, ...]
    networks: tuple[DesiredNetwork, ...] = ()
    pools: tuple[DesiredPool, ...] = ()
    # The fleet's hosts (kind: Host); none: one host, every VM is placed on it.
    hosts: tuple[DesiredHost, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


Position = tuple[int, int]  # line, column
ClaimKey = tuple[str, str]  # (kind, name): each kind has its own name space


@dataclass(frozen=True, eq=False, repr=False)
class Checked(Record):
    """One document checked on its own, with what the checks across documents need from it.
    Depends on nothing but the document (and the storage roots), so it is cached per file."""

    file: str
    problems: tuple[Problem, ...]
    claim: ClaimKey | None  # the name it declares, when readable
    name_at: Position  # where metadata.name is
    vm: DesiredVM | None = None  # set only for a document without problems
    network: DesiredNetwork | None = None
    pool: DesiredPool | None = None
    host: DesiredHost | None = None
    # Where the fields that a cross-document problem names are (MACs, disk names, cloudInit,
    # the bridge), by dotted field name.
    where: dict[str, Position] = field(default_factory=dict, compare=False)

    def problem(self, dotted: str, message: str) -> Problem:
        line, column = self.where.get(dotted, self.name_at)
        return Problem(self.file, line, column, dotted, message)
