"""A change interrupted, then taken back in the manifest before the next run: the record of the
interrupted work never deletes what the manifest wants again, and never leaves what it made."""

from __future__ import annotations

from conftest import apply, plan, vm_manifest, write_manifest
from interrupting import apply_stopped, killed, volumes

MiB = 1 << 20
ROOT = "- {name: root, size: 8MiB}"
DATA = "- {name: data, size: 16MiB, reclaim: delete}"


def _converged(host, folder) -> None:  # type: ignore[no-untyped-def]
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0 and "No changes" in r.stdout, r.stdout + r.stderr


def test_a_disk_removed_then_added_back_keeps_its_volume(host, tmp_path):
    name = f"{host.prefix}back"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped",
                                                  disks=f"{ROOT}\n{DATA}"))
    assert apply(host, folder).code == 0
    path = host.volume(f"{name}-data").path()
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped", disks=ROOT))
    assert killed(apply_stopped(host, folder, 1)) == "define"  # recorded: delete disk data
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped",
                                                  disks=f"{ROOT}\n{DATA}"))
    r = apply(host, folder)
    assert r.code == 0
    assert f"volume {name}-data reused" in r.stdout
    assert host.volume(f"{name}-data").path() == path
    assert volumes(host, name)[f"default/{name}-data"] == 16 * MiB
    _converged(host, folder)


def test_a_disk_added_then_removed_leaves_no_volume(host, tmp_path):
    name = f"{host.prefix}undo"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped", disks=ROOT))
    assert apply(host, folder).code == 0
    # Added with the default reclaim (retain), stopped right after its volume was made.
    write_manifest(folder, "vm.yaml", vm_manifest(
        name, state="stopped", disks=f"{ROOT}\n- {{name: data, size: 16MiB}}"))
    assert killed(apply_stopped(host, folder, 2)) == "create_volume"
    write_manifest(folder, "vm.yaml", vm_manifest(name, state="stopped", disks=ROOT))
    r = apply(host, folder)
    assert r.code == 0
    # The guest never had it: it goes with the disk, whatever its reclaim.
    assert volumes(host, name) == {f"default/{name}-root": 8 * MiB}
    _converged(host, folder)


def test_a_restart_stopped_between_stop_and_start_is_finished(host, tmp_path):
    name = f"{host.prefix}rs"
    folder = tmp_path / "manifests"
    write_manifest(folder, "vm.yaml", vm_manifest(name, extra="updatePolicy: restart"))
    assert apply(host, folder).code == 0
    write_manifest(folder, "vm.yaml", vm_manifest(name, max_vcpus=2,
                                                  extra="updatePolicy: restart"))
    # define, graceful shutdown, forced power-off: stopped before the start
    assert killed(apply_stopped(host, folder, 3)) == "power_off"
    assert not host.domain(name).isActive()
    r = apply(host, folder)
    assert r.code == 0 and f"{name}: started\n" in r.stdout, r.stdout
    assert host.domain(name).isActive()
    assert host.domain(name).vcpusFlags(4) == 2  # VIR_DOMAIN_VCPU_MAXIMUM: the new maxVcpus
    _converged(host, folder)
