"""Turn a plan case (tests/plan/cases/*.yaml) into model objects, and run it.

A case is one YAML document:

    name: what the case shows
    desired:                # manifests, as written by users: name (+ annotations) + spec fields
      - {name: web, vcpus: 4, maxVcpus: 8, memory: 2GiB}
    live:                   # domains libvirt reports
      - name: web
        spec: {vcpus: 2}    # its persistent definition: the manifest of the same name with these
                            # fields changed (a domain without manifest gives its whole spec);
                            # `state: stopped` means the domain is shut off
        now: {vcpus: 3}     # running values that differ from the definition (running VMs)
        managed: true       # false: no reconciler mark (a domain the tool did not create)
        recorded: {}        # fields of the last applied record that differ from the definition;
                            # `manifest`: the record is the manifest's (it was applied as is)
        hold: {vcpus: 4, reason: ...}  # a live change the VM did not take up
        domain: {state: paused, reason: ioerror, persistent: true, managed_save: false}
                            # libvirt's state and reason (default running/booted or shut
                            # off/shutdown, from spec.state), whether it is persistent and
                            # has a managed-save image
    guards: {problems: 0, max_destroy: 5, allow_empty: false}
    expect:                 # every action, in plan order
      - name: web
        kind: update
        symbol: "~"
        restart: false      # default false
        reason: ...         # exact; or reason_has: a part of it
        changes:            # every change, in order: [field, old, new, mode(, note)]
          - [vcpus, "2", "4", live]
    writes: true            # optional: whether apply would change anything
    text: |                 # optional: the text plan, exactly
      ...
    bug: ...                # optional: the expectations are right but a known bug breaks
                            # them; the test of the actions is a strict xfail until it is fixed

A case with ``networks`` or ``pools`` is planned whole, as ``planner.compute`` does (pools and
networks first, then VMs, removals last), for the reconciler instance ``instance`` (default
``default``):

    networks:
      desired:              # Network manifests: name (+ annotations) + spec fields
        - {name: lab, forward: nat, ipv4: {address: 10.9.0.1, prefix: 24}}
      live:                 # networks libvirt reports
        - name: lab
          active: false     # default true
          spec: {forward: none}  # its definition: the manifest of that name with these fields
                            # changed (null removes one); a network without manifest: all
          mark: default     # the instance in its mark (default: the case's); null: no mark
          recorded: {bridge: null}  # the recorded spec hash is of the manifest with these
                            # changes (default: of its definition, as applied)
    pools:
      desired: [{name: fast, path: /var/lib/libvirt/images/fast}]
      live:
        - {name: fast, active: true, spec: {path: /srv/other}, owner: default}
                            # owner: the instance whose marker volume it holds (default: the
                            # case's; null: none, or unknown while inactive)
    expect:
      - name: lab
        label: network/lab  # optional: the name as plans show it
        ops: [set forward, start]  # optional: every step's op, in order

A case with ``storage`` is planned whole too, its storage resolved against what it gives
(``core.resolve``); a pool named there exists and is active (and owned by nobody) unless
``pools.live`` says otherwise:

    storage:
      volumes:              # pool -> its volumes (capacity, format, backing path, path)
        default:
          - {name: web-01-data, capacity: 1GiB, format: qcow2}
          - {name: base, capacity: 1GiB, path: /img/base}
          - {name: child-root, capacity: 2GiB, backing: /img/base}
      users: {default/web-01-data: [other-vm]}  # domains whose disks name the volume
      files: {/img/base: [vm-c]}                # domains whose disks name the file
      networks: [default]   # networks on the host (active); default: [default]
    real_paths: {/var/lib/libvirt/pools/link: /tmp/x}  # paths with symbolic links resolved
    free_memory: 1GiB       # the host's memory free for new guests (default: not known)

and under ``storage``, ``available: {default: 10GiB}``: a pool's free bytes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from reconciler.core import planner
from reconciler.core.diff import vm as diff
from reconciler.core.diff.guards import Guards
from reconciler.core.model.common import Mark
from reconciler.core.model.network import DesiredNetwork, LiveNetwork, NetworkSpec
from reconciler.core.model.pool import DesiredPool, LivePool, PoolSpec
from reconciler.core.model.storage import StorageView
from reconciler.core.model.vm import (
    DesiredVM,
    LiveHold,
    LiveVM,
    PowerState,
    VMSpec,
    VolumeInfo,
    applied_record,
)
from reconciler.core.plan import Plan
from reconciler.core.units import parse_quantity
from reconciler.core.validate.checks import spec_hash, validate
from reconciler.core.validate.document import Document
from reconciler.core.validate.result import Validated

CASES = Path(__file__).parent / "cases"


def load_cases() -> list[tuple[str, dict[str, Any]]]:
    """(id, case) of every document of every case file, in file order."""
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load_all(path.read_text()):
            out.append((f"{path.stem}: {case['name']}", case))
    return out


def _validated(kind: str, entry: dict[str, Any], storage_roots: tuple[str, ...] = ()
               ) -> Validated:
    """One manifest of ``kind`` through the real validator."""
    spec = {k: v for k, v in entry.items() if k not in ("name", "annotations")}
    metadata = {"name": entry["name"], "annotations": entry.get("annotations", {})}
    data = {"apiVersion": "reconciler/v1", "kind": kind, "metadata": metadata, "spec": spec}
    name = entry["name"]
    doc = Document(f"manifests/{name}.yaml", f"{name}.yaml", 0, data, positions={})
    validated = validate([doc], storage_roots=storage_roots) if storage_roots else validate([doc])
    assert not validated.problems, f"bad case data: {[str(p) for p in validated.problems]}"
    return validated


def desired_vm(entry: dict[str, Any]) -> DesiredVM:
    """A manifest through the real validator: defaults, spec hash and applied record included."""
    return _validated("VirtualMachine", entry).vms[0]


def desired_network(entry: dict[str, Any]) -> DesiredNetwork:
    return _validated("Network", entry).networks[0]


def desired_pool(entry: dict[str, Any], storage_roots: tuple[str, ...] = ()) -> DesiredPool:
    return _validated("StoragePool", entry, storage_roots).pools[0]


def _changed(manifest: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A manifest with some fields changed; a field changed to null is removed."""
    out = {**manifest, **changes}
    return {k: v for k, v in out.items() if v is not None}


def live_network(entry: dict[str, Any], desired: dict[str, dict[str, Any]],
                 instance: str) -> LiveNetwork:
    name = entry["name"]
    manifest = _changed(desired.get(name, {"name": name}), entry.get("spec", {}))
    config = desired_network(manifest).spec
    owner = entry.get("mark", instance)
    mark = None
    if owner is not None:
        recorded = _changed(manifest, entry["recorded"]) if "recorded" in entry else manifest
        mark = Mark(manifest=f"{name}.yaml", spec_hash=desired_network(recorded).spec_hash,
                    commit=None, applied={}, instance=owner)
    running = (desired_network(_changed(manifest, entry["running"])).spec
               if "running" in entry else None)  # its live definition, where it differs
    return LiveNetwork(name=name, active=entry.get("active", True), config=config, mark=mark,
                       running=running)


def live_pool(entry: dict[str, Any], desired: dict[str, dict[str, Any]],
              instance: str) -> LivePool:
    name = entry["name"]
    manifest = _changed(desired.get(name, {"name": name}), entry.get("spec", {}))
    config = desired_pool(manifest, storage_roots=("/",)).spec  # wherever it is
    return LivePool(name=name, active=entry.get("active", True), config=config,
                    owner=entry.get("owner", instance))


def live_vm(entry: dict[str, Any], desired: dict[str, dict[str, Any]]) -> LiveVM:
    name = entry["name"]
    manifest = {**desired.get(name, {"name": name}), **entry.get("spec", {})}
    config = desired_vm(manifest).spec
    running = config.state == PowerState.RUNNING
    config = dataclasses.replace(config, labels=())  # domain XML carries no labels
    mark = None
    recorded = entry.get("recorded", {})
    if entry.get("managed", True):
        if recorded == "manifest":
            applied = desired_vm(desired[name]).applied
        else:
            applied = {**applied_record(config), **_record(recorded)}
        mark = Mark(manifest=entry.get("manifest", f"{name}.yaml"), spec_hash=spec_hash(applied),
                    commit=None, applied=applied)
    now = _running_values(config, entry.get("now", {})) if running else {}
    hold = None
    if "hold" in entry:
        held = entry["hold"]
        hold = LiveHold(vcpus=held.get("vcpus"),
                        memory=parse_quantity(held["memory"]) if "memory" in held else None,
                        reason=held.get("reason", ""))
    domain = entry.get("domain", {})  # libvirt's state and reason, persistence, saved image
    state = domain.get("state", "running" if running else "shut off")
    return LiveVM(name=name, uuid=f"uuid-{name}", running=running, state=state,
                  domain_id=1 if running else None, config=config, mark=mark, hold=hold,
                  reason=domain.get("reason", "booted" if running else "shutdown"),
                  persistent=domain.get("persistent", True),
                  managed_save=domain.get("managed_save", False), **now)


def _record(fields: dict[str, Any]) -> dict[str, Any]:
    """Applied-record fields in manifest spelling (quantities) to the record's (bytes)."""
    return {k: parse_quantity(v) if k in ("memory", "maxMemory") else v
            for k, v in fields.items()}


def _running_values(config: VMSpec, now: dict[str, Any]) -> dict[str, int]:
    def size(key: str, default: int) -> int:
        return parse_quantity(now[key]) if key in now else default

    return {
        "live_vcpus": now.get("vcpus", config.vcpus),
        "live_max_vcpus": now.get("maxVcpus", config.max_vcpus),
        "live_memory": size("memory", config.memory),
        "live_max_memory": size("maxMemory", config.max_memory),
    }


def storage_view(case: dict[str, Any]) -> StorageView | None:
    given = case.get("storage")
    if given is None:
        return None
    details = {
        pool: tuple(VolumeInfo(pool, v["name"], parse_quantity(v.get("capacity", "1GiB")),
                               v.get("format", "qcow2"), v.get("backing"), v.get("path"))
                    for v in volumes)
        for pool, volumes in given.get("volumes", {}).items()}
    return StorageView(
        pool_volumes={pool: frozenset(v.name for v in vols) for pool, vols in details.items()},
        users={tuple(k.split("/", 1)): tuple(v) for k, v in given.get("users", {}).items()},
        file_users={k: tuple(v) for k, v in given.get("files", {}).items()},
        details=details,
        available={k: parse_quantity(v) for k, v in given.get("available", {}).items()})


def run_case(case: dict[str, Any]) -> Plan:
    if "networks" in case or "pools" in case or "storage" in case:
        return _run_whole(case)
    entries = case.get("desired", [])
    by_name = {e["name"]: e for e in entries}
    desired = [desired_vm(e) for e in entries]
    live = [live_vm(e, by_name) for e in case.get("live", [])]
    return diff.plan(desired, live, Guards(**case.get("guards", {})))


def _run_whole(case: dict[str, Any]) -> Plan:
    """VMs, networks and pools, planned together as the pipeline does."""
    instance = case.get("instance", "default")
    vm_entries = case.get("desired", [])
    vm_by_name = {e["name"]: e for e in vm_entries}
    networks, pools = case.get("networks", {}), case.get("pools", {})
    net_by_name = {e["name"]: e for e in networks.get("desired", [])}
    pool_by_name = {e["name"]: e for e in pools.get("desired", [])}
    given = dict(case.get("guards", {}))
    if "storage_roots" in given:
        given["storage_roots"] = tuple(given["storage_roots"])
    guards = Guards(**given)
    inputs = Validated(
        vms=tuple(desired_vm(e) for e in vm_entries),
        problems=(),
        networks=tuple(desired_network(e) for e in net_by_name.values()),
        pools=tuple(desired_pool(e, guards.storage_roots) for e in pool_by_name.values()),
    )
    live = planner.LiveState(
        vms=tuple(live_vm(e, vm_by_name) for e in case.get("live", [])),
        networks=tuple(live_network(e, net_by_name, instance)
                       for e in networks.get("live", [])),
        pools=tuple(live_pool(e, pool_by_name, instance) for e in pools.get("live", [])),
        storage=storage_view(case),
        real_paths=case.get("real_paths", {}),
        free_memory=parse_quantity(case["free_memory"]) if "free_memory" in case else None,
    )
    if live.storage is not None:  # the storage's pools and networks exist on the host
        named = {p.name for p in live.pools}
        extra = tuple(LivePool(name, True, PoolSpec(name, f"/pools/{name}"), None)
                      for name in live.storage.pool_volumes if name not in named)
        nets = tuple(LiveNetwork(n, True, NetworkSpec(n), None)
                     for n in case["storage"].get("networks", ["default"]))
        live = dataclasses.replace(live, pools=live.pools + extra,
                                   networks=live.networks + nets)
    return planner.compute(inputs, live, guards, instance)
