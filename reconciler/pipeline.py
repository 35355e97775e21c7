"""Plan and apply share this pipeline: manifests -> desired, libvirt -> live, then the diff."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reconciler import cache, diff
from reconciler.cache import Cache
from reconciler.errors import Problem
from reconciler.infra import diff as infra_diff
from reconciler.infra.model import LiveNetwork, LivePool
from reconciler.libvirt_adapter import Libvirt
from reconciler.manifests import files
from reconciler.manifests.crossdoc import combine
from reconciler.manifests.result import DEFAULT_STORAGE_ROOTS, Checked, Validated
from reconciler.model import LiveVM
from reconciler.plan import Kind, Plan, fingerprint


def load_desired(path: Path, storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS,
                 memo: Cache | None = None) -> Validated:
    """Every manifest below ``path``, validated. Needs no libvirt.

    With ``memo``: a file whose bytes (and shown path) are unchanged is not parsed again (its
    documents' results come from the cache), so an edit costs only the files it touched; and
    when no file changed, the whole result comes from the cache."""
    if not path.exists():
        return Validated((), (Problem(files.display_path(path), 0, 0, "",
                                      "no such file or directory"),))
    paths, problems = files.manifest_files(path)
    cwd = os.getcwd()
    keyed = [(file, *_file_key(file, path, storage_roots, memo, cwd)) for file in paths]
    whole = None
    if memo is not None and all(key for _, _, key in keyed):
        whole = cache.digest(repr([key for _, _, key in keyed]).encode(), repr(problems).encode())
        hit = memo.get("manifests", whole)
        if isinstance(hit, Validated):
            return replace(hit, digest=whole)  # the per-file table is not even loaded
    checked: list[Checked] = []
    for file, data, key in keyed:
        found, documents = _load_file(file, path, storage_roots, memo, data, key)
        problems.extend(found)
        checked.extend(documents)
    validated = combine(checked, problems)
    if memo is not None and whole is not None and not _holds_secrets(memo, checked):
        memo.put("manifests", whole, validated)
        return replace(validated, digest=whole)
    return validated


def _holds_secrets(memo: Cache, checked: Iterable[Checked]) -> bool:
    """Results holding cloud-init user data are never written to a cache on disk (a CI runner
    may upload its cache folder); the daemon's cache in memory keeps them."""
    return not memo.memory and any(
        c.vm is not None and c.vm.spec.cloud_init is not None for c in checked)


FileKey = tuple[str, str, bytes, tuple[str, ...]]  # shown path, relative path, digest, roots


def _file_key(file: Path, root: Path, storage_roots: Sequence[str],
              memo: Cache | None, cwd: str) -> tuple[bytes | None, FileKey | None]:
    """A file's bytes and its cache key; none without a cache or when it cannot be read (then
    ``load_file`` says why)."""
    if not memo:
        return None, None
    try:
        data = file.read_bytes()
    except OSError:
        return None, None
    return data, (files.display_path(file, cwd), files.relative_path(file, root),
                  cache.digest(data), tuple(storage_roots))


def _load_file(file: Path, root: Path, storage_roots: Sequence[str], memo: Cache | None,
               data: bytes | None, key: FileKey | None,
               ) -> tuple[tuple[Problem, ...], tuple[Checked, ...]]:
    if memo is not None and key is not None:
        hit = memo.get("file", key)
        if isinstance(hit, tuple):
            return hit
    from reconciler.manifests import loader  # YAML and JSON Schema: only when not cached
    from reconciler.manifests.validate import check

    documents, problems = loader.load_file(file, root, data)
    result = (tuple(problems), tuple(check(doc, storage_roots) for doc in documents))
    if memo is not None and key is not None and not _holds_secrets(memo, result[1]):
        memo.put("file", key, result)
    return result


@dataclass(frozen=True)
class LiveState:
    vms: tuple[LiveVM, ...]
    networks: tuple[LiveNetwork, ...] = ()
    pools: tuple[LivePool, ...] = ()


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


def compute(inputs: Validated, live: LiveState, guards: diff.Guards, instance: str) -> Plan:
    """The whole plan: pools and networks first, then VMs, then removed pools and networks.
    Pure."""
    vm_plan = diff.plan(inputs.vms, live.vms, guards)
    # VMs this run destroys no longer hold their pools and networks (the executor removes
    # those only after every VM destroy succeeded).
    leaving = {a.name for a in vm_plan.actions if a.kind == Kind.DESTROY}
    staying = tuple(vm for vm in live.vms if vm.name not in leaving)
    held_back = guards.hold_destroys.replace("not destroyed", "not removed")
    if held_back:
        pass
    elif guards.problems:
        held_back = (f"not removed: {guards.problems} manifest problem(s) in this run; "
                     "nothing is removed until every manifest is valid")
    elif not (inputs.vms or inputs.networks or inputs.pools) and not guards.allow_empty:
        held_back = "not removed: the manifest set is empty; pass --allow-empty"
    infra = [
        *infra_diff.plan_pools(inputs.pools, live.pools, instance=instance, vms=staying,
                               wanted_vms=inputs.vms, held_back=held_back),
        *infra_diff.plan_networks(inputs.networks, live.networks, instance=instance,
                                  vms=staying, wanted_vms=inputs.vms, held_back=held_back),
    ]
    first = [a for a in infra if a.kind != Kind.DESTROY]
    last = [a for a in infra if a.kind == Kind.DESTROY]
    digest = vm_plan.fingerprint + _infra_digest(live)  # fingerprint(live.vms), computed once
    return Plan((*first, *vm_plan.actions, *last), digest, vm_plan.problems)


def _infra_digest(live: LiveState) -> str:
    return hashlib.sha256(_infra_text(live).encode()).hexdigest()[:8]


def _infra_text(live: LiveState) -> str:
    return repr(sorted(live.networks, key=lambda n: n.name)) + repr(
        sorted(live.pools, key=lambda p: p.name))


def make_plan(path: Path, hv: Libvirt, *, max_destroy: int, allow_empty: bool,
              instance: str = "default",
              storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS,
              memo: Cache | None = None) -> Planned:
    """``memo``: a cache of parsed manifests and domains (plan and apply; see
    ``reconciler.cache``), and of a plan with nothing to do, keyed by a digest of all its
    inputs; saved here."""
    inputs = load_desired(path, storage_roots, memo)
    live = read_state(hv, instance, inputs, memo)
    guards = diff.Guards(problems=len(inputs.problems), max_destroy=max_destroy,
                         allow_empty=allow_empty, hold_destroys=partial_reason(path))
    key = (cache.digest(inputs.digest, fingerprint(live.vms).encode(), _infra_text(live).encode(),
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


def owned_view(live: tuple[LiveVM, ...], instance: str) -> tuple[LiveVM, ...]:
    """Domains of another reconciler instance look unmanaged to this one (and are never adopted
    by it: ``owner`` names that instance). Pure."""
    return tuple(vm if vm.mark is None or vm.mark.instance == instance
                 else replace(vm, mark=None, owner=vm.mark.instance)
                 for vm in live)
