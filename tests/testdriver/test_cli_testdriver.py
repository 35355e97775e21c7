"""The CLI end to end on libvirt's in-process test driver (test:///default).

test:///default lives in this process and is shared by all its connections while one is open:
the `testdrv` fixture holds one, and `run_cli` runs the CLI in-process. Its own domain `test` is
not the tool's and must come out of every test exactly as it went in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import libvirt
import pytest
from conftest import (
    TEST_URI,
    CliResult,
    plan_testdrv,
    run_cli,
    suspended,
    vm_manifest,
    without_header,
    write_manifest,
)
from jsonschema import Draft202012Validator
from jsonschema.validators import validator_for
from lxml import etree

from reconciler.adapters import lock
from reconciler.core import schema

MiB = 1 << 20


pytestmark = pytest.mark.usefixtures("untouched_test_domain")

plan = plan_testdrv



def apply(manifests: Path, state_dir: Path, *args: str | Path, yes: bool = True) -> CliResult:
    return run_cli("apply", *(["--yes"] if yes else []), "--connect", TEST_URI,
                   "--state-dir", state_dir, *args, manifests)


def xml(conn: libvirt.virConnect, name: str, *, inactive: bool = False) -> etree._Element:
    flags = libvirt.VIR_DOMAIN_XML_INACTIVE if inactive else 0
    return etree.fromstring(conn.lookupByName(name).XMLDesc(flags).encode())


def exists(conn: libvirt.virConnect, name: str) -> bool:
    return name in {d.name() for d in conn.listAllDomains(0)}


def volumes(conn: libvirt.virConnect, prefix: str) -> dict[str, int]:
    pool = conn.storagePoolLookupByName("default-pool")
    return {v.name(): v.info()[1] for v in pool.listAllVolumes(0) if v.name().startswith(prefix)}


def simple(manifests: Path, name: str, **kwargs: object) -> None:
    write_manifest(manifests, f"{name}.yaml", vm_manifest(name, **kwargs))  # type: ignore[arg-type]


# --- apply creates what the manifests say --------------------------------------------------------


def test_apply_creates_the_vms_as_declared(testdrv, prefix, manifests, state_dir) -> None:
    web, db = f"{prefix}web", f"{prefix}db"
    write_manifest(manifests, "web.yaml", vm_manifest(
        web, vcpus=2, max_vcpus=4, memory="128MiB", max_memory="256MiB",
        extra="autostart: true",
        disks="""
            - {name: root, size: 16MiB, pool: default-pool}
            - {name: data, size: 8MiB, pool: default-pool, format: raw, bus: sata}
        """,
        networks="""
            - {network: default, mac: "52:54:00:12:34:56"}
            - {network: default, model: e1000}
        """))
    write_manifest(manifests, "db.yaml", vm_manifest(db, state="stopped"))

    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    assert f"+ {web}   2 vcpus, 128MiB, disks root 16MiB, data 8MiB" in r.stdout
    assert "Plan: 2 to create, 0 to update, 0 to destroy, 0 blocked." in r.stdout
    assert f"{web}: created, started\n" in r.stdout

    dom = testdrv.lookupByName(web)
    assert dom.isActive() and dom.autostart()
    root = xml(testdrv, web)
    assert root.find("vcpu").text == "4" and root.find("vcpu").get("current") == "2"
    assert root.find("memory").text == str(256 * 1024)
    assert root.find("currentMemory").text == str(128 * 1024)
    disks = [(d.find("source").get("volume"), d.find("target").get("bus"),
              d.find("driver").get("type")) for d in root.iterfind("devices/disk")]
    assert disks == [(f"{web}-root", "virtio", "qcow2"), (f"{web}-data", "sata", "raw")]
    assert volumes(testdrv, prefix) == {f"{web}-root": 16 * MiB, f"{web}-data": 8 * MiB}
    nics = [(n.find("source").get("network"), n.find("model").get("type"))
            for n in root.iterfind("devices/interface")]
    assert nics == [("default", "virtio"), ("default", "e1000")]
    assert root.find("devices/interface/mac").get("address") == "52:54:00:12:34:56"
    assert root.find("metadata/{https://reconciler.dev/xmlns/domain/v1}vm") is not None

    dom = testdrv.lookupByName(db)
    assert not dom.isActive() and not dom.autostart()

    r = plan(manifests, "--detailed-exitcode")
    assert (r.code, without_header(r.stdout)) == (
        0, "No changes. The live state matches the manifests.\n")


def test_an_edit_is_planned_with_exit_2_then_applied(testdrv, prefix, manifests,
                                                     state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=1, max_vcpus=4, memory="64MiB", max_memory="128MiB")
    assert apply(manifests, state_dir).code == 0

    simple(manifests, name, vcpus=3, max_vcpus=4, memory="96MiB", max_memory="128MiB",
           extra="autostart: true")
    r = plan(manifests, "--detailed-exitcode")
    assert r.code == 2, r.stdout + r.stderr
    assert without_header(r.stdout).splitlines() == [
        f"~ {name}   vcpus 1 -> 3 (live), memory 64MiB -> 96MiB (live), autostart false -> true",
        "Plan: 0 to create, 1 to update, 0 to destroy, 0 blocked.",
    ]
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    dom = testdrv.lookupByName(name)
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 3
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 3
    assert dom.info()[2] == 96 * 1024  # live memory, KiB
    assert xml(testdrv, name, inactive=True).find("currentMemory").text == str(96 * 1024)
    assert dom.autostart()
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_a_vm_is_stopped_and_started(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, state="stopped")
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    assert "state running -> stopped" in r.stdout
    assert not testdrv.lookupByName(name).isActive()
    assert plan(manifests, "--detailed-exitcode").code == 0
    simple(manifests, name, state="running")
    assert apply(manifests, state_dir).code == 0
    assert testdrv.lookupByName(name).isActive()
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_removing_the_middle_disk_removes_exactly_that_disk(testdrv, prefix, manifests,
                                                           state_dir) -> None:
    name = f"{prefix}web"
    disks = ["- {name: root, size: 8MiB, pool: default-pool}",
             "- {name: data, size: 8MiB, pool: default-pool}",
             "- {name: logs, size: 8MiB, pool: default-pool}"]
    simple(manifests, name, state="stopped", disks="\n".join(disks))
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, state="stopped", disks="\n".join([disks[0], disks[2]]))
    r = plan(manifests)
    assert f"~ {name}   disk data (remove, volume retained)" in r.stdout
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    root = xml(testdrv, name, inactive=True)
    assert [s.get("volume") for s in root.iterfind("devices/disk/source")] == [
        f"{name}-root", f"{name}-logs"]
    assert f"{name}-data" in volumes(testdrv, prefix)  # retained
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_a_disk_never_shrinks(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, disks="- {name: root, size: 16MiB, pool: default-pool}")
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, disks="- {name: root, size: 8MiB, pool: default-pool}")
    r = plan(manifests)
    assert r.code == 1
    assert f"! {name}   disk root 16MiB -> 8MiB refused: shrinking a disk would lose data" in (
        r.stdout)
    assert apply(manifests, state_dir).code == 1
    assert volumes(testdrv, prefix) == {f"{name}-root": 16 * MiB}


# --- plan output -------------------------------------------------------------------------------


def test_plan_json_follows_the_schema(testdrv, prefix, manifests) -> None:
    simple(manifests, f"{prefix}web", disks="- {name: root, size: 8MiB, pool: default-pool}")
    r = plan(manifests, "--format", "json")
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    Draft202012Validator(schema.load("plan")).validate(doc)
    assert doc["summary"] == {"create": 1, "update": 0, "destroy": 0, "move": 0, "blocked": 0,
                              "pendingRestart": 0, "stillPendingRestart": 0}
    assert doc["hasChanges"] is True
    assert [(a["name"], a["symbol"], a["kind"]) for a in doc["actions"]] == [
        (f"{prefix}web", "+", "create")]


def test_plan_reports_manifest_problems_with_their_source(testdrv, prefix, manifests) -> None:
    write_manifest(manifests, "bad.yaml", vm_manifest(f"{prefix}bad", memory="2GB"))
    r = plan(manifests)
    assert r.code == 1
    assert "bad.yaml:7:3: spec.memory: '2GB' is not a quantity; write 2GiB or 2048MiB" in (
        r.stderr)


# --- saved plans -------------------------------------------------------------------------------


def test_a_saved_plan_is_applied(testdrv, prefix, manifests, state_dir, tmp_path) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    saved = tmp_path / "plan.json"
    r = plan(manifests, "--out", saved)
    assert r.code == 0, r.stderr
    Draft202012Validator(schema.load("plan")).validate(json.loads(saved.read_text()))
    assert not exists(testdrv, name)
    r = apply(manifests, state_dir, "--plan", saved)
    assert r.code == 0, r.stdout + r.stderr
    assert testdrv.lookupByName(name).isActive()


def test_a_saved_plan_is_refused_when_the_live_state_changed(testdrv, prefix, manifests,
                                                             state_dir, tmp_path) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=1, max_vcpus=2)
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, vcpus=2, max_vcpus=2)
    saved = tmp_path / "plan.json"
    assert plan(manifests, "--out", saved).code == 0
    testdrv.lookupByName(name).setAutostart(1)  # someone else changes the VM meanwhile

    r = apply(manifests, state_dir, "--plan", saved)
    assert r.code == 1
    assert "changed since this plan was made" in r.stderr
    assert testdrv.lookupByName(name).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_CONFIG) == 1


def test_a_saved_plan_is_refused_when_the_manifests_changed(testdrv, prefix, manifests,
                                                            state_dir, tmp_path) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=1, max_vcpus=4)
    saved = tmp_path / "plan.json"
    assert plan(manifests, "--out", saved).code == 0
    simple(manifests, name, vcpus=4, max_vcpus=4)
    r = apply(manifests, state_dir, "--plan", saved)
    assert r.code == 1
    assert not exists(testdrv, name)


# --- destroy guards ----------------------------------------------------------------------------


def test_max_destroy(testdrv, prefix, manifests, state_dir) -> None:
    names = [f"{prefix}a", f"{prefix}b", f"{prefix}c"]
    for name in names:
        simple(manifests, name, disks="- {name: root, size: 8MiB, pool: default-pool}")
    assert apply(manifests, state_dir).code == 0
    (manifests / f"{names[1]}.yaml").unlink()
    (manifests / f"{names[2]}.yaml").unlink()

    r = apply(manifests, state_dir, "--max-destroy", "1")
    assert r.code == 1
    reason = "not destroyed: 2 VMs would be destroyed, more than --max-destroy 1"
    assert f"! {names[1]}   {reason}" in r.stdout
    assert f"! {names[2]}   {reason}" in r.stdout
    assert all(exists(testdrv, n) for n in names)

    r = apply(manifests, state_dir, "--max-destroy", "2")
    assert r.code == 0, r.stdout + r.stderr
    assert f"- {names[1]}   destroy (volumes retained: {names[1]}-root)" in r.stdout
    assert [exists(testdrv, n) for n in names] == [True, False, False]
    assert set(volumes(testdrv, prefix)) == {f"{n}-root" for n in names}


def test_an_empty_manifest_set_destroys_nothing_unless_allowed(testdrv, prefix, manifests,
                                                               state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    assert apply(manifests, state_dir).code == 0
    (manifests / f"{name}.yaml").unlink()

    r = apply(manifests, state_dir)
    assert r.code == 1
    assert "the manifest set is empty; pass --allow-empty" in r.stdout
    assert exists(testdrv, name)

    r = apply(manifests, state_dir, "--allow-empty")
    assert r.code == 0, r.stdout + r.stderr
    assert not exists(testdrv, name)


def test_a_protected_vm_is_never_destroyed(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, extra="protect: true")
    assert apply(manifests, state_dir).code == 0
    (manifests / f"{name}.yaml").unlink()
    r = apply(manifests, state_dir, "--allow-empty")
    assert r.code == 1
    assert "protect is true" in r.stdout
    assert exists(testdrv, name)


def test_manifest_problems_block_destroys_but_not_creates(testdrv, prefix, manifests,
                                                         state_dir) -> None:
    old, new = f"{prefix}old", f"{prefix}new"
    simple(manifests, old)
    assert apply(manifests, state_dir).code == 0
    (manifests / f"{old}.yaml").unlink()
    simple(manifests, new)
    write_manifest(manifests, "broken.yaml", "apiVersion: reconciler/v1\nkind: [\n")
    r = apply(manifests, state_dir)
    assert r.code == 1
    assert "broken.yaml:" in r.stderr
    assert "manifest problem(s) in this run" in r.stdout
    assert exists(testdrv, old) and exists(testdrv, new)


# --- what the tool did not create --------------------------------------------------------------


def test_a_domain_the_tool_did_not_create_is_a_conflict_left_alone(testdrv, prefix, manifests,
                                                                   state_dir) -> None:
    name, other = f"{prefix}web", f"{prefix}other"
    testdrv.defineXML(f"""
        <domain type='test'>
          <name>{name}</name>
          <memory unit='KiB'>65536</memory>
          <vcpu>1</vcpu>
          <os><type arch='i686'>hvm</type></os>
        </domain>""")
    before = testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    simple(manifests, name, vcpus=2, max_vcpus=2)
    simple(manifests, other)

    r = plan(manifests, "--detailed-exitcode")
    width = len(other)
    assert f"! {name:<{width}}   conflict: a domain with this name exists but was not created " \
           "by reconciler" in r.stdout
    assert "Plan: 1 to create, 0 to update, 0 to destroy, 1 blocked." in r.stdout
    assert r.code == 1  # apply would fail on it: CI sees it before the merge

    r = apply(manifests, state_dir)
    assert r.code == 1
    assert testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE) == before
    assert not testdrv.lookupByName(name).isActive()
    assert exists(testdrv, other)  # the rest of the run goes ahead


# --- safety of apply itself --------------------------------------------------------------------


def test_apply_without_yes_and_without_a_terminal_refuses(testdrv, prefix, manifests,
                                                          state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    r = apply(manifests, state_dir, yes=False)
    assert r.code == 1
    assert "not a terminal; pass --yes" in r.stderr
    assert not exists(testdrv, name)


def test_a_second_writer_is_refused_naming_the_holder(testdrv, prefix, manifests,
                                                      state_dir, own_instance) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    with lock.exclusive(own_instance, command="run"):
        r = apply(manifests, state_dir)
    assert r.code == 1
    assert f"pid {os.getpid()} (run)" in r.stderr
    assert not exists(testdrv, name)
    assert apply(manifests, state_dir).code == 0  # released


# --- schema ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("typed", "name"), [
    ((), "manifest"), (("all",), "manifest"), (("manifest",), "manifest"),
    (("VirtualMachine",), "VirtualMachine"), (("virtualmachine",), "VirtualMachine"),
    (("network",), "Network"), (("Network",), "Network"), (("STORAGEPOOL",), "StoragePool"),
    (("storagepool",), "StoragePool"), (("plan",), "plan"), (("Plan",), "plan"),
])
def test_schema_prints_valid_json_schema(typed: tuple[str, ...], name: str) -> None:
    r = run_cli("schema", *typed)
    assert r.code == 0, r.stderr
    doc = json.loads(r.stdout)
    validator_for(doc).check_schema(doc)
    assert doc == schema.load(name)


def test_schema_without_a_kind_accepts_every_kind() -> None:
    doc = json.loads(run_cli("schema").stdout)
    assert doc["properties"]["kind"]["enum"] == ["VirtualMachine", "Network", "StoragePool", "Host"]


def test_schema_of_an_unknown_kind() -> None:
    r = run_cli("schema", "Nope")
    assert r.code == 1
    assert r.stderr == ("reconciler: unknown schema 'Nope'; known: VirtualMachine, Network, "
                        "StoragePool, Host, manifest (all kinds; also: all), plan\n")


# --- changes that need a restart, drift, devices -----------------------------------------------


def test_max_vcpus_with_update_policy_live_is_pending_restart(testdrv, prefix, manifests,
                                                              state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=1, max_vcpus=2)
    assert apply(manifests, state_dir).code == 0
    dom_id = testdrv.lookupByName(name).ID()
    simple(manifests, name, vcpus=1, max_vcpus=4)
    r = plan(manifests, "--detailed-exitcode")
    assert r.code == 2
    assert f"~ {name}   maxVcpus 2 -> 4 needs a restart (updatePolicy: live) -- pending " \
           "restart" in r.stdout
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{name}: updated, pending restart: maxVcpus 2 -> 4 needs a restart" in r.stdout
    dom = testdrv.lookupByName(name)
    assert dom.ID() == dom_id  # not restarted
    assert xml(testdrv, name, inactive=True).find("vcpu").text == "4"
    assert xml(testdrv, name).find("vcpu").text == "2"
    r = plan(manifests, "--detailed-exitcode")
    assert r.code == 0  # nothing left to write, only the restart nobody did
    assert without_header(r.stdout).splitlines() == [
        "No changes to apply.",
        "Still pending restart (nothing to apply; each takes its saved changes at its next "
        "start):",
        f"= {name}   maxVcpus 2 -> 4 pending restart"]


def test_max_vcpus_with_update_policy_restart_restarts(testdrv, prefix, manifests,
                                                       state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=1, max_vcpus=2, extra="updatePolicy: restart")
    assert apply(manifests, state_dir).code == 0
    dom_id = testdrv.lookupByName(name).ID()
    simple(manifests, name, vcpus=3, max_vcpus=4, extra="updatePolicy: restart")
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    assert "-- restarts the VM" in r.stdout
    dom = testdrv.lookupByName(name)
    assert dom.isActive() and dom.ID() != dom_id
    assert xml(testdrv, name).find("vcpu").text == "4"
    assert dom.vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 3
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_live_drift_is_repaired(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name, vcpus=2, max_vcpus=4)
    assert apply(manifests, state_dir).code == 0
    testdrv.lookupByName(name).setVcpusFlags(1, libvirt.VIR_DOMAIN_AFFECT_LIVE)
    r = plan(manifests, "--detailed-exitcode")
    assert r.code == 2
    assert f"~ {name}   vcpus 1 -> 2 (live)" in r.stdout
    assert apply(manifests, state_dir).code == 0
    assert testdrv.lookupByName(name).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_nics_are_matched_by_mac(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    first = '- {network: default, mac: "52:54:00:00:00:01"}'
    second = '- {network: default, mac: "52:54:00:00:00:02"}'
    simple(manifests, name, state="stopped", networks=f"{first}\n{second}")
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, state="stopped", networks=second)
    r = apply(manifests, state_dir)
    assert r.code == 0, r.stdout + r.stderr
    assert "nic 52:54:00:00:00:01 (remove)" in r.stdout
    macs = [m.get("address") for m in xml(testdrv, name, inactive=True).iterfind(
        "devices/interface/mac")]
    assert macs == ["52:54:00:00:00:02"]
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_a_disk_the_running_vm_did_not_take_is_not_called_in_sync(testdrv, prefix, manifests,
                                                                  state_dir) -> None:
    """test:///default cannot hot-plug: the new disk reaches the persistent config only."""
    name = f"{prefix}web"
    root_disk = "- {name: root, size: 8MiB, pool: default-pool}"
    simple(manifests, name, disks=root_disk)
    assert apply(manifests, state_dir).code == 0
    simple(manifests, name, disks=f"{root_disk}\n- {{name: data, size: 8MiB, pool: default-pool}}")
    r = apply(manifests, state_dir)
    assert r.code == 1
    assert f"{name}: update failed: hot-plugging a device into {name}" in r.stdout
    sources = xml(testdrv, name).iterfind("devices/disk/source")
    assert [s.get("volume") for s in sources] == [f"{name}-root"]  # the running VM lacks it
    r = plan(manifests)
    assert "No changes" not in r.stdout
    assert "disk data" in r.stdout


def test_apply_results_as_json(testdrv, prefix, manifests, state_dir) -> None:
    name = f"{prefix}web"
    simple(manifests, name)
    r = apply(manifests, state_dir, "--format", "json")
    assert r.code == 0, r.stderr
    docs = r.stdout
    results = json.loads(docs[docs.index('{\n  "results"'):])["results"]
    assert [(x["name"], x["kind"], x["outcome"]) for x in results] == [
        (name, "create", "converged")]
    # What was done, as words a program can compare, and the line text output shows.
    assert [(x["did"], x["forcedOffAfter"], x["text"]) for x in results] == [
        (["created", "started"], None, f"{name}: created, started")]


def test_a_suspended_vm_is_shown_and_left_as_it_is(testdrv, prefix, manifests, state_dir):
    name = f"{prefix}db"
    write_manifest(manifests, "db.yaml", vm_manifest(name, max_vcpus=2))
    assert apply(manifests, state_dir).code == 0
    # An operator at work: the VM stopped by hand, the manifest edited and suspended.
    testdrv.lookupByName(name).destroy()
    write_manifest(manifests, "db.yaml", suspended(vm_manifest(name, vcpus=2, max_vcpus=2)))
    result = plan(manifests, "--detailed-exitcode")
    assert result.code == 0, result.stdout + result.stderr  # no changes, no error
    assert result.stdout.splitlines()[0] == (
        f"! {name}   suspended (annotation reconciler/suspend): left as it is until the "
        "annotation is removed -- would change: vcpus 1 -> 2, state stopped -> running")
    result = apply(manifests, state_dir)
    assert result.code == 0, result.stdout + result.stderr
    dom = testdrv.lookupByName(name)
    assert not dom.isActive()
    assert xml(testdrv, name, inactive=True).find("vcpu").get("current") == "1"
    status = json.loads(run_cli("status", "--state-dir", state_dir, "--format", "json").stdout)
    assert [(v["name"], v["status"]) for v in status["vms"]] == [(name, "suspended")]

    # "false" resumes it: the next apply converges.
    write_manifest(manifests, "db.yaml", suspended(vm_manifest(name, vcpus=2, max_vcpus=2),
                                                    "false"))
    assert apply(manifests, state_dir).code == 0
    assert testdrv.lookupByName(name).isActive()
    assert xml(testdrv, name, inactive=True).find("vcpu").get("current") in ("2", None)
    assert plan(manifests, "--detailed-exitcode").code == 0


def test_a_suspended_vm_is_not_created(testdrv, prefix, manifests, state_dir):
    write_manifest(manifests, "db.yaml", suspended(vm_manifest(f"{prefix}db")))
    result = apply(manifests, state_dir)
    assert result.code == 0, result.stdout + result.stderr
    assert f"{prefix}db" not in [d.name() for d in testdrv.listAllDomains(0)]


def test_a_suspended_vm_in_sync_is_reportedsuspended(testdrv, prefix, manifests, state_dir):
    name = f"{prefix}db"
    write_manifest(manifests, "db.yaml", vm_manifest(name))
    assert apply(manifests, state_dir).code == 0
    write_manifest(manifests, "db.yaml", suspended(vm_manifest(name)))
    assert plan(manifests).stdout.startswith("No changes.")
    assert apply(manifests, state_dir).code == 0
    status = run_cli("status", "--state-dir", state_dir)
    assert f"{name}  suspended  suspended (annotation reconciler/suspend)" in status.stdout


# --- a simple field: description -----------------------------------------------------------------


def test_a_description_is_kept_in_the_domain_and_follows_the_manifest(testdrv, prefix, manifests,
                                                                      state_dir) -> None:
    name = f"{prefix}desc"
    write_manifest(manifests, "d.yaml", vm_manifest(name, extra='description: "team blue"'))
    assert apply(manifests, state_dir).code == 0
    assert xml(testdrv, name, inactive=True).findtext("description") == "team blue"
    assert "No changes" in plan(manifests).stdout
    write_manifest(manifests, "d.yaml", vm_manifest(name, extra='description: "team\\nred"'))
    r = plan(manifests, "--detailed-exitcode")
    assert r.code == 2 and f'~ {name}   description "team blue" -> "team\\nred"' in r.stdout
    assert apply(manifests, state_dir).code == 0
    assert xml(testdrv, name, inactive=True).findtext("description") == "team\nred"
    write_manifest(manifests, "d.yaml", vm_manifest(name))
    assert apply(manifests, state_dir).code == 0
    assert xml(testdrv, name, inactive=True).find("description") is None
    assert "No changes" in plan(manifests).stdout


def test_plan_without_a_manifest_directory_prints_the_error_only(tmp_path) -> None:
    """Issue 13.6: not "No changes. The live state matches the manifests." and an error."""
    missing = tmp_path / "nowhere"
    r = run_cli("plan", "--connect", "test:///default", str(missing))
    assert r.code == 1
    assert r.stdout == ""
    assert r.stderr == f"{missing}: no such file or directory\n"


@pytest.mark.parametrize(("command", "option"), [
    ("validate", "--connect"), ("validate", "--instance"), ("validate", "-v"),
    ("validate", "--log-format"), ("status", "-v"), ("status", "--log-format"),
    ("plan", "-v"), ("export", "--log-format"), ("suspend", "--format"),
    ("snapshot", "--instance")])
def test_an_option_that_would_do_nothing_is_refused(command: str, option: str) -> None:
    """Issue 13.6: options only on the commands where they mean something."""
    r = run_cli(command, option, "x")
    assert r.code == 2
    assert f"No such option '{option}'" in r.stderr
