"""`apply --plan FILE` on a shared host: the saved plan is refused when what it read about its
own objects moved (naming it), and only then; other tenants' work does not refuse it."""

from __future__ import annotations

from pathlib import Path

import libvirt
import pytest
from conftest import TEST_URI, CliResult, run_cli, vm_manifest, write_manifest


def plan(uri: str, manifests: Path, saved: Path, *args: str) -> CliResult:
    r = run_cli("plan", "--connect", uri, "--out", saved, *args, manifests)
    assert r.code == 0, r.stdout + r.stderr
    return r


def apply(uri: str, manifests: Path, state: Path, *args: str | Path) -> CliResult:
    r = run_cli("apply", "--yes", "--connect", uri, "--state-dir", state, *args, manifests)
    print(f"$ apply {' '.join(map(str, args))} -> {r.code}\n{r.stdout}{r.stderr}")
    return r


def define(conn: libvirt.virConnect, name: str, kind: str = "test") -> libvirt.virDomain:
    """A domain made by hand (no reconciler mark), not started."""
    return conn.defineXML(f"<domain type='{kind}'><name>{name}</name><memory>65536</memory>"
                          "<os><type arch='x86_64'>hvm</type></os></domain>")


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    return tmp_path / "manifests", tmp_path / "state", tmp_path / "plan.json"


# --- on the test driver --------------------------------------------------------------------


def test_another_tenants_work_does_not_refuse_a_saved_plan(testdrv, prefix, folders,
                                                           tmp_path) -> None:
    manifests, state, saved = folders
    write_manifest(manifests, "web.yaml", vm_manifest(f"{prefix}web"))
    plan(TEST_URI, manifests, saved)
    define(testdrv, f"{prefix}by-hand")  # an unmanaged domain no manifest names
    write_manifest(tmp_path / "theirs", "t.yaml", vm_manifest(f"{prefix}theirs"))
    assert apply(TEST_URI, tmp_path / "theirs", tmp_path / "their-state", "--instance",
                 f"{prefix}other").code == 0  # another instance's VM
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 0
    assert testdrv.lookupByName(f"{prefix}web").isActive()


def test_a_domain_that_takes_a_name_the_plan_creates_refuses_it(testdrv, prefix,
                                                                folders) -> None:
    manifests, state, saved = folders
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name))
    plan(TEST_URI, manifests, saved)
    define(testdrv, name)
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"vm {name} appeared" in r.stderr
    assert not testdrv.lookupByName(name).isActive()  # left alone


def test_a_change_to_its_own_vm_is_named(testdrv, prefix, folders) -> None:
    manifests, state, saved = folders
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=1, max_vcpus=2))
    assert apply(TEST_URI, manifests, state).code == 0
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=2, max_vcpus=2))
    plan(TEST_URI, manifests, saved)
    testdrv.lookupByName(name).setAutostart(1)
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"vm {name} changed" in r.stderr


def test_a_manifest_edit_is_named(testdrv, prefix, folders) -> None:
    manifests, state, saved = folders
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=1, max_vcpus=4))
    plan(TEST_URI, manifests, saved)
    write_manifest(manifests, "web.yaml", vm_manifest(name, vcpus=4, max_vcpus=4))
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"manifest vm {name} changed" in r.stderr


def test_a_network_its_vms_use_counts(testdrv, prefix, folders) -> None:
    manifests, state, saved = folders
    net = f"{prefix}net"
    testdrv.networkDefineXML(f"<network><name>{net}</name></network>").create()
    write_manifest(manifests, "web.yaml", vm_manifest(f"{prefix}web", networks=f"""
        - network: {net}
        """))
    plan(TEST_URI, manifests, saved)
    testdrv.networkLookupByName(net).setAutostart(1)  # the plan's decisions stay the same
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"network {net} changed" in r.stderr


def test_a_volume_that_takes_a_name_the_plan_creates_refuses_it(testdrv, prefix,
                                                                folders) -> None:
    manifests, state, saved = folders
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name, disks="""
        - name: root
          size: 16MiB
          pool: default-pool
        """))
    plan(TEST_URI, manifests, saved)
    testdrv.storagePoolLookupByName("default-pool").createXML(
        f"<volume><name>{name}-root</name><capacity>1048576</capacity></volume>", 0)
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"volume default-pool/{name}-root appeared" in r.stderr
    assert not any(d.name() == name for d in testdrv.listAllDomains(0))


def test_another_tenants_volume_in_the_pool_does_not_refuse_it(testdrv, prefix,
                                                               folders) -> None:
    manifests, state, saved = folders
    name = f"{prefix}web"
    write_manifest(manifests, "web.yaml", vm_manifest(name, disks="""
        - name: root
          size: 16MiB
          pool: default-pool
        """))
    plan(TEST_URI, manifests, saved)
    testdrv.storagePoolLookupByName("default-pool").createXML(
        f"<volume><name>{prefix}theirs</name><capacity>1048576</capacity></volume>", 0)
    r = apply(TEST_URI, manifests, state, "--plan", saved)
    assert r.code == 0
    assert testdrv.lookupByName(name).isActive()


def test_a_plan_made_for_another_instance_is_refused(testdrv, prefix, folders) -> None:
    manifests, state, saved = folders
    write_manifest(manifests, "web.yaml", vm_manifest(f"{prefix}web"))
    plan(TEST_URI, manifests, saved, "--instance", f"{prefix}one")
    r = apply(TEST_URI, manifests, state, "--plan", saved, "--instance", f"{prefix}two")
    assert r.code == 1
    assert f"made for instance '{prefix}one', not '{prefix}two'" in r.stderr


# --- on the real libvirtd ------------------------------------------------------------------


@pytest.mark.libvirtd
def test_other_tenants_on_the_shared_network_do_not_refuse_a_saved_plan(host, folders,
                                                                        tmp_path) -> None:
    manifests, state, saved = folders
    net = host.network()  # shared by both tenants
    mine, theirs = f"{host.prefix}mine", f"{host.prefix}theirs"
    nic = f"- network: {net}\n"
    write_manifest(manifests, "mine.yaml", vm_manifest(mine, max_vcpus=2, networks=nic))
    assert apply(host.uri, manifests, state).code == 0
    write_manifest(manifests, "mine.yaml", vm_manifest(mine, vcpus=2, max_vcpus=2,
                                                       networks=nic))
    plan(host.uri, manifests, saved)

    # Meanwhile another tenant starts a guest on the same network (a new port on it, less
    # free memory, a new volume in the default pool), and someone defines a domain by hand.
    write_manifest(tmp_path / "theirs", "t.yaml", vm_manifest(theirs, networks=nic, disks="""
        - name: root
          size: 64MiB
        """))
    assert apply(host.uri, tmp_path / "theirs", tmp_path / "their-state", "--instance",
                 f"{host.prefix}other").code == 0
    define(host.conn, f"{host.prefix}by-hand", "qemu")

    r = apply(host.uri, manifests, state, "--plan", saved)
    assert r.code == 0
    assert host.domain(mine).vcpusFlags(libvirt.VIR_DOMAIN_AFFECT_LIVE) == 2


@pytest.mark.libvirtd
def test_an_unmanaged_domain_that_takes_a_planned_name_refuses_the_plan(host,
                                                                         folders) -> None:
    manifests, state, saved = folders
    name = f"{host.prefix}new"
    write_manifest(manifests, "new.yaml", vm_manifest(name))
    plan(host.uri, manifests, saved)
    define(host.conn, name, "qemu")
    r = apply(host.uri, manifests, state, "--plan", saved)
    assert r.code == 1
    assert f"vm {name} appeared" in r.stderr
    assert not host.domain(name).isActive()
    assert "<metadata" not in host.xml(name, inactive=True)  # left as it was
