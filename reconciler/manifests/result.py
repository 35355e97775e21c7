"""What validation gives: the desired resources and the problems. Kept apart from the validator so
that a cached result (see ``reconciler.cache``) loads without YAML or JSON Schema."""

from __future__ import annotations

from dataclasses import dataclass

from reconciler.errors import Problem
from reconciler.infra.model import DesiredNetwork, DesiredPool
from reconciler.model import DesiredVM

DEFAULT_STORAGE_ROOTS = ("/var/lib/libvirt/images",)


@dataclass(frozen=True)
class Validated:
    vms: tuple[DesiredVM, ...]
    problems: tuple[Problem, ...]
    networks: tuple[DesiredNetwork, ...] = ()
    pools: tuple[DesiredPool, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems
