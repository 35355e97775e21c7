"""`reconciler plan --fleet`: every host planned at once from snapshot files (or URIs), in one
plan grouped by host, with moves and a fleet summary."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import empty_host_uri, run_cli, vm_manifest, write_manifest
from test_fleet_manifests import host_manifest

URI = "test:///default"
NODE = Path(__file__).parents[2] / "examples" / "test-node.xml"


def _repo(tmp_path: Path, prefix: str, web_host: str, hosts: tuple[str, ...] = ("hv-a", "hv-b"),
          ) -> Path:
    m = tmp_path / "m"
    for name in hosts:  # each URI opens an empty test host (nothing runs there)
        write_manifest(m, f"hosts/{name}.yaml", host_manifest(name, "rack=r").replace(
            f"qemu+ssh://root@{name}/system", empty_host_uri(name)))
    write_manifest(m, "web.yaml", vm_manifest(f"{prefix}web", state="stopped",
                                              extra=f"host: {web_host}"))
    write_manifest(m, "db.yaml", vm_manifest(f"{prefix}db", state="stopped",
                                             extra="host: hv-b"))
    return m


def _snapshots(tmp_path: Path, m: Path) -> Path:
    """hv-a: test:///default after applying its share; hv-b: an empty test host."""
    (tmp_path / "a.yaml").write_text("host: hv-a\n")
    r = run_cli("apply", "--yes", "--connect", URI, "--config", tmp_path / "a.yaml",
                "--state-dir", tmp_path / "state", m)
    assert r.code in (0, 1), r.stdout + r.stderr
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    assert run_cli("snapshot", "--connect", URI, "--out", snaps / "hv-a.snapshot").code == 0
    assert run_cli("snapshot", "--connect", f"test://{NODE}", "--out",
                   snaps / "hv-b.snapshot").code == 0
    return snaps


def test_a_fleet_plan_groups_each_hosts_changes(testdrv, prefix, tmp_path):
    m = _repo(tmp_path, prefix, "hv-a")
    snaps = _snapshots(tmp_path, m)
    r = run_cli("plan", "--fleet", "--snapshots", snaps, "--detailed-exitcode", m)
    assert r.code == 2, r.stdout + r.stderr
    out = r.stdout
    a = out.index(f"Host hv-a ({empty_host_uri('hv-a')}), from a snapshot taken ")
    b = out.index("Host hv-b (")
    assert a < b
    assert "No changes. The live state matches the manifests." in out[a:b]
    assert f"+ {prefix}db" in out[b:]
    assert "Fleet: 2 hosts: 1 to create, 0 to update, 0 to destroy, 0 to move, 0 blocked." in out
    assert out.splitlines()[-1].startswith("Made for instance ")
    assert "on the fleet (2 hosts)" in out.splitlines()[-1]


def test_changing_a_vms_host_is_one_move_not_a_destroy_and_a_create(testdrv, prefix, tmp_path):
    m = _repo(tmp_path, prefix, "hv-a")
    snaps = _snapshots(tmp_path, m)
    _repo(tmp_path, prefix, "hv-b")  # web: hv-a -> hv-b
    r = run_cli("plan", "--fleet", "--snapshots", snaps, m)
    out = r.stdout
    assert out.count(f"> {prefix}web   move hv-a -> hv-b (cold move)") == 2  # hv-a's, Moves
    assert f"+ {prefix}web" not in out and f"- {prefix}web" not in out
    assert "1 to create, 0 to update, 0 to destroy, 1 to move, 0 blocked." in out
    doc = json.loads(run_cli("plan", "--fleet", "--snapshots", snaps, "--format", "json",
                             m).stdout)
    assert doc["kind"] == "FleetPlan"
    assert doc["summary"] == {"hosts": 2, "notPlanned": 0, "create": 1, "update": 0,
                              "destroy": 0, "move": 1, "blocked": 0}
    assert doc["moves"] == [{"name": f"{prefix}web", "from": "hv-a", "to": "hv-b",
                             "live": False, "symbol": ">",
                             "text": "move hv-a -> hv-b (cold move)"}]
    by_host = {h["host"]: h for h in doc["hosts"]}
    [leaving] = [a for a in by_host["hv-a"]["plan"]["actions"] if a["name"] == f"{prefix}web"]
    assert (leaving["kind"], leaving["symbol"]) == ("move", ">")
    [arriving] = [a for a in by_host["hv-b"]["plan"]["actions"] if a["name"] == f"{prefix}web"]
    assert arriving["why"] == "arriving"


def test_a_host_without_snapshot_is_reported_and_the_others_planned(testdrv, prefix, tmp_path):
    m = _repo(tmp_path, prefix, "hv-a", hosts=("hv-a", "hv-b", "hv-c"))
    snaps = _snapshots(tmp_path, m)
    r = run_cli("plan", "--fleet", "--snapshots", snaps, m)
    assert r.code == 1
    assert f"Host hv-c ({empty_host_uri('hv-c')}): not planned: no snapshot" in r.stdout
    # hv-b is planned, and makes nothing while it cannot tell whether hv-c runs db
    assert f"! {prefix}db" in r.stdout
    assert "cannot tell whether it already runs on another host: hv-c (no snapshot" in r.stdout
    assert "Fleet: 3 hosts (1 not planned): 0 to create" in r.stdout
    md = run_cli("plan", "--fleet", "--snapshots", snaps, "--format", "markdown", m).stdout
    assert md.startswith("<!-- reconciler-plan instance=")
    assert "### reconciler fleet plan" in md
    assert f"#### Host hv-c ({empty_host_uri('hv-c')})" in md and "not planned" in md
    assert md.count("<!-- reconciler-plan") == 1


def test_an_unreachable_host_uri_does_not_stop_the_others(testdrv, prefix, tmp_path):
    m = tmp_path / "m"
    write_manifest(m, "hosts/a.yaml", host_manifest("hv-a").replace(
        "qemu+ssh://root@hv-a/system", empty_host_uri("hv-a")))
    write_manifest(m, "hosts/b.yaml", host_manifest("hv-b").replace(
        "qemu+ssh://root@hv-b/system", f"test://{tmp_path}/gone.xml"))
    write_manifest(m, "web.yaml", vm_manifest(f"{prefix}web", extra="host: hv-a"))
    r = run_cli("plan", "--fleet", m)
    assert r.code == 1
    # hv-a is planned, and, as its own reconciler would, makes nothing while hv-b is unread
    assert f"! {prefix}web" in r.stdout
    assert "cannot tell whether it already runs on another host: hv-b (" in r.stdout
    assert "Host hv-b (test://" in r.stdout and "not planned: cannot connect" in r.stdout


def test_fleet_needs_host_manifests(tmp_path):
    m = tmp_path / "m"
    write_manifest(m, "web.yaml", vm_manifest("web"))
    r = run_cli("plan", "--fleet", "--snapshots", tmp_path, m)
    assert r.code == 1
    assert "no Host manifest (kind: Host); --fleet plans the hosts" in r.stderr


def test_fleet_status_is_one_table_of_every_hosts_vms(testdrv, prefix, tmp_path):
    m = _repo(tmp_path, prefix, "hv-a")
    snaps = _snapshots(tmp_path, m)
    r = run_cli("status", "--fleet", "--snapshots", snaps, "--manifests", m)
    assert r.code == 2, r.stdout + r.stderr  # db is still to be created on hv-b
    rows = [line.split() for line in r.stdout.splitlines()[1:-1]]
    assert r.stdout.splitlines()[0].split() == ["HOST", "VM", "SYNC", "HEALTH", "COMMIT"]
    assert ["hv-a", f"{prefix}web", "in", "sync", "healthy", "-"] in rows
    assert ["hv-b", f"{prefix}db", "pending", "no", "domain", "-"] in rows
    _repo(tmp_path, prefix, "hv-b")  # web moves to hv-b
    doc = json.loads(run_cli("status", "--fleet", "--snapshots", snaps, "--manifests", m,
                             "--format", "json").stdout)
    web = [(v["host"], v["sync"]) for v in doc["vms"] if v["name"] == f"{prefix}web"]
    assert sorted(web) == [("hv-a", "leaving"), ("hv-b", "moving")]
    (snaps / "hv-b.snapshot").unlink()
    r = run_cli("status", "--fleet", "--snapshots", snaps, "--manifests", m)
    assert r.code == 1
    assert "hv-b  *" in r.stdout and "unknown" in r.stdout
