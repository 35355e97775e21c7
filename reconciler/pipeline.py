"""Plan and apply share this pipeline: manifests -> desired, libvirt -> live, then the diff."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.adapters import cache
from reconciler.adapters.cache import Cache
from reconciler.adapters.libvirt import Libvirt
from reconciler.adapters.manifests import load_desired
from reconciler.core.diff.guards import Guards
from reconciler.core.plan import Plan, fingerprint
from reconciler.core.planner import LiveState, compute, infra_text, owned_view
from reconciler.core.validate.result import DEFAULT_STORAGE_ROOTS, Validated


def read_state(hv: Libvirt, instance: str, desired: Validated | None = None,
               memo: Cache | None = None) -> LiveState:
    """Everything the diff needs, read before diffing. With ``desired``, a stopped VM's volume
    whose last applied size is the manifest's is not asked for its size (see
    ``Libvirt.read_live``); without it (the daemon) every size is read."""
    expected = None if desired is None else {
        (disk.pool, disk.volume(vm.spec.name)): disk.size
        for vm in desired.vms for disk in vm.spec.disks}
    return LiveState(owned_view(hv.read_live(expected, memo), instance), hv.read_networks(),
                     hv.read_pools())


@dataclass(frozen=True)
class Planned:
    plan: Plan
    inputs: Validated


def make_plan(path: Path, hv: Libvirt, *, max_destroy: int, allow_empty: bool,
              instance: str = "default",
              storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS,
              memo: Cache | None = None) -> Planned:
    """``memo``: a cache of parsed manifests and domains (plan and apply; see
    ``reconciler.cache``), and of a plan with nothing to do, keyed by a digest of all its
    inputs; saved here."""
    inputs = load_desired(path, storage_roots, memo)
    live = read_state(hv, instance, inputs, memo)
    guards = Guards(problems=len(inputs.problems), max_destroy=max_destroy,
                         allow_empty=allow_empty, hold_destroys=partial_reason(path))
    key = (cache.digest(inputs.digest, fingerprint(live.vms).encode(), infra_text(live).encode(),
                        repr(guards).encode(), instance.encode())
           if memo and inputs.digest else None)
    found = memo.get("plan", key) if memo and key else None
    plan = found if isinstance(found, Plan) else compute(inputs, live, guards, instance)
    if memo and key and found is None and not plan.actions:  # the steady state: nothing to do
        memo.put("plan", key, plan)
    if memo is not None:
        memo.save()
    return Planned(plan, inputs)


def partial_reason(path: Path) -> str:
    """Why this manifest set cannot be the whole truth, so nothing may be destroyed."""
    if path.is_file():
        return ("not destroyed: PATH is a single file, not the manifest directory; only a whole "
                "directory can remove VMs")
    return ""


