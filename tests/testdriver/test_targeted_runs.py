"""`plan`/`apply --target PATTERN` and `-l SELECTOR` on libvirt's test driver: a run limited to
some VMs (README "Targeting"), end to end through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import libvirt
import pytest
from conftest import (
    TEST_URI,
    CliResult,
    plan_testdrv,
    run_cli,
    vm_manifest,
    without_header,
    write_manifest,
)
from jsonschema import Draft202012Validator

from reconciler.core import schema

pytestmark = pytest.mark.usefixtures("untouched_test_domain")

plan = plan_testdrv



def apply(manifests: Path, state_dir: Path, *args: str | Path) -> CliResult:
    return run_cli("apply", "--yes", "--connect", TEST_URI, "--state-dir", state_dir, *args,
                   manifests)


def domains(conn: libvirt.virConnect, prefix: str) -> list[str]:
    return sorted(d.name() for d in conn.listAllDomains(0) if d.name().startswith(prefix))


def networks(conn: libvirt.virConnect, prefix: str) -> list[str]:
    return sorted(n.name() for n in conn.listAllNetworks(0) if n.name().startswith(prefix))


def vm(manifests: Path, name: str, tier: str | None = None, **kwargs: object) -> None:
    text = vm_manifest(name, **kwargs)  # type: ignore[arg-type]
    if tier is not None:
        text = text.replace("metadata:\n", f"metadata:\n  labels: {{tier: {tier}}}\n", 1)
    write_manifest(manifests, f"{name}.yaml", text)


def fleet(manifests: Path, prefix: str) -> None:
    """web-1 and web-2 (tier web), db-1 (tier db), stopped: the test driver's guests."""
    for name, tier in (("web-1", "web"), ("web-2", "web"), ("db-1", "db")):
        vm(manifests, f"{prefix}{name}", tier, state="stopped")


def test_apply_creates_only_the_targeted_vms(testdrv, prefix, manifests, state_dir) -> None:
    fleet(manifests, prefix)
    r = apply(manifests, state_dir, "--target", f"{prefix}web-*")
    assert r.code == 0, r.stdout + r.stderr
    assert without_header(r.stdout).splitlines()[:4] == [
        f"Targeted run: 2 of 3 VMs (--target {prefix}web-*); the others were not planned.",
        f"+ {prefix}web-1   1 vcpu, 64MiB, stopped",
        f"+ {prefix}web-2   1 vcpu, 64MiB, stopped",
        "Plan: 2 to create, 0 to update, 0 to destroy, 0 blocked.",
    ]
    assert domains(testdrv, prefix) == [f"{prefix}web-1", f"{prefix}web-2"]
    # The whole plan still has db-1 to create: the targeted run claimed nothing about it.
    whole = plan(manifests, "--detailed-exitcode")
    assert whole.code == 2 and f"+ {prefix}db-1" in whole.stdout
    # Its status is "pending", not "in sync": the targeted apply never looked at it.
    status = run_cli("status", "--state-dir", state_dir, "--format", "json")
    by_name = {v["name"]: v["status"] for v in json.loads(status.stdout)["vms"]}
    assert by_name == {f"{prefix}web-1": "in sync", f"{prefix}web-2": "in sync",
                       f"{prefix}db-1": "pending"}


def test_no_changes_on_a_targeted_run_speaks_for_the_targeted_vms_only(
        testdrv, prefix, manifests, state_dir) -> None:
    fleet(manifests, prefix)
    assert apply(manifests, state_dir, "--target", f"{prefix}web-1").code == 0
    r = plan(manifests, "--target", f"{prefix}web-1", "--detailed-exitcode")
    assert (r.code, without_header(r.stdout)) == (0, (
        f"Targeted run: 1 of 3 VMs (--target {prefix}web-1); the others were not planned.\n"
        "No changes for the targeted resources: they match their manifests.\n"))
    assert "The live state matches the manifests" not in r.stdout


def test_an_untargeted_orphan_is_not_destroyed(testdrv, prefix, manifests, state_dir) -> None:
    fleet(manifests, prefix)
    assert apply(manifests, state_dir).code == 0
    (manifests / f"{prefix}db-1.yaml").unlink()  # db-1 is now an orphan
    vm(manifests, f"{prefix}web-1", "web", state="stopped", vcpus=2)
    r = apply(manifests, state_dir, "--target", f"{prefix}web-*")
    assert r.code == 0, r.stdout + r.stderr
    assert f"{prefix}db-1" not in r.stdout
    assert "0 to destroy" in r.stdout and f"~ {prefix}web-1" in r.stdout
    assert domains(testdrv, prefix) == [f"{prefix}db-1", f"{prefix}web-1", f"{prefix}web-2"]
    assert testdrv.lookupByName(f"{prefix}web-1").info()[3] == 2
    # Targeting the orphan by name prunes it (as Terraform's -target of a removed resource).
    r = apply(manifests, state_dir, "--target", f"{prefix}db-1")
    assert r.code == 0, r.stdout + r.stderr
    assert f"- {prefix}db-1" in r.stdout and "1 to destroy" in r.stdout
    assert domains(testdrv, prefix) == [f"{prefix}web-1", f"{prefix}web-2"]


def test_a_selector_chooses_by_manifest_labels(testdrv, prefix, manifests, state_dir) -> None:
    fleet(manifests, prefix)
    r = apply(manifests, state_dir, "-l", "tier=db")
    assert r.code == 0, r.stdout + r.stderr
    assert without_header(r.stdout).splitlines()[0] == (
        "Targeted run: 1 of 3 VMs (-l tier=db); the others were not planned.")
    assert domains(testdrv, prefix) == [f"{prefix}db-1"]
    # Target and selector together: both must match (AND); several targets: any (OR).
    r = plan(manifests, "--format", "json", "--target", f"{prefix}web-1",
             "--target", f"{prefix}db-*", "-l", "tier!=db")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    assert [a["name"] for a in doc["actions"]] == [f"{prefix}web-1"]
    assert doc["target"] == {
        "targets": [f"{prefix}web-1", f"{prefix}db-*"], "selector": "tier!=db",
        "text": f"--target {prefix}web-1 --target {prefix}db-* -l tier!=db",
        "vms": [f"{prefix}web-1"], "networks": [], "pools": [], "totalVms": 3}
    Draft202012Validator(schema.load("plan")).validate(doc)


def test_an_untargeted_plan_has_a_null_target_in_json(testdrv, prefix, manifests) -> None:
    fleet(manifests, prefix)
    doc = json.loads(plan(manifests, "--format", "json").stdout)
    assert doc["target"] is None and len(doc["actions"]) == 3


def test_a_target_that_matches_nothing_is_an_error(testdrv, prefix, manifests,
                                                   own_instance) -> None:
    fleet(manifests, prefix)
    r = plan(manifests, "--target", f"{prefix}web-*", "--target", f"{prefix}nope-*")
    assert (r.code, r.stdout, r.stderr) == (1, "", (
        f"reconciler: --target {prefix}nope-* matches no VM of instance {own_instance} "
        "(declared in a valid manifest or managed on the host)\n"))
    r = plan(manifests, "--target", f"{prefix}web-*", "-l", "tier=db")
    assert (r.code, r.stdout, r.stderr) == (1, "", (
        f"reconciler: --target {prefix}web-* -l tier=db chooses nothing: no VM declared in a "
        "valid manifest matches all of it\n"))


def test_a_malformed_target_or_selector_is_a_usage_error(testdrv, prefix, manifests) -> None:
    r = plan(manifests, "--target", "disk/x")
    assert r.code == 2 and "unknown kind 'disk'" in r.stderr
    r = plan(manifests, "-l", "tier=web,,")
    assert r.code == 2 and "empty term" in r.stderr


def test_a_targeted_vm_brings_its_network(testdrv, prefix, manifests, state_dir) -> None:
    for net in ("net", "other"):
        write_manifest(manifests, f"{net}.yaml", "apiVersion: reconciler/v1\nkind: Network\n"
                                                 f"metadata:\n  name: {prefix}{net}\n")
    vm(manifests, f"{prefix}web-1", state="stopped", networks=f"- network: {prefix}net")
    vm(manifests, f"{prefix}db-1", state="stopped", networks=f"- network: {prefix}other")
    r = apply(manifests, state_dir, "--target", f"{prefix}web-1")
    assert r.code == 0, r.stdout + r.stderr
    assert without_header(r.stdout).splitlines()[0] == (
        f"Targeted run: 1 of 2 VMs and network/{prefix}net (--target {prefix}web-1); the "
        "others were not planned.")
    assert networks(testdrv, prefix) == [f"{prefix}net"]
    assert domains(testdrv, prefix) == [f"{prefix}web-1"]
    # network/NAME targets a network alone: no VM.
    r = apply(manifests, state_dir, "--target", f"network/{prefix}oth*")
    assert r.code == 0, r.stdout + r.stderr
    assert networks(testdrv, prefix) == [f"{prefix}net", f"{prefix}other"]
    assert domains(testdrv, prefix) == [f"{prefix}web-1"]


def test_a_saved_plan_carries_its_target(testdrv, prefix, manifests, state_dir,
                                         tmp_path) -> None:
    fleet(manifests, prefix)
    saved = tmp_path / "web.plan.json"
    r = plan(manifests, "--target", f"{prefix}web-2", "--out", saved)
    assert r.code == 0, r.stderr
    assert json.loads(saved.read_text())["target"]["targets"] == [f"{prefix}web-2"]
    r = apply(manifests, state_dir, "--plan", saved)
    assert r.code == 0, r.stdout + r.stderr
    assert r.stdout.startswith(f"Targeted run: 1 of 3 VMs (--target {prefix}web-2)")
    assert domains(testdrv, prefix) == [f"{prefix}web-2"]
    # A target on the command line besides a saved plan: refused, nothing changed.
    r = apply(manifests, state_dir, "--plan", saved, "--target", f"{prefix}db-1")
    assert r.code == 2 and "cannot be given with --plan" in r.stderr
    # A saved plan whose target was edited: it is not the plan that was reviewed.
    doc = json.loads(saved.read_text())
    doc["target"] = None
    saved.write_text(json.dumps(doc))
    r = apply(manifests, state_dir, "--plan", saved)
    assert r.code == 1 and "refused: the live state or the manifests changed" in r.stderr
    assert f"{prefix}db-1: not in the plan, now `+ 1 vcpu, 64MiB, stopped`" in r.stderr
    assert domains(testdrv, prefix) == [f"{prefix}web-2"]


def test_markdown_says_the_plan_is_partial(testdrv, prefix, manifests) -> None:
    fleet(manifests, prefix)
    r = plan(manifests, "--format", "markdown", "--target", f"{prefix}db-1")
    assert r.code == 0, r.stderr
    assert ("> [!NOTE]\n> **Targeted run: 1 of 3 VMs (--target "
            f"{prefix}db-1); the others were not planned.**\n") in r.stdout
