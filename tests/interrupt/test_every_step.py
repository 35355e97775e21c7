"""Apply stopped (kill -9) between any two of its steps, then run again: the second run exits 0
and leaves the host as an uninterrupted run does, with no orphaned volume or domain, and a plan
that has nothing to do. For create, resize, hot-plug (disks and NICs, added and removed),
cloud-init seeds and destroy, against the real libvirtd. OS-less 64MiB guests.

The issue this comes from: a destroy killed after the undefine and before the volume deletes
left the `reclaim: delete` volumes and the cloud-init seed (with the user data) behind, owned by
nothing, and the next plan said "No changes".
"""

from __future__ import annotations

from conftest import vm_manifest
from interrupting import Manifests, every_step

MiB = 1 << 20
SEED = 'cloudInit:\n  userData: "#cloud-config\\n"\n'


def test_destroy_stopped_at_every_step(host, tmp_path):
    def vm(base: str) -> dict[str, str]:
        return {"vm.yaml": vm_manifest(f"{base}-a", extra=SEED, disks="""
            - {name: root, size: 8MiB, reclaim: delete}
            - {name: data, size: 8MiB}
        """)}

    stopped = every_step(host, tmp_path, "d", vm, lambda base: {})
    # shutdown, forced power-off, the volume and the seed, undefine last
    assert stopped == ["shutdown", "power_off", "delete_volume", "delete_volume", "undefine"]


def _full(name: str, net: str) -> str:
    """A VM with a disk of each kind, a NIC, a seed and autostart, running."""
    return vm_manifest(name, extra="autostart: true\n" + SEED, disks="""
        - {name: root, size: 8MiB}
        - {name: data, size: 8MiB, format: raw, reclaim: delete}
    """, networks=f"- network: {net}")


def test_create_stopped_at_every_step(host, tmp_path):
    net = host.network()
    stopped = every_step(host, tmp_path, "c", lambda base: {},
                         lambda base: {"vm.yaml": _full(f"{base}-a", net)})
    # the definition (with the mark and the record of what is made next) comes first
    assert stopped[0] == "define"
    assert stopped[-1] == "start" and "upload_volume" in stopped


def test_network_create_and_removal_stopped_at_every_step(host, tmp_path):
    """A network (isolated) created with a (stopped) VM on it, then both removed."""
    def net(base: str) -> str:
        bridge = "rc" + base.replace("-", "")[1:]  # its own (libvirt's pick races in parallel)
        return (f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n  name: {base}-net\n"
                f"spec:\n  autostart: true\n  bridge: {bridge}\n")

    def both(base: str) -> dict[str, str]:
        return {"net.yaml": net(base),
                "vm.yaml": vm_manifest(f"{base}-a", state="stopped",
                                       networks=f"- network: {base}-net")}

    stopped = every_step(host, tmp_path, "n", lambda base: {}, both)
    assert stopped[:3] == ["define_network", "set_network_autostart", "start_network"]
    stopped = every_step(host, tmp_path, "m", both, lambda base: {})
    assert stopped[-1] == "remove_network"


def test_create_stopped_at_every_step_then_manifest_removed(host, tmp_path):
    """The manifest is gone before the next run: that run destroys what the interrupted one
    made. Volumes whose create was never finished go too, whatever their reclaim (the guest
    never had them); once the create recorded them made, `reclaim: retain` keeps them."""
    net = host.network()
    made = {"set_mark", "set_autostart", "start"}  # steps after the record was cleared

    def expect(step: str, reference: dict[str, object]) -> dict[str, object]:
        kept = {"default/VM-a-root": 8 * MiB} if step in made else {}
        return {**reference, "domains": {}, "volumes": kept}

    every_step(host, tmp_path, "r", lambda base: {},
               lambda base: {"vm.yaml": _full(f"{base}-a", net)},
               finish=lambda base: {}, expect=expect)


def test_resize_stopped_at_every_step(host, tmp_path):
    """A running VM (vCPU hot-plug, a live block resize) and a stopped one (config, a volume
    resize: its grown size is trusted once recorded, so the mark records it only after the
    volume grew)."""
    def vms(vcpus: int, size: str, memory: str) -> Manifests:
        return lambda base: {
            "up.yaml": vm_manifest(f"{base}-up", vcpus=vcpus, max_vcpus=2,
                                   disks=f"- {{name: root, size: {size}}}"),
            "off.yaml": vm_manifest(f"{base}-off", vcpus=vcpus, max_vcpus=2, memory=memory,
                                    max_memory="128MiB", state="stopped",
                                    disks=f"- {{name: root, size: {size}}}"),
        }

    stopped = every_step(host, tmp_path, "z", vms(1, "8MiB", "64MiB"),
                         vms(2, "16MiB", "96MiB"))
    assert stopped == ["resize_volume", "define", "block_resize", "define", "set_vcpus_live"]


def test_hotplug_stopped_at_every_step(host, tmp_path):
    """A disk and a NIC added to a running VM."""
    net = host.network()

    def vm(added: bool) -> Manifests:
        more = "\n- {name: data, size: 8MiB, reclaim: delete}" if added else ""
        return lambda base: {"vm.yaml": vm_manifest(
            f"{base}-add", disks="- {name: root, size: 8MiB}" + more,
            networks=f"- network: {net}" if added else "")}

    stopped = every_step(host, tmp_path, "h", vm(False), vm(True))
    assert stopped == ["define", "create_volume", "set_mark", "attach_live", "attach_live"]


def test_hot_unplug_stopped_at_every_step(host, tmp_path):
    """A disk (its volume deleted with it) and a NIC removed from a running VM. The SCSI disk
    leaves at once; the NIC waits for a guest that never lets it go (OS-less): it is pending a
    restart in every run, interrupted or not."""
    net = host.network()

    def vm(removed: bool) -> Manifests:
        more = "" if removed else "\n- {name: data, size: 8MiB, bus: scsi, reclaim: delete}"
        return lambda base: {"vm.yaml": vm_manifest(
            f"{base}-rm", disks="- {name: root, size: 8MiB}" + more,
            networks="" if removed else f"- network: {net}")}

    stopped = every_step(host, tmp_path, "u", vm(False), vm(True), workers=6)
    assert stopped == ["define", "detach_live", "detach_live", "delete_volume", "set_mark"]


def test_seed_stopped_at_every_step(host, tmp_path):
    """The cloud-init seed written anew (its content changed), and removed."""
    def vms(version: int) -> Manifests:
        seed = f'cloudInit:\n  userData: "#cloud-config\\n# v{version}\\n"\n'
        return lambda base: {
            "new.yaml": vm_manifest(f"{base}-new", state="stopped", extra=seed),
            "gone.yaml": vm_manifest(f"{base}-gone", state="stopped",
                                     extra=seed if version == 1 else ""),
        }

    stopped = every_step(host, tmp_path, "s", vms(1), vms(2))
    assert "upload_volume" in stopped and "delete_volume" in stopped
