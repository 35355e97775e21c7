"""Network and StoragePool manifests: validation, plan and apply, on the test driver and on the
real libvirtd."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest
from conftest import run_cli, vm_manifest, write_manifest


def network_manifest(name: str, spec: str = "") -> str:
    body = textwrap.indent(textwrap.dedent(spec).strip(), "  ")
    return (f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n  name: {name}\n"
            + (f"spec:\n{body}\n" if body else ""))


def pool_manifest(name: str, path: str) -> str:
    return (f"apiVersion: reconciler/v1\nkind: StoragePool\nmetadata:\n  name: {name}\n"
            f"spec:\n  type: dir\n  path: {path}\n")


# --- validation ---------------------------------------------------------------------------------


def test_a_pool_outside_the_storage_roots_fails_validation(tmp_path):
    write_manifest(tmp_path, "m/pool.yaml", pool_manifest("p1", "/etc/evil"))
    r = run_cli("validate", tmp_path / "m")
    assert r.code == 1
    line = r.stdout.splitlines()[0]
    assert line.endswith("pool.yaml:7:3: spec.path: '/etc/evil' is not below an allowed storage "
                         "root (/var/lib/libvirt/images); the host's config lists them in "
                         "storageRoots")


def test_the_storage_roots_come_from_the_host_config(tmp_path):
    write_manifest(tmp_path, "m/pool.yaml", pool_manifest("p1", "/srv/vm/p1"))
    (tmp_path / "config.yaml").write_text("storageRoots: [/srv/vm]\n")
    assert run_cli("validate", tmp_path / "m").code == 1
    r = run_cli("validate", "--config", tmp_path / "config.yaml", tmp_path / "m")
    assert r.code == 0, r.stdout
    # A root itself, or a path escaping it with '..', is not below it.
    write_manifest(tmp_path, "m/pool.yaml", pool_manifest("p1", "/srv/vm/../../etc"))
    assert run_cli("validate", "--config", tmp_path / "config.yaml", tmp_path / "m").code == 1


def test_network_addresses_are_checked(tmp_path):
    write_manifest(tmp_path, "m/net.yaml", network_manifest("n1", """
        ipv4:
          address: 10.9.0.1
          prefix: 24
          dhcp: {start: 10.9.1.10, end: 10.9.0.5}
        """))
    r = run_cli("validate", tmp_path / "m")
    assert r.code == 1
    assert any("spec.ipv4.dhcp.start: 10.9.1.10 is outside 10.9.0.0/24" in line
               for line in r.stdout.splitlines())
    assert any("spec.ipv4.dhcp.end: 10.9.0.5 comes before start 10.9.1.10" in line
               for line in r.stdout.splitlines())


def test_a_vm_and_a_network_may_share_a_name_but_two_networks_may_not(tmp_path):
    write_manifest(tmp_path, "m/a.yaml", network_manifest("lab") + "---\n"
                   + vm_manifest("lab"))
    assert run_cli("validate", tmp_path / "m").code == 0
    write_manifest(tmp_path, "m/b.yaml", network_manifest("lab"))
    r = run_cli("validate", tmp_path / "m")
    assert r.code == 1
    assert "already declared in" in r.stdout


# --- the test driver ----------------------------------------------------------------------------


def test_networks_and_pools_on_the_test_driver(testdrv, prefix, tmp_path):
    m = tmp_path / "m"
    net, pool, vm = f"{prefix}net", f"{prefix}pool", f"{prefix}vm"
    write_manifest(m, "net.yaml", network_manifest(net, """
        forward: nat
        ipv4: {address: 10.77.0.1, prefix: 24, dhcp: {start: 10.77.0.10, end: 10.77.0.99}}
        """))
    write_manifest(m, "pool.yaml", pool_manifest(pool, f"/var/lib/libvirt/images/{pool}"))
    write_manifest(m, "vm.yaml", vm_manifest(vm, state="stopped", networks=f"- network: {net}",
                                             disks=f"- {{name: root, size: 1GiB, pool: {pool}}}"))
    state = tmp_path / "state"
    r = run_cli("plan", "--connect", "test:///default", m)
    assert f"+ network/{net}" in r.stdout and f"+ pool/{pool}" in r.stdout
    r = run_cli("apply", "--yes", "--connect", "test:///default", "--state-dir", state, m)
    assert r.code == 0, r.stdout + r.stderr
    xml = testdrv.networkLookupByName(net).XMLDesc(0)
    assert "<forward mode='nat'" in xml and "address='10.77.0.1'" in xml
    assert testdrv.networkLookupByName(net).isActive()
    assert testdrv.storagePoolLookupByName(pool).isActive()
    assert testdrv.lookupByName(vm)  # created after its pool and network
    r = run_cli("plan", "--detailed-exitcode", "--connect", "test:///default", m)
    assert r.code == 0, r.stdout

    # The network's manifest goes while a VM still uses it: blocked, with the VM named.
    (m / "net.yaml").unlink()
    r = run_cli("plan", "--connect", "test:///default", m)
    assert f"! network/{net}" in r.stdout and f"still used by {vm}" in r.stdout
    r = run_cli("apply", "--yes", "--connect", "test:///default", "--state-dir", state, m)
    assert r.code == 1
    assert testdrv.networkLookupByName(net).isActive()

    # Once the VM is gone too, the network and then the pool go.
    (m / "vm.yaml").unlink()
    write_manifest(m, "pool.yaml", pool_manifest(pool, f"/var/lib/libvirt/images/{pool}"))
    (m / "pool.yaml").unlink()
    write_manifest(m, "other.yaml", vm_manifest(f"{prefix}other", state="stopped"))
    r = run_cli("apply", "--yes", "--connect", "test:///default", "--state-dir", state, m)
    assert r.code == 0, r.stdout + r.stderr
    names = {n.name() for n in testdrv.listAllNetworks(0)}
    assert net not in names
    assert pool not in {p.name() for p in testdrv.listAllStoragePools(0)}
    r = run_cli("plan", "--detailed-exitcode", "--connect", "test:///default", m)
    assert r.code == 0, r.stdout


def test_a_network_made_by_hand_is_a_conflict(testdrv, prefix, tmp_path):
    net = f"{prefix}hand"
    testdrv.networkDefineXML(f"<network><name>{net}</name><bridge name='vb{prefix[1:6]}'/>"
                             "</network>")
    try:
        write_manifest(tmp_path, "m/net.yaml", network_manifest(net))
        r = run_cli("plan", "--connect", "test:///default", tmp_path / "m")
        assert r.code == 1
        assert f"! network/{net}" in r.stdout and "conflict" in r.stdout
    finally:
        testdrv.networkLookupByName(net).undefine()


# --- the real libvirtd --------------------------------------------------------------------------


@pytest.fixture
def pool_root(host, tmp_path):  # type: ignore[no-untyped-def]
    """A storage root beside the `default` pool's directory (never inside it: its volumes
    would be listed by both pools), and a config that allows it."""
    root = Path(f"/var/lib/libvirt/{host.prefix}pools")
    root.mkdir()
    (tmp_path / "config.yaml").write_text(f"storageRoots: [{root}]\n")
    yield root
    host.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def test_network_and_pool_on_libvirtd(host, tmp_path, pool_root):
    m = tmp_path / "m"
    net, pool, vm = f"{host.prefix}net", f"{host.prefix}pool", f"{host.prefix}vm"
    path = f"{pool_root}/{pool}"
    config = ("--config", tmp_path / "config.yaml")
    bridge = f"rb{host.prefix[1:7]}"
    write_manifest(m, "net.yaml", network_manifest(net, f"bridge: {bridge}"))
    write_manifest(m, "pool.yaml", pool_manifest(pool, path))
    write_manifest(m, "vm.yaml", vm_manifest(
        vm, networks=f"- network: {net}", disks=f"- {{name: root, size: 16MiB, pool: {pool}}}"))
    state = tmp_path / "state"
    r = run_cli("apply", "--yes", *config, "--connect", host.uri, "--state-dir", state, m)
    assert r.code == 0, r.stdout + r.stderr
    network = host.conn.networkLookupByName(net)
    assert network.isActive() and network.autostart()
    assert "<forward" not in network.XMLDesc(0)  # isolated
    storage = host.conn.storagePoolLookupByName(pool)
    assert storage.isActive() and Path(path).is_dir()
    assert host.volume(f"{vm}-root", pool) is not None
    assert host.domain(vm).isActive()
    r = run_cli("plan", *config, "--detailed-exitcode", "--connect", host.uri, m)
    assert r.code == 0, r.stdout

    # A Network used by a VM is not destroyed when its manifest goes.
    (m / "net.yaml").unlink()
    r = run_cli("apply", "--yes", *config, "--connect", host.uri, "--state-dir", state, m)
    assert r.code == 1
    assert f"still used by {vm}" in r.stdout
    assert host.conn.networkLookupByName(net).isActive()
    assert host.domain(vm).isActive()


def test_libvirt_default_pool_is_never_claimed(host, tmp_path):
    # The host's own `default` pool has no marker: a manifest for it is a conflict, not adopted.
    write_manifest(tmp_path, "m/pool.yaml",
                   pool_manifest("default", "/var/lib/libvirt/images/other"))
    r = run_cli("plan", "--connect", host.uri, tmp_path / "m")
    assert "! pool/default" in r.stdout and "conflict" in r.stdout
    assert host.conn.storagePoolLookupByName("default").isActive()


def test_pool_paths_are_checked_on_the_host(host, tmp_path, pool_root):
    """A pool inside another pool's directory, on a directory another pool has, or led out of
    the storage roots by a symbolic link, is blocked at plan time; nothing is made for it."""
    config = ("--config", tmp_path / "config.yaml")
    outside = tmp_path / "outside"
    outside.mkdir()
    (pool_root / "link").symlink_to(outside)
    taken = f"{host.prefix}taken"
    host.conn.storagePoolDefineXML(f"<pool type='dir'><name>{taken}</name><target><path>"
                                   f"{pool_root}/t</path></target></pool>", 0)
    m = tmp_path / "m"
    write_manifest(m, "a.yaml", pool_manifest(f"{host.prefix}a", f"{pool_root}/link"))
    write_manifest(m, "b.yaml", pool_manifest(f"{host.prefix}b", f"{pool_root}/t"))
    write_manifest(m, "c.yaml", pool_manifest(f"{host.prefix}c", f"{pool_root}/t/inner"))
    r = run_cli("plan", *config, "--connect", host.uri, m)
    assert f"! pool/{host.prefix}a   blocked: its real path {outside} is below no storage root" \
        in r.stdout, r.stdout
    assert (f"! pool/{host.prefix}b   blocked: pool {taken} already has the directory "
            f"{pool_root}/t" in r.stdout)
    assert f"! pool/{host.prefix}c   blocked: {pool_root}/t/inner and the directory of pool " \
        in r.stdout
    r = run_cli("apply", "--yes", *config, "--connect", host.uri, "--state-dir",
                tmp_path / "state", m)
    assert r.code == 1
    names = {p.name() for p in host.conn.listAllStoragePools(0)}
    assert not names & {f"{host.prefix}a", f"{host.prefix}b", f"{host.prefix}c"}
    # The default configuration's root is the `default` pool's own directory: a pool in it
    # would be nested, and says so.
    write_manifest(tmp_path, "d/d.yaml", pool_manifest(f"{host.prefix}d",
                                                       f"/var/lib/libvirt/images/{host.prefix}d"))
    r = run_cli("plan", "--connect", host.uri, tmp_path / "d")
    assert "and the directory of pool default (/var/lib/libvirt/images) lie one inside" \
        in r.stdout, r.stdout
