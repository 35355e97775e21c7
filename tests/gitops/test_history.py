"""`reconciler status NAME`: one VM in full, with the last applied revisions (commit, spec
digest, time, result) that `apply` and `run` record in the state directory."""

from __future__ import annotations

import json
import subprocess

from conftest import run_cli, vm_manifest, write_manifest

URI = "test:///default"


def _apply(m, state, *extra):  # type: ignore[no-untyped-def]
    return run_cli("apply", "--yes", "--connect", URI, "--state-dir", state, *extra, m)


def test_status_name_shows_one_vm_with_its_last_applied_revisions(testdrv, prefix, tmp_path):
    m, state = tmp_path / "repo" / "m", tmp_path / "s"
    name, other = f"{prefix}web", f"{prefix}other"
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped"))
    write_manifest(m, "other.yaml", vm_manifest(other, state="stopped"))
    git = ["git", "-C", str(m.parent), "-c", "user.name=t", "-c", "user.email=t@example.net"]
    subprocess.run([*git, "init", "-q"], check=True)
    commits = []
    for vcpus in (1, 2, 3):
        write_manifest(m, "web.yaml", vm_manifest(name, vcpus=vcpus, max_vcpus=4,
                                                  state="stopped"))
        subprocess.run([*git, "add", "-A"], check=True)
        subprocess.run([*git, "commit", "-q", "-m", f"vcpus {vcpus}"], check=True)
        commits.append(subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True,
                                      text=True, check=True).stdout.strip())
        assert _apply(m, state).code == 0
    r = run_cli("status", "--state-dir", state, name)
    assert r.code == 0, r.stdout + r.stderr
    assert "Status:      in sync" in r.stdout and f"manifests at {commits[-1][:12]}" in r.stdout
    lines = [line for line in r.stdout.splitlines() if line.startswith("  ")]
    assert [c[:12] for c in commits] == [line.split()[1] for line in lines], r.stdout
    assert lines[0].endswith(" created") and lines[-1].endswith(" updated"), lines
    doc = json.loads(run_cli("status", "--state-dir", state, "--format", "json", name).stdout)
    assert [rev["commit"] for rev in doc["revisions"]] == commits
    assert run_cli("status", "--state-dir", state, f"{prefix}nobody").code == 1


def test_the_commit_and_a_dirty_tree_go_into_the_changed_domains_metadata(testdrv, prefix,
                                                                          tmp_path):
    m, state = tmp_path / "repo" / "m", tmp_path / "s"
    name = f"{prefix}web"
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped"))
    git = ["git", "-C", str(m.parent), "-c", "user.name=t", "-c", "user.email=t@example.net"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert _apply(m, state).code == 0
    xml = testdrv.lookupByName(name).XMLDesc(0)
    assert f">{commit}</reconciler:commit>" in xml and "dirty=" not in xml, xml
    write_manifest(m, "web.yaml", vm_manifest(name, vcpus=2, max_vcpus=2, state="stopped"))
    r = _apply(m, state)  # not committed: applied from a dirty tree
    assert r.code == 0
    xml = testdrv.lookupByName(name).XMLDesc(0)
    assert f"<reconciler:commit dirty=\"true\">{commit}</reconciler:commit>" in xml, xml
    revisions = json.loads(run_cli("status", "--state-dir", state, "--format", "json",
                                   name).stdout)["revisions"]
    assert [r["dirty"] for r in revisions] == [False, True]
