"""Hostile, between the test bed's two real libvirtds (hv-a: qemu:///system, hv-b: the second
host): a VM run twice because of a typo, and what a move carries (cloud-init seed, autostart)."""

from __future__ import annotations

import hashlib
import textwrap
from pathlib import Path

import libvirt
import pytest
from conftest import Host, vm_manifest, write_manifest
from hostile_helpers import as_host, host_yaml, preferring

pytestmark = pytest.mark.libvirtd


def _hosts(m: Path, host: Host, host_b: Host, b_extra: str = "") -> None:
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", host.uri, {"pool": "x"}))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml(
        "hv-b", host_b.uri, {"pool": "x"}, "migrateUri: tcp://127.0.0.1\n" + b_extra))


def test_a_typo_in_a_host_manifest_never_runs_a_vm_on_two_hosts(host, host_b, prefix,
                                                                 tmp_path):
    """FINDING (severity high): the VM is selected onto hv-b and runs there. A one-character
    typo in hv-b's Host manifest (512GB for 512GiB) drops hv-b from the fleet: hv-b's
    reconciler then plans nothing (not in the fleet), and hv-a, which looks for the VM only on
    the valid Hosts, creates a second one, with new, empty disks. The same VM (its name, its
    MACs when pinned) then exists on both hosts."""
    m = tmp_path / "m"
    _hosts(m, host, host_b)
    name = preferring(prefix, "hv-b", "hv-a")
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped",
                                             extra="hostSelector: {pool: x}",
                                             disks="- name: root\n  size: 16MiB"))
    assert as_host(tmp_path, "hv-b", host_b.uri, "apply", m).code == 0
    assert host_b.exists(name)
    assert "No changes" in as_host(tmp_path, "hv-a", host.uri, "plan", m).stdout
    _hosts(m, host, host_b, "capacity: {memory: 512GB}\n")  # the typo
    as_host(tmp_path, "hv-a", host.uri, "apply", m)
    assert host_b.exists(name)  # still there: nobody moved it
    assert not host.exists(name), "the VM now exists on both hosts"


def _seeded(name: str, on: str, state: str) -> str:
    extra = textwrap.dedent(f"""\
        host: {on}
        autostart: true
        cloudInit:
          userData: |
            #cloud-config
            hostname: {name}
          metaData: {{site: lab}}
        """)
    return vm_manifest(name, state=state, extra=extra, disks="- name: root\n  size: 16MiB")


def _digest(vol: libvirt.virStorageVol) -> str:
    stream = vol.connect().newStream(0)
    vol.download(stream, 0, 0, 0)
    parts: list[bytes] = []
    stream.recvAll(lambda _s, data, acc: acc.append(data), parts)
    stream.finish()
    return hashlib.sha256(b"".join(parts)).hexdigest()


@pytest.mark.parametrize("state", ["stopped", "running"])
def test_a_move_carries_the_cloud_init_seed_and_autostart_and_is_in_sync_there(
        host, host_b, prefix, tmp_path, state):
    """PASSES if the product is right: the seed arrives byte for byte, autostart is kept, and
    both hosts then say "No changes" (status in sync)."""
    m = tmp_path / "m"
    _hosts(m, host, host_b)
    name = f"{prefix}ci"
    write_manifest(m, "vm.yaml", _seeded(name, "hv-a", state))
    assert as_host(tmp_path, "hv-a", host.uri, "apply", m).code == 0
    seed = _digest(host.volume(f"{name}-cidata"))
    assert host.domain(name).autostart() == 1
    write_manifest(m, "vm.yaml", _seeded(name, "hv-b", state))
    r = as_host(tmp_path, "hv-a", host.uri, "apply", m)
    assert r.code == 0, r.stdout + r.stderr
    assert f"{name}: moved to hv-b" in r.stdout
    assert not host.exists(name) and host.volume(f"{name}-cidata") is None
    vol = host_b.volume(f"{name}-cidata")
    assert vol is not None and _digest(vol) == seed
    dom = host_b.domain(name)
    assert dom.autostart() == 1
    assert dom.isActive() == (state == "running")
    r = as_host(tmp_path, "hv-b", host_b.uri, "plan", m, "--detailed-exitcode")
    assert r.code == 0 and "No changes" in r.stdout, r.stdout
    r = as_host(tmp_path, "hv-a", host.uri, "plan", m, "--detailed-exitcode")
    assert r.code == 0 and "No changes" in r.stdout, r.stdout
