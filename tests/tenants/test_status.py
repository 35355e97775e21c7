"""`reconciler status`: one instance's objects, from the state its writer left, and an exit
status a script can act on (README "Status"): 0 all in sync, 1 anything failed, blocked or in
conflict (or no state), 2 work pending."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import TEST_URI, CliResult, run_cli, suspended, vm_manifest, write_manifest


def apply(manifests: Path, state_dir: Path, *args: str | Path) -> CliResult:
    return run_cli("apply", "--yes", "--connect", TEST_URI, "--state-dir", state_dir, *args,
                   manifests)


def status(state_dir: Path, *args: str | Path) -> CliResult:
    return run_cli("status", "--state-dir", state_dir, *args)


def status_json(state_dir: Path, *args: str | Path) -> tuple[int, dict]:
    r = status(state_dir, "--format", "json", *args)
    return r.code, json.loads(r.stdout)


def rows(r: CliResult) -> dict[str, str]:
    """NAME -> STATUS from the table."""
    out = {}
    for line in r.stdout.splitlines()[1:-1]:
        name, rest = line.split(None, 1)
        out[name] = rest.split("  ")[0].strip()
    return out


def network_manifest(name: str) -> str:
    return f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n  name: {name}\n"


def test_status_is_per_instance(testdrv, prefix, tmp_path) -> None:
    state = tmp_path / "state"  # shared by two tenants
    one, two = f"{prefix}one", f"{prefix}two"
    write_manifest(tmp_path / "a", "a.yaml", vm_manifest(f"{prefix}a"))
    write_manifest(tmp_path / "b", "b.yaml", vm_manifest(f"{prefix}b"))
    assert apply(tmp_path / "a", state, "--instance", one).code == 0
    assert apply(tmp_path / "b", state, "--instance", two).code == 0

    r = status(state, "--instance", one)
    assert r.code == 0, r.stdout + r.stderr
    assert rows(r) == {f"{prefix}a": "in sync"}
    assert one in r.stdout.splitlines()[-1]
    code, doc = status_json(state, "--instance", two)
    assert code == 0
    assert doc["instance"] == two
    assert [(v["name"], v["status"]) for v in doc["vms"]] == [(f"{prefix}b", "in sync")]
    # The instance from the environment, as apply and run take it.
    r = run_cli("status", "--state-dir", state, env={"RECONCILER_INSTANCE": one})
    assert rows(r) == {f"{prefix}a": "in sync"}


def test_status_without_state_for_the_instance_exits_1(tmp_path, own_instance) -> None:
    r = status(tmp_path / "state")
    assert r.code == 1
    assert f"No state for instance {own_instance!r}" in r.stdout
    code, doc = status_json(tmp_path / "state")
    assert code == 1 and doc["vms"] == [] and doc["instance"] == own_instance


def test_status_honours_the_configs_state_dir(testdrv, prefix, manifests, tmp_path) -> None:
    write_manifest(manifests, "a.yaml", vm_manifest(f"{prefix}a"))
    config = tmp_path / "config.yaml"
    config.write_text(f"stateDir: {tmp_path / 'from-config'}\n")
    r = run_cli("apply", "--yes", "--connect", TEST_URI, "--config", config, manifests)
    assert r.code == 0, r.stdout + r.stderr
    r = run_cli("status", "--config", config)
    assert r.code == 0 and rows(r) == {f"{prefix}a": "in sync"}


def test_a_conflict_exits_1(testdrv, prefix, manifests, tmp_path) -> None:
    name = f"{prefix}hand"
    testdrv.defineXML(f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                      "<os><type>hvm</type></os></domain>")
    write_manifest(manifests, "hand.yaml", vm_manifest(name))
    write_manifest(manifests, "ok.yaml", vm_manifest(f"{prefix}ok"))
    assert apply(manifests, tmp_path / "state").code == 1
    r = status(tmp_path / "state")
    assert r.code == 1, r.stdout
    assert rows(r) == {name: "conflict", f"{prefix}ok": "in sync"}
    assert status_json(tmp_path / "state")[0] == 1


def test_a_failed_vm_exits_1(testdrv, prefix, manifests, tmp_path) -> None:
    # The test driver cannot upload volumes: a VM with cloud-init plans, then fails to create.
    write_manifest(manifests, "ci.yaml", vm_manifest(f"{prefix}ci", extra="""
        cloudInit:
          userData: |
            #cloud-config
        """))
    assert apply(manifests, tmp_path / "state").code == 1
    r = status(tmp_path / "state")
    assert r.code == 1, r.stdout
    assert rows(r) == {f"{prefix}ci": "failed"}


def test_manifest_problems_exit_1(testdrv, prefix, manifests, tmp_path) -> None:
    write_manifest(manifests, "ok.yaml", vm_manifest(f"{prefix}ok"))
    write_manifest(manifests, "bad.yaml", vm_manifest(f"{prefix}bad").replace("64MiB", "64MB"))
    assert apply(manifests, tmp_path / "state").code == 1
    r = status(tmp_path / "state")
    assert r.code == 1, r.stdout
    assert "1 manifest problem(s)" in r.stdout


def test_pending_restart_exits_2_and_in_sync_0(testdrv, prefix, manifests, tmp_path) -> None:
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=1, max_vcpus=2))
    assert apply(manifests, tmp_path / "state").code == 0
    assert status(tmp_path / "state").code == 0
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=1, max_vcpus=4))
    assert apply(manifests, tmp_path / "state").code == 0  # done; the restart is someone's
    r = status(tmp_path / "state")
    assert r.code == 2, r.stdout
    assert rows(r) == {name: "pending restart"}
    assert status_json(tmp_path / "state")[0] == 2


def test_a_suspended_vm_is_no_failure(testdrv, prefix, manifests, tmp_path) -> None:
    write_manifest(manifests, "web.yaml", suspended(vm_manifest(f"{prefix}web")))
    write_manifest(manifests, "ok.yaml", vm_manifest(f"{prefix}ok"))
    assert apply(manifests, tmp_path / "state").code == 0
    r = status(tmp_path / "state")
    assert r.code == 0, r.stdout
    assert rows(r) == {f"{prefix}web": "suspended", f"{prefix}ok": "in sync"}


def test_a_network_in_conflict_exits_1(testdrv, prefix, manifests, tmp_path) -> None:
    net = f"{prefix}net"
    testdrv.networkDefineXML(f"<network><name>{net}</name></network>")  # made by hand
    write_manifest(manifests, "net.yaml", network_manifest(net))
    write_manifest(manifests, "ok.yaml", vm_manifest(f"{prefix}ok"))
    assert apply(manifests, tmp_path / "state").code == 1
    r = status(tmp_path / "state")
    assert r.code == 1, r.stdout
    assert rows(r) == {f"network/{net}": "conflict", f"{prefix}ok": "in sync"}


def test_destroys_held_back_by_a_guard_exit_1(testdrv, prefix, manifests, tmp_path) -> None:
    for name in ("a", "b", "c"):
        write_manifest(manifests, f"{name}.yaml", vm_manifest(f"{prefix}{name}"))
    assert apply(manifests, tmp_path / "state").code == 0
    (manifests / "a.yaml").unlink()
    (manifests / "b.yaml").unlink()
    apply(manifests, tmp_path / "state", "--max-destroy", "1")
    r = status(tmp_path / "state")
    assert r.code == 1, r.stdout
    assert rows(r) == {f"{prefix}a": "blocked", f"{prefix}b": "blocked", f"{prefix}c": "in sync"}


def test_every_managed_object_is_listed(testdrv, prefix, manifests, tmp_path) -> None:
    net = f"{prefix}net"
    write_manifest(manifests, "net.yaml", network_manifest(net))
    write_manifest(manifests, "web.yaml", vm_manifest(f"{prefix}web", networks=f"""
        - network: {net}
        """))
    assert apply(manifests, tmp_path / "state").code == 0
    assert apply(manifests, tmp_path / "state").code == 0  # nothing to do: all in sync
    r = status(tmp_path / "state")
    assert r.code == 0, r.stdout
    assert rows(r) == {f"network/{net}": "in sync", f"{prefix}web": "in sync"}


@pytest.mark.parametrize("kind", ["not json", "fifo", "link"])
def test_a_state_file_that_is_not_one_is_an_error(tmp_path, own_instance, kind) -> None:
    import os

    state = tmp_path / "state"
    folder = state / "status"
    folder.mkdir(parents=True)
    target = folder / f"{own_instance}.json"
    if kind == "not json":
        target.write_text("{not json")
    elif kind == "fifo":
        os.mkfifo(target)  # must not hang
    else:
        (tmp_path / "elsewhere.json").write_text('{"vms": []}')
        target.symlink_to(tmp_path / "elsewhere.json")
    r = status(state)
    assert r.code == 1
    assert str(target) in r.stderr


def test_the_state_files_of_instances_are_apart(testdrv, prefix, manifests, tmp_path) -> None:
    write_manifest(manifests, "a.yaml", vm_manifest(f"{prefix}a"))
    assert apply(manifests, tmp_path / "state", "--instance", f"{prefix}one").code == 0
    assert (tmp_path / "state" / "status" / f"{prefix}one.json").is_file()
    assert not (tmp_path / "state" / "status.json").exists()
