"""Export and adoption, pure: domain XML in, manifest and plan out. The cases are data files:
export-cases.yaml (domain -> exported manifest -> its plan) and adopt-cases.yaml (domain +
manifest -> plan)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from lxml import etree

from reconciler.adapters import manifests
from reconciler.core import export, planner, render, schema
from reconciler.core.diff import vm as diff
from reconciler.core.model.common import Mark
from reconciler.core.model.vm import LiveVM
from reconciler.core.units import parse_quantity
from reconciler.core.xml import common as xmlcommon
from reconciler.core.xml import domain as domainxml

HERE = Path(__file__).parent
EXPORT_CASES = list(yaml.safe_load_all((HERE / "export-cases.yaml").read_text()))
ADOPT = yaml.safe_load((HERE / "adopt-cases.yaml").read_text())


def _volumes(data: dict[str, Any]) -> dict[tuple[str, str], int]:
    return {tuple(key.split("/")): value if isinstance(value, int) else parse_quantity(value)
            for key, value in data.items()}  # type: ignore[misc]


def live_vm(xml: str, *, running: bool, autostart: bool, volumes: dict[tuple[str, str], int],
            instance: str, now: dict[str, Any] | None = None) -> LiveVM:
    """The domain as the adapter reads it (the same XML for the running domain), then as the
    given reconciler instance sees it."""
    root = xmlcommon.parse(xml)
    mark = xmlcommon.read_mark(root)
    applied = mark.applied if mark else {}
    config = domainxml.read_spec(root, running=running, autostart=autostart, volumes=volumes,
                                 applied=applied)
    live = {}
    if running:
        live = {"live_vcpus": config.vcpus, "live_max_vcpus": config.max_vcpus,
                "live_memory": config.memory, "live_max_memory": config.max_memory,
                "live_disks": config.disks, "live_nics": config.nics}
    vm = LiveVM(name=config.name, uuid="uuid", running=running,
                state="running" if running else "shut off", domain_id=1 if running else None,
                config=config, mark=mark, **{**live, **(now or {})})
    return planner.owned_view((vm,), instance)[0]


def plan_text(folder: Path, live: LiveVM) -> str:
    inputs = manifests.load_desired(folder)
    assert inputs.ok, [str(p) for p in inputs.problems]
    return render.plan_text(diff.plan(inputs.vms, [live]))


def domain_xml(case: dict[str, Any], folder: Path) -> str:
    """The case's domain XML; with `mark`, carrying the mark its manifest gets when applied."""
    if "mark" not in case:
        return case["domain"]
    mark = case["mark"]
    name = xmlcommon.parse(case["domain"]).findtext("name")
    document = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
                "metadata": {"name": name}, "spec": mark["spec"]}
    (folder / "applied.yaml").write_text(yaml.safe_dump(document))
    (want,) = manifests.load_desired(folder).vms
    (folder / "applied.yaml").unlink()
    root = xmlcommon.parse(case["domain"])
    metadata = etree.Element("metadata")
    metadata.append(xmlcommon.mark_element(Mark(mark["manifest"], want.spec_hash, None,
                                                want.applied, mark["instance"])))
    root.find("name").addnext(metadata)
    return etree.tostring(root, encoding="unicode")


def _exported(case: dict[str, Any], xml: str) -> export.Exported:
    return export.export_manifest(xml, running=case["running"], autostart=case["autostart"],
                                  volumes=_volumes(case["volumes"]), instance=case["instance"])


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[c["name"] for c in EXPORT_CASES])
def test_export_gives_exactly_this_manifest(case: dict[str, Any], tmp_path: Path) -> None:
    assert export.to_yaml(_exported(case, domain_xml(case, tmp_path))) == case["expect"]


@pytest.mark.parametrize("case", EXPORT_CASES, ids=[c["name"] for c in EXPORT_CASES])
def test_the_exported_manifest_is_valid_and_plans_as_expected(case: dict[str, Any],
                                                              tmp_path: Path) -> None:
    xml = domain_xml(case, tmp_path)
    exported = _exported(case, xml)
    live = live_vm(xml, running=case["running"], autostart=case["autostart"],
                   volumes=_volumes(case["volumes"]), instance=case["instance"])
    # A managed domain's manifest goes where its mark says it came from.
    relative = live.mark.manifest if live.mark else f"{exported.name}.yaml"
    (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / relative).write_text(export.to_yaml(exported))
    assert plan_text(tmp_path, live) == case["plan"]
    if live.mark:
        assert manifests.load_desired(tmp_path).vms[0].applied == live.mark.applied


def test_a_domain_name_a_manifest_cannot_use_is_refused() -> None:
    xml = "<domain type='kvm'><name>Web_01</name><memory>1048576</memory><vcpu>1</vcpu></domain>"
    with pytest.raises(Exception, match="cannot be exported: a manifest name"):
        export.export_manifest(xml, running=False, autostart=False, volumes={})


# --- adoption ------------------------------------------------------------------------------------


def _write(folder: Path, annotations: dict[str, str], spec: dict[str, Any]) -> None:
    metadata: dict[str, Any] = {"name": "hand"}
    if annotations:
        metadata["annotations"] = annotations
    document = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": metadata,
                "spec": spec}
    (folder / "hand.yaml").write_text(yaml.safe_dump(document, sort_keys=False))


def _adopt_live(case: dict[str, Any]) -> LiveVM:
    live = live_vm(ADOPT["domain"], running=True, autostart=False,
                   volumes=_volumes(ADOPT["volumes"]), instance="default", now=case.get("now"))
    if case.get("owner"):
        mark = Mark("hand.yaml", "0" * 16, None, {}, instance=case["owner"])
        live = planner.owned_view((dataclasses.replace(live, mark=mark),), "default")[0]
    return live


@pytest.mark.parametrize("case", ADOPT["cases"], ids=[c["name"] for c in ADOPT["cases"]])
def test_adoption_plan(case: dict[str, Any], tmp_path: Path) -> None:
    _write(tmp_path, case["annotations"], case["spec"])
    assert plan_text(tmp_path, _adopt_live(case)) == case["plan"]


def test_adoption_in_json_is_a_change_of_field_adopt(tmp_path: Path) -> None:
    case = ADOPT["cases"][0]
    _write(tmp_path, case["annotations"], case["spec"])
    inputs = manifests.load_desired(tmp_path)
    plan = diff.plan(inputs.vms, [_adopt_live(case)])
    document = json.loads(render.dumps(render.plan_json(plan)))
    Draft202012Validator(schema.load("plan")).validate(document)
    (action,) = document["actions"]
    assert (action["kind"], action["symbol"], action["text"]) == ("update", "~", "adopt")
    assert action["changes"] == [{"field": "adopt", "old": None, "new": "hand.yaml",
                                  "mode": "config", "note": "record the mark"}]
    assert document["hasChanges"] and document["summary"]["update"] == 1


def test_a_refused_adoption_makes_plan_exit_1_like_a_conflict(tmp_path: Path) -> None:
    case = next(c for c in ADOPT["cases"] if c["plan"].startswith("! hand   adopt refused"))
    _write(tmp_path, case["annotations"], case["spec"])
    plan = diff.plan(manifests.load_desired(tmp_path).vms, [_adopt_live(case)])
    (action,) = plan.actions
    assert action.conflict and not action.writes and not plan.has_changes


def test_the_adopt_annotation_is_true_or_false(tmp_path: Path) -> None:
    _write(tmp_path, {"reconciler/adopt": "yes"}, ADOPT["base"])
    inputs = manifests.load_desired(tmp_path)
    assert [p.field for p in inputs.problems] == ["metadata.annotations.reconciler/adopt"]
    assert 'is not "true" or "false"' in inputs.problems[0].message


def test_a_console_on_a_libvirt_network_is_noted() -> None:
    # Every listen counts (read_graphics): one on a network's address is not on loopback.
    xml = ("<domain type='kvm'><name>hand</name><memory unit='KiB'>65536</memory>"
           "<vcpu>1</vcpu><os><type>hvm</type></os><devices>"
           "<graphics type='vnc' autoport='yes'><listen type='network' network='lab'/>"
           "</graphics></devices></domain>")
    exported = export.export_manifest(xml, running=False, autostart=False, volumes={})
    assert ("graphics vnc listens on network lab, not 127.0.0.1; the domain cannot be adopted "
            "until it listens on 127.0.0.1 only.") in exported.notes
