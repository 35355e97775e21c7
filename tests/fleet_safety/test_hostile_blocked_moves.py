"""Hostile, and PASSING (the product is right): each reason a move cannot start blocks it with
the reason, leaves the VM untouched, and neither apply nor status claims success. On libvirt's
test driver: hv-a is test:///default, hv-b a test-driver host of our own."""

from __future__ import annotations

import pytest
from conftest import run_cli, vm_manifest, write_manifest
from hostile_helpers import URI, as_host, host_yaml, node

CASES = {
    # case: (manifest extra, disks, networks, how hv-a's domain is set, hv-b's node, reason)
    "paused": ("", "", "", "suspend", {},
               "it is paused; a move starts only from running or shut off"),
    "uefi": ("firmware: uefi", "", "", "", {},
             "a UEFI VM's NVRAM is not moved between hosts yet; move it by hand"),
    "transient": ("", "", "", "undefine", {},
                  "a transient domain cannot be moved; define it first"),
    "missing-pool": ("", "- name: root\n  size: 16MiB\n  pool: default-pool", "", "",
                     {"pool": "other-pool"}, "hv-b has no active pool 'default-pool'"),
    "missing-network": ("", "", "- network: default", "", {},
                        "hv-b has no active network 'default'"),
    "name-taken-by-hand": ("", "", "", "", {"hand_made": True},
                           "hv-b already has a domain '{name}' (made by hand)"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_move_that_cannot_start_is_blocked_with_its_reason_and_the_vm_untouched(
        testdrv, prefix, tmp_path, case):
    extra, disks, networks, how, b_node, reason = CASES[case]
    name = f"{prefix}mv"
    reason = reason.format(name=name)
    domains = ()
    if b_node.get("hand_made"):
        domains = (f"<domain type='test'><name>{name}</name><memory>65536</memory>"
                   "<os><type>hvm</type></os></domain>",)
    b_uri = node(tmp_path, "hv-b", pool=b_node.get("pool", "default-pool"), domains=domains)
    m = tmp_path / "m"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    state = "running" if how in ("suspend", "undefine") else "stopped"

    def vm(on: str) -> None:
        write_manifest(m, "vm.yaml", vm_manifest(name, state=state,
                                                 extra=f"host: {on}\n{extra}", disks=disks,
                                                 networks=networks))

    vm("hv-a")
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    dom = testdrv.lookupByName(name)
    if how == "suspend":
        dom.suspend()
    elif how == "undefine":
        dom.undefine()  # running: now transient
    before = (dom.state()[0], dom.isPersistent(), dom.XMLDesc(0))
    vm("hv-b")

    line = f"! {name}   move to hv-b blocked: {reason}; it stays here, untouched"
    r = as_host(tmp_path, "hv-a", URI, "plan", m)
    assert line in r.stdout
    r = as_host(tmp_path, "hv-a", URI, "apply", m)
    assert r.code == 1
    assert line in r.stdout
    dom = testdrv.lookupByName(name)
    assert (dom.state()[0], dom.isPersistent(), dom.XMLDesc(0)) == before
    status = run_cli("status", "--state-dir", tmp_path / "state-hv-a")
    assert status.code == 1 and "blocked" in status.stdout
    fleet = run_cli("status", "--fleet", "--manifests", m)
    assert fleet.code == 1
    assert any(row.split()[:3] == ["hv-a", name, "blocked"]
               for row in fleet.stdout.splitlines())
    if how == "undefine":  # a transient domain goes once stopped (the fixture undefines)
        dom.destroy()


def test_a_hand_made_domain_on_the_destination_is_a_conflict_there(testdrv, prefix, tmp_path):
    """The VM runs on hv-a; hv-b has a domain of its name made by hand: hv-a's move is blocked
    (above), hv-b reports a conflict (never adopts or replaces it), the fleet plan exits 1."""
    name = f"{prefix}mv"
    hand = (f"<domain type='test'><name>{name}</name><memory>65536</memory>"
            "<os><type>hvm</type></os></domain>")
    b_uri = node(tmp_path, "hv-b", domains=(hand,))
    m = tmp_path / "m"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped", extra="host: hv-a"))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped", extra="host: hv-b"))
    r = as_host(tmp_path, "hv-b", b_uri, "plan", m)
    assert r.code == 1 and f"! {name}" in r.stdout and "conflict" in r.stdout.lower()
    r = run_cli("plan", "--fleet", m)
    assert r.code == 1
    assert "to move" in r.stdout and "0 to move" in r.stdout
    assert "1 to create" not in r.stdout


def test_a_fifo_or_empty_snapshot_is_reported_not_planned_at_once(testdrv, prefix, tmp_path):
    """A FIFO (or an empty file) where a host's snapshot belongs: that host is reported not
    planned, the others are, and the fleet plan exits 1 (never a hang, never a crash)."""
    import os
    import time

    m = tmp_path / "m"
    for h in ("hv-a", "hv-b", "hv-c"):  # each its own URI (one URI for two is refused)
        write_manifest(m, f"hosts/{h}.yaml",
                       host_yaml(h, URI if h == "hv-a" else node(tmp_path, h)))
    write_manifest(m, "vm.yaml", vm_manifest(f"{prefix}web", state="stopped",
                                             extra="host: hv-a"))
    snaps = tmp_path / "snaps"
    snaps.mkdir()
    assert run_cli("snapshot", "--connect", URI, "--out", snaps / "hv-a.snapshot").code == 0
    os.mkfifo(snaps / "hv-b.snapshot")
    (snaps / "hv-c.snapshot").write_bytes(b"")
    (snaps / "README.md").write_text("extra file\n")
    started = time.monotonic()
    r = run_cli("plan", "--fleet", "--snapshots", snaps, m)
    assert time.monotonic() - started < 30
    assert r.code == 1
    assert "Host hv-b (" in r.stdout and "not a regular file" in r.stdout
    assert "Host hv-c (" in r.stdout and "not a snapshot" in r.stdout
    # hv-a is planned; it makes nothing while it cannot tell whether hv-b or hv-c runs web
    assert f"! {prefix}web" in r.stdout and "cannot tell whether it already runs" in r.stdout
    assert "Fleet: 3 hosts (2 not planned)" in r.stdout


def test_a_leaving_vm_keeps_its_network_and_pool_on_the_host_it_leaves(testdrv, prefix,
                                                                       tmp_path):
    """The declared network and pool a leaving VM uses stay on hv-a while it is there (the move
    is blocked: hv-b lacks the network), even with --max-destroy 0 and prune off/confirm."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    net = f"{prefix}net"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    write_manifest(m, "net.yaml", f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n"
                                  f"  name: {net}\nspec: {{}}\n")
    name = f"{prefix}web"

    def vm(on: str) -> None:
        write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped", extra=f"host: {on}",
                                                 networks=f"- network: {net}"))

    vm("hv-a")
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    vm("hv-b")
    for prune in ("auto", "confirm", "off"):
        r = as_host(tmp_path, "hv-a", URI, "plan", m, "--prune", prune, "--max-destroy", "0")
        assert f"- network/{net}" not in r.stdout and f"- {name}" not in r.stdout
        assert f"! {name}   move to hv-b blocked: hv-b has no active network '{net}'" \
            in r.stdout
    r = as_host(tmp_path, "hv-a", URI, "apply", m)
    assert r.code == 1
    assert testdrv.networkLookupByName(net).isActive()
    assert testdrv.lookupByName(name)


def test_moves_to_one_host_share_its_room(testdrv, prefix, tmp_path):
    """Two VMs move to hv-b, whose pool has room for one of them (the test driver's pools
    have 100GiB free): the first (by name) moves, the second is blocked, saying how much room
    is left once the first has moved."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))

    def vms(on: str) -> None:
        for n in ("one", "two"):
            write_manifest(m, f"{n}.yaml", vm_manifest(
                f"{prefix}{n}", state="stopped", extra=f"host: {on}",
                disks="- name: root\n  size: 60GiB\n  pool: default-pool"))

    vms("hv-a")
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    vms("hv-b")
    r = as_host(tmp_path, "hv-a", URI, "plan", m)
    assert f"> {prefix}one   move hv-a -> hv-b (cold move)" in r.stdout
    assert (f"! {prefix}two   move to hv-b blocked: pool 'default-pool' on hv-b has 40GiB free, "
            "the disks take up to 60GiB") in r.stdout
    assert r.code == 1


def test_one_run_starts_at_most_max_moves_moves(testdrv, prefix, tmp_path):
    """A label edit that moves many VMs: one run starts `maxMoves` of them (by name); the
    others wait, listed, for a later run (pending, not an error)."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    names = [f"{prefix}v{i}" for i in range(3)]

    def vms(on: str) -> None:
        for n in names:
            write_manifest(m, f"{n}.yaml", vm_manifest(n, state="stopped", extra=f"host: {on}"))

    vms("hv-a")
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    vms("hv-b")
    config = tmp_path / "config-hv-a.yaml"
    r = run_cli("plan", "--connect", URI, "--config", config, "--detailed-exitcode", m)
    assert r.code == 2  # 5 by default: all three move
    assert all(f"> {n}   move hv-a -> hv-b (cold move)" in r.stdout for n in names)
    config.write_text(config.read_text() + "maxMoves: 2\n")
    r = run_cli("plan", "--connect", URI, "--config", config, "--detailed-exitcode", m)
    assert r.code == 2, r.stdout + r.stderr
    assert f"> {names[0]}   move" in r.stdout and f"> {names[1]}   move" in r.stdout
    assert (f"! {names[2]}   waiting: one run starts at most 2 moves (maxMoves in the config); "
            "it moves in a later run, move hv-a -> hv-b (cold move)") in r.stdout
