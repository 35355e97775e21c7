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
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml

from reconciler.core.diff import vm as diff
from reconciler.core.diff.guards import Guards
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import (
    DesiredVM,
    LiveHold,
    LiveVM,
    PowerState,
    VMSpec,
    applied_record,
)
from reconciler.core.plan import Plan
from reconciler.core.units import parse_quantity
from reconciler.core.validate.checks import spec_hash, validate
from reconciler.core.validate.document import Document

CASES = Path(__file__).parent / "cases"


def load_cases() -> list[tuple[str, dict[str, Any]]]:
    """(id, case) of every document of every case file, in file order."""
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load_all(path.read_text()):
            out.append((f"{path.stem}: {case['name']}", case))
    return out


def desired_vm(entry: dict[str, Any]) -> DesiredVM:
    """A manifest through the real validator: defaults, spec hash and applied record included."""
    spec = {k: v for k, v in entry.items() if k not in ("name", "annotations")}
    metadata = {"name": entry["name"], "annotations": entry.get("annotations", {})}
    data = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": metadata,
            "spec": spec}
    name = entry["name"]
    doc = Document(f"manifests/{name}.yaml", f"{name}.yaml", 0, data, positions={})
    validated = validate([doc])
    assert not validated.problems, f"bad case data: {[str(p) for p in validated.problems]}"
    return validated.vms[0]


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
    return LiveVM(name=name, uuid=f"uuid-{name}", running=running,
                  state="running" if running else "shut off", domain_id=1 if running else None,
                  config=config, mark=mark, hold=hold, **now)


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


def run_case(case: dict[str, Any]) -> Plan:
    entries = case.get("desired", [])
    by_name = {e["name"]: e for e in entries}
    desired = [desired_vm(e) for e in entries]
    live = [live_vm(e, by_name) for e in case.get("live", [])]
    return diff.plan(desired, live, Guards(**case.get("guards", {})))
