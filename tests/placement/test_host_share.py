"""One host's share of a fleet, on libvirt's test driver: it reconciles only the VMs placed on
it, and a VM the repository places elsewhere is never destroyed here."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import empty_host_uri, run_cli, vm_manifest, write_manifest
from test_fleet_manifests import host_manifest

URI = "test:///default"


def _config(tmp_path: Path, host: str) -> Path:
    path = tmp_path / f"{host}.yaml"
    path.write_text(f"host: {host}\n")
    return path


def _apply(m: Path, tmp_path: Path, host: str, *extra: str):  # type: ignore[no-untyped-def]
    return run_cli("apply", "--yes", "--connect", URI, "--config", _config(tmp_path, host),
                   "--state-dir", tmp_path / "state", *extra, m)


NODE = Path(__file__).parents[2] / "examples" / "test-node.xml"


def _readable(manifest: str) -> str:
    """A Host whose URI opens an empty test host of its own (nothing runs there)."""
    name = manifest.split("  name: ")[1].split("\n")[0]
    return manifest.split("  uri: ")[0] + f"  uri: {empty_host_uri(name)}\n"


def _fleet(tmp_path: Path, prefix: str, web_host: str) -> Path:
    m = tmp_path / "m"
    write_manifest(m, "hosts/a.yaml", _readable(host_manifest("hv-a", "rack=a")))
    write_manifest(m, "hosts/b.yaml", _readable(host_manifest("hv-b", "rack=b")))
    write_manifest(m, "web.yaml", vm_manifest(f"{prefix}web", state="stopped",
                                              extra=f"host: {web_host}"))
    write_manifest(m, "db.yaml", vm_manifest(f"{prefix}db", state="stopped",
                                             extra="hostSelector: {rack: b}"))
    return m


def test_a_host_creates_only_its_share(testdrv, prefix, tmp_path):
    m = _fleet(tmp_path, prefix, "hv-a")
    r = _apply(m, tmp_path, "hv-a")
    assert r.code == 0, r.stdout + r.stderr
    names = {d.name() for d in testdrv.listAllDomains(0)}
    assert f"{prefix}web" in names
    assert f"{prefix}db" not in names  # placed on hv-b
    assert f"{prefix}db" not in r.stdout


def test_a_vm_placed_on_another_host_is_leaving_never_destroyed(testdrv, prefix, tmp_path):
    m = _fleet(tmp_path, prefix, "hv-a")
    assert _apply(m, tmp_path, "hv-a").code == 0
    _fleet(tmp_path, prefix, "hv-b")  # web now belongs to hv-b, which cannot be read
    write_manifest(m, "hosts/b.yaml", host_manifest("hv-b", "rack=b").replace(
        "qemu+ssh://root@hv-b/system", f"test://{tmp_path}/gone.xml"))
    r = run_cli("plan", "--connect", URI, "--config", _config(tmp_path, "hv-a"), "--format",
                "json", m)
    doc = json.loads(r.stdout)
    [web] = [a for a in doc["actions"] if a["name"] == f"{prefix}web"]
    assert web["kind"] == "blocked"
    assert web["why"] == "move blocked"
    assert web["reason"].startswith("move to hv-b blocked: hv-b cannot be read: ")
    assert web["reason"].endswith("; it stays here, untouched")
    r = _apply(m, tmp_path, "hv-a")
    assert r.code == 1  # not converged: the VM is not where the repository wants it
    assert f"! {prefix}web" in r.stdout
    assert testdrv.lookupByName(f"{prefix}web")  # still here


def test_a_vm_placed_on_another_host_is_planned_as_a_move(testdrv, prefix, tmp_path):
    m = _fleet(tmp_path, prefix, "hv-a")
    assert _apply(m, tmp_path, "hv-a").code == 0
    _fleet(tmp_path, prefix, "hv-b")
    r = run_cli("plan", "--connect", URI, "--config", _config(tmp_path, "hv-a"), m)
    assert f"> {prefix}web   move hv-a -> hv-b (cold move)" in r.stdout
    assert "Plan: 0 to create, 0 to update, 0 to destroy, 1 to move, 0 blocked." in r.stdout
    doc = json.loads(run_cli("plan", "--connect", URI, "--config", _config(tmp_path, "hv-a"),
                             "--format", "json", m).stdout)
    [web] = [a for a in doc["actions"] if a["name"] == f"{prefix}web"]
    assert (web["kind"], web["symbol"]) == ("move", ">")
    assert [s["op"] for s in web["steps"]] == ["define there", "undefine here"]  # no disks
    # from a snapshot the destination is not read: the VM is shown leaving
    snap = tmp_path / "a.snapshot"
    assert run_cli("snapshot", "--connect", URI, "--out", snap).code == 0
    r = run_cli("plan", "--snapshot", snap, "--config", _config(tmp_path, "hv-a"), m)
    assert f"! {prefix}web" in r.stdout and "leaving: the repository places it on host hv-b" \
        in r.stdout


def test_a_host_outside_the_fleet_plans_nothing(testdrv, prefix, tmp_path):
    m = _fleet(tmp_path, prefix, "hv-a")
    assert _apply(m, tmp_path, "hv-a").code == 0
    r = _apply(m, tmp_path, "hv-z")
    assert r.code == 1
    assert "this host is 'hv-z', and the repository's Host manifests name hv-a, hv-b" in r.stderr
    assert testdrv.lookupByName(f"{prefix}web")


def test_removing_every_host_manifest_does_not_destroy_placed_vms(testdrv, prefix, tmp_path):
    m = _fleet(tmp_path, prefix, "hv-a")
    assert _apply(m, tmp_path, "hv-a").code == 0
    for f in (m / "hosts").iterdir():
        f.unlink()
    r = _apply(m, tmp_path, "hv-a")
    assert r.code == 1
    assert "the repository declares no Host manifest" in r.stderr
    assert "not destroyed: 2 manifest problem(s)" in r.stdout
    assert testdrv.lookupByName(f"{prefix}web")


def _peer_fleet(tmp_path: Path, prefix: str, a_uri: str, web_host: str) -> Path:
    m = tmp_path / "m"
    node = Path(__file__).parents[2] / "examples" / "test-node.xml"
    write_manifest(m, "hosts/a.yaml", host_manifest("hv-a").replace(
        "qemu+ssh://root@hv-a/system", a_uri))
    write_manifest(m, "hosts/b.yaml", host_manifest("hv-b").replace(
        "qemu+ssh://root@hv-b/system", f"test://{node}"))
    write_manifest(m, "web.yaml", vm_manifest(f"{prefix}web", state="stopped",
                                              extra=f"host: {web_host}"))
    return m


def test_a_vm_running_on_another_host_is_not_created_a_second_time(testdrv, prefix, tmp_path):
    m = _peer_fleet(tmp_path, prefix, URI, "hv-a")
    assert _apply(m, tmp_path, "hv-a").code == 0  # web runs on hv-a (test:///default)
    _peer_fleet(tmp_path, prefix, URI, "hv-b")
    node = Path(__file__).parents[2] / "examples" / "test-node.xml"
    r = run_cli("apply", "--yes", "--connect", f"test://{node}", "--config",
                _config(tmp_path, "hv-b"), "--state-dir", tmp_path / "state-b", m)
    assert r.code == 1
    assert f"! {prefix}web" in r.stdout
    assert "arriving: it runs on host hv-a, which moves it here" in r.stdout
    assert "Plan: 0 to create" in r.stdout
    # its status there: work pending (another host's), not a failure
    r = run_cli("status", "--state-dir", tmp_path / "state-b")
    assert r.code == 2, r.stdout
    assert f"{prefix}web" in r.stdout and "pending" in r.stdout


def test_no_vm_is_created_while_another_host_cannot_be_read(testdrv, prefix, tmp_path):
    m = _peer_fleet(tmp_path, prefix, f"test://{tmp_path}/no-such-host.xml", "hv-b")
    node = Path(__file__).parents[2] / "examples" / "test-node.xml"
    r = run_cli("plan", "--connect", f"test://{node}", "--config", _config(tmp_path, "hv-b"), m)
    assert r.code == 1, r.stdout + r.stderr  # a create that cannot be made: as a refusal
    assert f"! {prefix}web" in r.stdout
    assert "cannot tell whether it already runs on another host: hv-a (" in r.stdout


def test_a_vm_no_host_may_run_is_never_left_out(testdrv, prefix, tmp_path):
    """Capacity full: the VM is placed nowhere. Each host that could run it says so (a plan
    that left it out would read as "No changes"), and none creates it."""
    m = tmp_path / "m"
    write_manifest(m, "hosts/a.yaml", _readable(host_manifest("hv-a", "rack=a"))
                   + "  capacity:\n    vms: 1\n")
    write_manifest(m, "hosts/b.yaml", _readable(host_manifest("hv-b", "rack=b")))
    write_manifest(m, "one.yaml", vm_manifest(f"{prefix}one", state="stopped",
                                              extra="host: hv-a"))
    write_manifest(m, "two.yaml", vm_manifest(f"{prefix}two", state="stopped",
                                              extra="hostSelector: {rack: a}"))
    r = _apply(m, tmp_path, "hv-a")
    assert r.code == 1
    assert f"! {prefix}two" in r.stdout
    assert ("unplaced: no host may run it now (no room: hv-a holds its 1 VMs); it is created "
            "nowhere until one can") in r.stdout
    assert not any(d.name() == f"{prefix}two" for d in testdrv.listAllDomains(0))
    # hv-b is no candidate (rack=b): it says nothing of it
    r = run_cli("plan", "--connect", f"test://{NODE}", "--config", _config(tmp_path, "hv-b"), m)
    assert f"{prefix}two" not in r.stdout
