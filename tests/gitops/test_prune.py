"""The prune policy (config `prune`, flag `--prune`), as Argo CD users know it: `auto` destroys a
VM whose manifest is gone (within the guards), `confirm` waits for `reconciler approve NAME`,
`off` reports it orphaned and never destroys it. On the test driver, then the real libvirtd."""

from __future__ import annotations

import json

from conftest import apply, run_cli, vm_manifest, write_manifest

URI = "test:///default"


def _apply(m, state, *extra):  # type: ignore[no-untyped-def]
    return run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, *extra, m)


def _status(state):  # type: ignore[no-untyped-def]
    r = run_cli("status", "--state-dir", state, "--format", "json")
    return r.code, {v["name"]: v["status"] for v in json.loads(r.stdout)["vms"]}


def test_prune_confirm_waits_for_approval_of_that_very_domain(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    gone, keep = f"{prefix}gone", f"{prefix}keep"
    write_manifest(m, "gone.yaml", vm_manifest(gone, state="stopped"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert _apply(m, state).code == 0
    (m / "gone.yaml").unlink()
    r = run_cli("plan", "--connect", URI, "--prune", "confirm", m)
    assert r.code == 0 and f"! {gone}" in r.stdout and "pending destroy" in r.stdout, r.stdout
    assert f"reconciler approve {gone}" in r.stdout
    r = _apply(m, state, "--prune", "confirm")
    assert r.code == 0, r.stdout  # held on purpose: no failure
    assert testdrv.lookupByName(gone)
    assert _status(state) == (2, {gone: "pending destroy", keep: "in sync"})
    # Nothing to approve under another name; then the approval, used once.
    r = run_cli("approve", "--connect", URI, "--state-dir", state, keep, m)
    assert r.code == 1 and "Nothing to approve" in r.stderr
    r = run_cli("approve", "--connect", URI, "--state-dir", state, gone, m)
    assert r.code == 0 and f"destroys {gone}" in r.stdout, r.stdout + r.stderr
    r = _apply(m, state, "--prune", "confirm")
    assert r.code == 0 and f"- {gone}" in r.stdout, r.stdout
    assert gone not in {d.name() for d in testdrv.listAllDomains(0)}
    approvals = list((state / "approvals").glob("*.json"))
    assert approvals and json.loads(approvals[0].read_text()) == []  # used up


def test_an_approval_does_not_carry_over_to_a_new_domain_of_the_name(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    gone, keep = f"{prefix}gone", f"{prefix}keep"
    write_manifest(m, "gone.yaml", vm_manifest(gone, state="stopped"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert _apply(m, state).code == 0
    (m / "gone.yaml").unlink()
    assert run_cli("approve", "--connect", URI, "--state-dir", state, gone, m).code == 0
    # Someone brings it back and removes it again: a new domain, the old approval is void.
    write_manifest(m, "gone.yaml", vm_manifest(gone, state="stopped"))
    assert _apply(m, state, "--prune", "auto", "--max-destroy", "0").code == 0
    testdrv.lookupByName(gone).undefine()
    assert _apply(m, state).code == 0  # defined again, with a new UUID
    (m / "gone.yaml").unlink()
    r = run_cli("plan", "--connect", URI, "--prune", "confirm", "--config",
                _config(tmp_path, state), m)
    assert "pending destroy" in r.stdout, r.stdout


def _config(tmp_path, state):  # type: ignore[no-untyped-def]
    config = tmp_path / "config.yaml"
    config.write_text(f"stateDir: {state}\n")
    return config


def test_prune_off_reports_orphans_and_never_destroys(testdrv, prefix, tmp_path):
    m, state = tmp_path / "m", tmp_path / "s"
    gone, keep = f"{prefix}gone", f"{prefix}keep"
    write_manifest(m, "gone.yaml", vm_manifest(gone, state="stopped"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert _apply(m, state).code == 0
    (m / "gone.yaml").unlink()
    config = tmp_path / "config.yaml"
    config.write_text("prune: off\n")
    r = run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, "--config", config, m)
    assert r.code == 0 and f"! {gone}" in r.stdout and "orphaned" in r.stdout, r.stdout
    assert testdrv.lookupByName(gone)
    assert _status(state) == (0, {gone: "orphaned", keep: "in sync"})
    # approve has nothing to approve while prune is off... and the flag wins over the config.
    r = run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, "--config", config,
                "--prune", "auto", m)
    assert f"- {gone}" in r.stdout


def test_a_bad_prune_value_in_the_config_is_refused_in_one_line(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("prune: sometimes\n")
    (tmp_path / "m").mkdir()
    r = run_cli("validate", "--config", config, tmp_path / "m")
    assert r.code == 1 and "prune must be one of auto, confirm, off" in r.stderr


def test_prune_confirm_on_the_real_libvirtd_keeps_the_volume_until_approved(host, tmp_path):
    m, state = tmp_path / "m", tmp_path / "state"
    gone, keep = f"{host.prefix}gone", f"{host.prefix}keep"
    write_manifest(m, "gone.yaml", vm_manifest(
        gone, disks="- {name: root, size: 16MiB, reclaim: delete}"))
    write_manifest(m, "keep.yaml", vm_manifest(keep, state="stopped"))
    assert apply(host, m).code == 0
    (m / "gone.yaml").unlink()
    r = apply(host, m, "--prune", "confirm")
    assert r.code == 0 and "pending destroy" in r.stdout
    assert host.domain(gone).isActive() and host.volume(f"{gone}-root") is not None
    r = run_cli("approve", "--connect", host.uri, "--state-dir", state, gone, m)
    assert r.code == 0, r.stderr
    r = apply(host, m, "--prune", "confirm")
    assert r.code == 0 and not host.exists(gone) and host.volume(f"{gone}-root") is None

