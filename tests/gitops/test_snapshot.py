"""Plans in CI without a hypervisor: `reconciler snapshot` on the host, `reconciler plan
--snapshot FILE` anywhere. The plan from the snapshot is the plan the host gives, on the real
libvirtd (creates, updates, destroys, refusals), and needs no libvirt-python."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import apply, plan, run_cli, vm_manifest, write_manifest

ROOT = Path(__file__).resolve().parents[2]


def network_manifest(name: str, spec: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n  name: {name}\nspec:\n"
            f"  {spec}\n")


def pool_manifest(name: str, path: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: StoragePool\nmetadata:\n  name: {name}\n"
            f"spec:\n  path: {path}\n")


def _snapshot(host, tmp_path: Path, name: str = "host.snapshot") -> Path:  # type: ignore[no-untyped-def]
    out = tmp_path / name
    r = run_cli("snapshot", "--connect", host.uri, "--out", out)
    assert r.code == 0, r.stderr
    return out


def _same_plans(host, m: Path, snap: Path) -> dict:  # type: ignore[no-untyped-def]
    """The plans from the host and from the snapshot, the same but for the header's time."""
    live = plan(host, m, "--format", "json")
    offline = run_cli("plan", "--snapshot", snap, "--format", "json", m)
    assert offline.code == live.code
    doc, doc_offline = json.loads(live.stdout), json.loads(offline.stdout)
    assert doc["header"]["snapshot"] is None and doc_offline["header"]["snapshot"]
    assert {**doc_offline, "header": None} == {**doc, "header": None}
    assert doc_offline["header"]["uri"] == host.uri  # the host it was taken of, not the file
    text_live, text_offline = plan(host, m), run_cli("plan", "--snapshot", snap, m)
    assert text_offline.stdout.splitlines()[:-1] == text_live.stdout.splitlines()[:-1]
    assert "from a snapshot taken" in text_offline.stdout.splitlines()[-1]
    return doc  # type: ignore[no-any-return]


def test_a_plan_from_a_snapshot_is_the_plan_the_host_gives(host, tmp_path):
    m = tmp_path / "m"
    net = host.network()
    a, b, c = (f"{host.prefix}{x}" for x in "abc")
    write_manifest(m, "a.yaml", vm_manifest(a, state="stopped", disks="- {name: root, size: 64MiB}",
                                            networks=f"- network: {net}"))
    write_manifest(m, "b.yaml", vm_manifest(b, state="stopped",
                                            disks="- {name: root, size: 64MiB, reclaim: delete}"))
    assert apply(host, m).code == 0
    # The pull request: grow a's disk and add a vCPU, remove b, add c, and one refusal.
    write_manifest(m, "a.yaml", vm_manifest(a, vcpus=2, state="stopped",
                                            disks="- {name: root, size: 128MiB}",
                                            networks=f"- network: {net}"))
    (m / "b.yaml").unlink()
    write_manifest(m, "c.yaml", vm_manifest(c, state="stopped",
                                            disks="- {name: root, size: 64MiB, pool: nopool}"))
    snap = _snapshot(host, tmp_path)
    doc = _same_plans(host, m, snap)
    symbols = {a_["name"]: a_["symbol"] for a_ in doc["actions"]}
    assert symbols == {a: "~", b: "-", c: "!"}, symbols
    # Nothing changed on the host by taking the snapshot or planning against it.
    assert host.volume(f"{b}-root") is not None and host.exists(b)


def test_a_snapshot_plan_with_no_changes_says_so_and_holds_what_plans_read(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}s"
    write_manifest(m, "s.yaml", vm_manifest(name, disks="- {name: root, size: 64MiB}"))
    assert apply(host, m).code == 0
    snap = _snapshot(host, tmp_path, "host.snapshot.gz")  # compressed by its name
    r = run_cli("plan", "--snapshot", snap, m)
    assert r.code == 0 and "No changes" in r.stdout, r.stdout
    doc = json.loads(run_cli("snapshot", "--connect", host.uri).stdout)
    assert doc["kind"] == "HostSnapshot" and doc["taken"].endswith("Z")
    mine = next(d for d in doc["domains"] if d["name"] == name)
    assert mine["state"] == "running" and mine["live_xml"] and mine["inactive_xml"]
    assert any(v["name"] == f"{name}-root" for v in doc["volumes"])
    assert any(p["name"] == "default" for p in doc["pools"])


def test_plan_from_a_snapshot_needs_no_libvirt_python(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}n"
    write_manifest(m, "n.yaml", vm_manifest(name, state="stopped"))
    snap = _snapshot(host, tmp_path)
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "libvirt.py").write_text("raise ImportError('libvirt-python is not here')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocker), str(ROOT)])}
    run = [sys.executable, "-c", "from reconciler.shells.cli import main; main()"]
    r = subprocess.run([*run, "plan", "--snapshot", str(snap), str(m)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert f"+ {name}" in r.stdout
    # Without a snapshot it says what is missing and what to do, in one line.
    r = subprocess.run([*run, "plan", "--connect", host.uri, str(m)], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "libvirt-python is not installed" in r.stderr and "--snapshot" in r.stderr


@pytest.mark.parametrize("content", [b"", b"{}", b"not json", b'{"kind": "HostSnapshot"}',
                                     b'{"apiVersion": "reconciler/v1", "kind": "HostSnapshot",'
                                     b' "uri": 1, "taken": "x", "host": {}, "domains": []}'])
def test_a_file_that_is_not_a_usable_snapshot_is_refused_in_one_line(tmp_path, content):
    snap = tmp_path / "bad.snapshot"
    snap.write_bytes(content)
    m = tmp_path / "m"
    write_manifest(m, "n.yaml", vm_manifest("n1", state="stopped"))
    r = run_cli("plan", "--snapshot", snap, m)
    assert r.code == 1 and str(snap) in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_a_fifo_or_a_missing_file_as_snapshot_is_refused_without_hanging(tmp_path):
    m = tmp_path / "m"
    write_manifest(m, "n.yaml", vm_manifest("n1", state="stopped"))
    fifo = tmp_path / "fifo.snapshot"
    os.mkfifo(fifo)
    for path in (fifo, tmp_path / "missing.snapshot", tmp_path):
        r = run_cli("plan", "--snapshot", path, m)
        assert r.code == 1 and str(path) in r.stderr, r.stderr


def test_the_snapshot_round_trip_of_a_host_with_vms_a_network_and_a_pool(host, tmp_path):
    """The issue's round trip: a real host with three managed VMs, a network and a pool; the
    plan against its snapshot says "No changes"; after one manifest edit, exactly that change,
    identical to the plan made on the host."""
    import shutil

    root = Path(f"/var/lib/libvirt/{host.prefix}pools")
    root.mkdir()
    try:
        config = tmp_path / "config.yaml"
        config.write_text(f"storageRoots: [{root}]\n")
        m = tmp_path / "m"
        net, pool = f"{host.prefix}net", f"{host.prefix}pool"
        write_manifest(m, "net.yaml", network_manifest(net, f"bridge: rs{host.prefix[1:7]}"))
        write_manifest(m, "pool.yaml", pool_manifest(pool, f"{root}/{pool}"))
        for x in "abc":
            write_manifest(m, f"{x}.yaml", vm_manifest(
                f"{host.prefix}{x}", state="stopped", networks=f"- network: {net}",
                disks=f"- {{name: root, size: 16MiB, pool: {pool}}}"))
        assert apply(host, m, "--config", config).code == 0
        snap = tmp_path / "host.snapshot"
        assert run_cli("snapshot", "--connect", host.uri, "--config", config,
                       "--out", snap).code == 0
        r = run_cli("plan", "--snapshot", snap, "--config", config, "--detailed-exitcode", m)
        assert r.code == 0 and "No changes" in r.stdout, r.stdout + r.stderr
        write_manifest(m, "b.yaml", vm_manifest(
            f"{host.prefix}b", vcpus=2, state="stopped", networks=f"- network: {net}",
            disks=f"- {{name: root, size: 16MiB, pool: {pool}}}"))
        offline = run_cli("plan", "--snapshot", snap, "--config", config, "--format", "json", m)
        live = run_cli("plan", "--connect", host.uri, "--config", config, "--format", "json", m)
        doc, doc_offline = json.loads(live.stdout), json.loads(offline.stdout)
        assert {**doc_offline, "header": None} == {**doc, "header": None}
        assert [(a["name"], [c["field"] for c in a["changes"]]) for a in doc["actions"]] == [
            (f"{host.prefix}b", ["maxVcpus", "vcpus"])]
    finally:
        host.cleanup()
        shutil.rmtree(root, ignore_errors=True)
