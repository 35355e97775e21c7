"""Disks and NICs added to / removed from a running VM, against the real libvirtd."""

from __future__ import annotations

from conftest import vm_manifest, write_manifest
from test_lifecycle import (
    apply,
    assert_converged,
    capacity,
    domain_id,
    plan_line,
    result_line,
    root_of,
)

MiB = 1 << 20


def _volumes(root) -> set[str]:  # type: ignore[no-untyped-def]
    return {d.find("source").get("volume") for d in root.iterfind("devices/disk")}


def _networks(root) -> list[str]:  # type: ignore[no-untyped-def]
    return [i.find("source").get("network") for i in root.iterfind("devices/interface")]


def test_disk_and_nic_hotplugged_into_running_vm(host, tmp_path):
    from test_lifecycle import plan

    net = host.network()
    name = f"{host.prefix}plug"
    folder = tmp_path / "manifests"
    write_manifest(folder, "p.yaml", vm_manifest(name, disks="- {name: root, size: 8MiB}"))
    assert apply(host, folder).code == 0
    first_id = domain_id(host, name)

    write_manifest(folder, "p.yaml", vm_manifest(
        name, disks="""
            - {name: root, size: 8MiB}
            - {name: data, size: 16MiB}
        """, networks=f"- network: {net}"))
    r = plan(host, folder)
    line = plan_line(r.stdout, name)
    assert "disk data 16MiB (add)" in line and f"nic network {net}" in line
    r = apply(host, folder)
    assert r.code == 0
    assert result_line(r.stdout, name) == f"{name}: hot-plugged"
    assert domain_id(host, name) == first_id
    assert capacity(host, f"{name}-data") == 16 * MiB
    for inactive in (False, True):
        root = root_of(host, name, inactive=inactive)
        assert _volumes(root) == {f"{name}-root", f"{name}-data"}
        assert _networks(root) == [net]
    # the MAC libvirt chose is the same live and in the config, and never diffed
    macs = {root_of(host, name, inactive=i).find("devices/interface/mac").get("address")
            for i in (False, True)}
    assert len(macs) == 1
    assert_converged(host, folder)

    # Removed again: persisted at once. An OS-less guest never releases a PCI device (libvirt
    # waits 5s for it per device): that is reported, not passed off as done.
    write_manifest(folder, "p.yaml", vm_manifest(name, disks="- {name: root, size: 8MiB}"))
    r = apply(host, folder)
    assert r.code == 0
    line = result_line(r.stdout, name)
    assert line.startswith(f"{name}: updated, pending restart: ")
    assert "disk data not unplugged" in line and "nic " in line, line
    assert domain_id(host, name) == first_id
    config = root_of(host, name, inactive=True)
    assert _volumes(config) == {f"{name}-root"} and _networks(config) == []
    assert capacity(host, f"{name}-data") == 16 * MiB  # retained
