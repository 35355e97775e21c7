"""Plan and apply share this pipeline: manifests -> desired, libvirt -> live, then the diff."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from reconciler import diff
from reconciler.libvirt_adapter import Libvirt
from reconciler.manifests import loader
from reconciler.manifests.validate import Validated, validate
from reconciler.model import LiveVM
from reconciler.plan import Plan


def load_desired(path: Path) -> Validated:
    """Every manifest below ``path``, validated. Needs no libvirt."""
    documents, problems = loader.load_tree(path)
    return validate(documents, problems)


@dataclass(frozen=True)
class Planned:
    plan: Plan
    inputs: Validated


def make_plan(path: Path, hv: Libvirt, *, max_destroy: int, allow_empty: bool,
              instance: str = "default") -> Planned:
    inputs = load_desired(path)
    live = owned_view(hv.read_live(), instance)
    guards = diff.Guards(problems=len(inputs.problems), max_destroy=max_destroy,
                         allow_empty=allow_empty)
    return Planned(diff.plan(inputs.vms, live, guards), inputs)


def owned_view(live: tuple[LiveVM, ...], instance: str) -> tuple[LiveVM, ...]:
    """Domains of another reconciler instance look unmanaged to this one. Pure."""
    return tuple(vm if vm.mark is None or vm.mark.instance == instance else replace(vm, mark=None)
                 for vm in live)
