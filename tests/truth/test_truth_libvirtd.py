"""What reconciler reports is what libvirt runs (issue: observe everything, verify every result),
against the real libvirtd. Each test is an instance found in the field, or another member of
its kind."""

from __future__ import annotations

import pytest
from conftest import apply, plan, run_cli, vm_manifest, write_manifest

pytestmark = pytest.mark.libvirtd


def volumes(host, prefix: str) -> list[str]:  # type: ignore[no-untyped-def]
    pool = host.conn.storagePoolLookupByName("default")
    pool.refresh(0)
    return sorted(v.name() for v in pool.listAllVolumes(0) if v.name().startswith(prefix))


# --- kind 1: objects that vanish between listing and reading -------------------------------------


def test_parallel_destroys_delete_every_reclaimed_volume(host, tmp_path):
    m = tmp_path / "m"
    names = [f"{host.prefix}d{i:02d}" for i in range(12)]
    for name in names:
        write_manifest(m, f"{name}.yaml", vm_manifest(
            name, state="stopped", disks="- {name: root, size: 64MiB, reclaim: delete}"))
    assert apply(host, m).code == 0
    assert len(volumes(host, host.prefix)) == 12
    for name in names:
        (m / f"{name}.yaml").unlink()
    write_manifest(m, "keep.yaml", vm_manifest(f"{host.prefix}keep", state="stopped"))
    r = apply(host, m, "--max-destroy", "12", "--parallel", "4")
    assert r.code == 0, r.stdout
    assert volumes(host, host.prefix) == [], r.stdout  # every reclaimed volume is gone
    assert not any(host.exists(n) for n in names)
    assert r.stdout.count(": destroyed\n") == 12
    assert "No changes" in plan(host, m).stdout


# --- kind 4: a plan that approves what apply cannot do -------------------------------------------


def test_a_missing_pool_or_network_is_blocked_and_nothing_is_created(host, tmp_path):
    m = tmp_path / "m"
    a, b = f"{host.prefix}a", f"{host.prefix}b"
    write_manifest(m, "a.yaml", vm_manifest(
        a, disks=f"- {{name: root, size: 64MiB, pool: {host.prefix}nopool}}"))
    write_manifest(m, "b.yaml", vm_manifest(
        b, disks="- {name: root, size: 64MiB}", networks=f"- network: {host.prefix}nonet"))
    r = plan(host, m)
    assert r.code == 1
    assert (f"! {a}   blocked: pool {host.prefix}nopool does not exist or is not active"
            in r.stdout)
    assert f"! {b}   blocked: network {host.prefix}nonet does not exist" in r.stdout
    assert "Plan: 0 to create, 0 to update, 0 to destroy, 2 blocked." in r.stdout
    r = apply(host, m)
    assert r.code == 1
    assert not host.exists(a) and not host.exists(b)
    assert volumes(host, host.prefix) == []  # b's disk was not made for a VM that cannot be


# --- kind 5: identity of volumes -----------------------------------------------------------------


def test_a_volume_that_backs_another_vm_is_never_reused_nor_deleted(host, tmp_path):
    m = tmp_path / "m"
    base, child = f"{host.prefix}base", f"{host.prefix}child"
    base_vm = vm_manifest(base, state="stopped",
                          disks="- {name: img, size: 64MiB, reclaim: delete}")
    # 1. VM base with disk img; 2. base removed (its volume is retained: reclaim... kept by
    # a retained copy of the manifest without reclaim: delete, as an operator would).
    write_manifest(m, "base.yaml", vm_manifest(base, state="stopped",
                                               disks="- {name: img, size: 64MiB}"))
    assert apply(host, m).code == 0
    (m / "base.yaml").unlink()
    write_manifest(m, "keep.yaml", vm_manifest(f"{host.prefix}keep", state="stopped"))
    assert apply(host, m).code == 0
    assert volumes(host, base) == [f"{base}-img"]
    # 3. VM child on image base-img.
    write_manifest(m, "child.yaml", vm_manifest(
        child, state="stopped", disks=f"- {{name: root, size: 128MiB, image: {base}-img}}"))
    assert apply(host, m).code == 0
    # 4. base comes back with reclaim: delete: its volume backs child's disk, never reused.
    write_manifest(m, "base.yaml", base_vm)
    r = apply(host, m)
    assert r.code == 1
    assert (f"! {base}   blocked: volume {base}-img in pool default already exists and backs "
            f"volume default/{child}-root" in r.stdout)
    assert not host.exists(base)
    # 5. removed again: nothing to destroy; the image and child stay whole.
    (m / "base.yaml").unlink()
    assert apply(host, m).code == 0
    assert volumes(host, base) == [f"{base}-img"]
    host.domain(child).create()  # child still starts
    assert host.domain(child).isActive()


# --- kind 6: device identity on hot-plug ---------------------------------------------------------


def test_a_disk_added_beside_a_pending_removal_gets_a_free_target(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}dev"

    def disks(*names: str) -> str:
        return "\n".join(f"- {{name: {n}, size: 16MiB}}" for n in names)

    write_manifest(m, "v.yaml", vm_manifest(name, disks=disks("a", "b", "c")))
    assert apply(host, m).code == 0
    # b's unplug waits for the guest (an OS-less guest never releases it): pending restart.
    write_manifest(m, "v.yaml", vm_manifest(name, disks=disks("a", "c")))
    r = apply(host, m)
    assert f"{name}: updated, pending restart" in r.stdout, r.stdout
    # d must not take vdb: the running VM still has b there.
    write_manifest(m, "v.yaml", vm_manifest(name, disks=disks("a", "c", "d")))
    r = apply(host, m)
    assert "duplicated" not in r.stdout + r.stderr
    assert f"{name}: update failed" not in r.stdout, r.stdout
    from lxml import etree

    def targets(inactive: bool) -> dict[str, str]:
        root = etree.fromstring(host.xml(name, inactive=inactive).encode())
        return {d.find("source").get("volume"): d.find("target").get("dev")
                for d in root.iterfind("devices/disk[@device='disk']")}

    live, config = targets(False), targets(True)
    assert live[f"{name}-d"] == config[f"{name}-d"] == "vdd"
    assert live[f"{name}-b"] == "vdb" and f"{name}-b" not in config


# --- kind 3: domain states other than "running" and "shut off" -----------------------------------


def test_a_vm_paused_by_virsh_suspend_is_shown_and_resumed(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}p"
    write_manifest(m, "p.yaml", vm_manifest(name))
    assert apply(host, m).code == 0
    host.domain(name).suspend()
    r = plan(host, m, "--detailed-exitcode")
    assert r.code == 2 and f"~ {name}   state paused -> running" in r.stdout
    r = apply(host, m)
    assert r.code == 0 and f"{name}: resumed\n" in r.stdout
    assert host.domain(name).state()[0] == 1  # VIR_DOMAIN_RUNNING
    assert "No changes" in plan(host, m).stdout


def test_a_change_to_a_vm_with_a_managed_save_image_is_never_reported_done(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}s"
    write_manifest(m, "s.yaml", vm_manifest(name, vcpus=1, max_vcpus=2))
    assert apply(host, m).code == 0
    host.domain(name).managedSave()
    write_manifest(m, "s.yaml", vm_manifest(name, vcpus=2, max_vcpus=2))
    r = apply(host, m)
    assert r.code == 1
    assert f"! {name}   the domain has a managed-save image" in r.stdout
    status = run_cli("status", "--state-dir", tmp_path / "state").stdout
    assert f"{name}  blocked  the domain has a managed-save image" in status, status
    assert host.domain(name).hasManagedSaveImage()  # left as it is


def test_a_running_vm_undefined_by_hand_is_defined_again(host, tmp_path):
    m = tmp_path / "m"
    name = f"{host.prefix}t"
    write_manifest(m, "t.yaml", vm_manifest(name))
    assert apply(host, m).code == 0
    host.domain(name).undefine()
    assert not host.domain(name).isPersistent()
    r = plan(host, m)
    assert f"~ {name}   definition transient -> persistent" in r.stdout, r.stdout
    assert apply(host, m).code == 0
    assert host.domain(name).isPersistent()
    assert "No changes" in plan(host, m).stdout


# --- kind 7: parts of the domain that the manifest governs, diffed in full -----------------------


@pytest.mark.parametrize("exposed", [
    "<graphics type='vnc' port='-1' autoport='yes'><listen type='network' network='{net}'/>"
    "</graphics>",
    "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'>"
    "<listen type='address' address='127.0.0.1'/></graphics>"
    "<graphics type='spice' port='-1' autoport='yes' listen='0.0.0.0'>"
    "<listen type='address' address='0.0.0.0'/></graphics>",
])
def test_a_console_exposed_by_hand_is_drift(host, tmp_path, exposed):
    from lxml import etree

    m = tmp_path / "m"
    name = f"{host.prefix}g"
    net = host.network()
    write_manifest(m, "g.yaml", vm_manifest(name, state="stopped", extra="graphics: vnc"))
    assert apply(host, m).code == 0
    root = etree.fromstring(host.xml(name, inactive=True).encode())
    devices = root.find("devices")
    for old in devices.findall("graphics"):
        devices.remove(old)
    for element in etree.fromstring(f"<d>{exposed.format(net=net)}</d>"):
        devices.append(element)
    host.conn.defineXML(etree.tostring(root, encoding="unicode"))
    r = plan(host, m, "--detailed-exitcode")
    assert r.code == 2 and f"~ {name}   graphics vnc" in r.stdout, r.stdout
    assert apply(host, m).code == 0
    root = etree.fromstring(host.xml(name, inactive=True).encode())
    graphics = root.findall("devices/graphics")
    assert len(graphics) == 1 and graphics[0].get("type") == "vnc"
    assert {listen.get("address") for listen in graphics[0].iterfind("listen")} == {"127.0.0.1"}
    assert "No changes" in plan(host, m).stdout


# --- kind 8: storage made in a legacy format -----------------------------------------------------


def test_a_qcow2_disk_is_made_in_the_current_format_and_grows_with_a_snapshot(host, tmp_path):
    import subprocess

    from lxml import etree

    m = tmp_path / "m"
    name = f"{host.prefix}q"
    write_manifest(m, "q.yaml", vm_manifest(name, state="stopped",
                                            disks="- {name: root, size: 64MiB}"))
    assert apply(host, m).code == 0
    vol = host.volume(f"{name}-root")
    assert etree.fromstring(vol.XMLDesc(0).encode()).findtext("target/compat") == "1.1"
    subprocess.run(["qemu-img", "snapshot", "-c", "before", vol.path()], check=True)
    write_manifest(m, "q.yaml", vm_manifest(name, state="stopped",
                                            disks="- {name: root, size: 128MiB}"))
    r = apply(host, m)
    assert r.code == 0, r.stdout
    assert host.volume(f"{name}-root").info()[1] == 128 << 20


# --- kind 10: adoption of real-world domains -----------------------------------------------------

VIRT_INSTALL = """<domain type='kvm'>
  <name>{name}</name>
  <metadata>
    <libosinfo:libosinfo xmlns:libosinfo="http://libosinfo.org/xmlns/libvirt/domain/1.0">
      <libosinfo:os id="http://debian.org/debian/12"/>
    </libosinfo:libosinfo>
  </metadata>
  <memory unit='KiB'>65536</memory>
  <currentMemory unit='KiB'>65536</currentMemory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='q35'>hvm</type></os>
  <features><acpi/><apic/><vmport state='off'/></features>
  <cpu mode='host-passthrough' check='none' migratable='on'/>
  <clock offset='utc'>
    <timer name='rtc' tickpolicy='catchup'/><timer name='hpet' present='no'/>
  </clock>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <pm><suspend-to-mem enabled='no'/><suspend-to-disk enabled='no'/></pm>
  <devices>
    <disk type='volume' device='disk'>
      <driver name='qemu' type='qcow2' discard='unmap'/>
      <source pool='default' volume='{name}-root'/>
      <target dev='vda' bus='virtio'/>
      <boot order='2'/>
    </disk>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <target dev='sda' bus='sata'/>
      <readonly/>
      <boot order='1'/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:6b:3c:58'/>
      <source network='{net}'/>
      <model type='virtio'/>
      <mtu size='1400'/>
      <boot order='3'/>
    </interface>
    <channel type='unix'><target type='virtio' name='org.qemu.guest_agent.0'/></channel>
    <input type='tablet' bus='usb'/>
    <graphics type='vnc' port='-1' autoport='yes'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <video><model type='virtio' heads='1' primary='yes'/></video>
    <memballoon model='virtio'/>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
  </devices>
</domain>"""


def _comparable(xml: str, *, drop: tuple[str, ...] = ()) -> str:
    """The domain XML without the tool's mark (and without ``drop``), canonical."""
    from lxml import etree

    root = etree.fromstring(xml.encode(), etree.XMLParser(remove_blank_text=True))
    for mark in root.findall("metadata/{https://reconciler.dev/xmlns/domain/v1}vm"):
        mark.getparent().remove(mark)
    for path in drop:
        for element in root.findall(path):
            element.getparent().remove(element)
    devices = root.find("devices")  # libvirt orders controllers itself on each define
    children = sorted(devices, key=lambda e: etree.tostring(e, method="c14n"))
    for child in children:
        devices.append(child)
    return etree.tostring(root, method="c14n").decode()


def test_a_virt_install_domain_is_adopted_and_changed_touching_nothing_else(host, tmp_path):
    name = f"{host.prefix}vi"
    net = host.network()
    pool = host.conn.storagePoolLookupByName("default")
    pool.createXML(f"<volume><name>{name}-root</name><capacity>{64 << 20}</capacity>"
                   "<target><format type='qcow2'/></target></volume>", 0)
    host.conn.defineXML(VIRT_INSTALL.format(name=name, net=net))
    before = host.xml(name, inactive=True)
    r = run_cli("export", "--connect", host.uri, name)
    assert r.code == 0, r.stderr
    assert "kept as they are (a manifest does not govern them):" in r.stdout
    for kept in ("<cpu>", "<clock>", "<pm>", "<channel>", "<rng>", "interface <mtu>"):
        assert kept in r.stdout, r.stdout
    m = tmp_path / "m"
    write_manifest(m, "vi.yaml", r.stdout)
    assert run_cli("validate", m).code == 0
    r = apply(host, m)
    assert r.code == 0 and f"~ {name}   adopt" in r.stdout, r.stdout
    assert _comparable(host.xml(name, inactive=True)) == _comparable(before)
    # A memory-only change touches memory only: no <os><boot> beside the per-device ones
    # (libvirt would refuse the definition), no new vCPU layout.
    text = (m / "vi.yaml").read_text().replace("memory: 64MiB", "memory: 128MiB")
    write_manifest(m, "vi.yaml", text)
    r = apply(host, m)
    assert r.code == 0 and f"{name}: updated\n" in r.stdout, r.stdout
    after = host.xml(name, inactive=True)
    assert "<memory unit='KiB'>131072</memory>" in after
    drop = ("memory", "currentMemory")
    import difflib
    a, b = (_comparable(x, drop=drop).replace("><", ">\n<").splitlines() for x in (before, after))
    assert a == b, "\n".join(difflib.unified_diff(a, b, lineterm="", n=1))


def test_a_nic_left_off_its_bridge_by_a_network_restart_is_not_in_sync(host, tmp_path):
    m = tmp_path / "m"
    name, net = f"{host.prefix}n", f"{host.prefix}lan"
    bridge = f"rn{host.prefix[1:7]}"
    write_manifest(m, "net.yaml", f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n"
                                  f"  name: {net}\nspec:\n  bridge: {bridge}\n")
    write_manifest(m, "vm.yaml", vm_manifest(name, networks=f"- network: {net}"))
    assert apply(host, m).code == 0
    host.conn.networkLookupByName(net).destroy()  # virsh net-destroy
    r = apply(host, m)  # the network is started again; the running NIC is not on its bridge
    assert f"~ network/{net}   state inactive -> active" in r.stdout, r.stdout
    r = plan(host, m, "--detailed-exitcode")
    assert "Still pending restart" in r.stdout
    assert f"= {name}   nic " in r.stdout and "pending restart: not connected" in r.stdout
    # updatePolicy restart: apply restarts the VM, which reconnects it.
    write_manifest(m, "vm.yaml", vm_manifest(name, networks=f"- network: {net}",
                                             extra="updatePolicy: restart"))
    r = apply(host, m)
    assert r.code == 0 and "-- restarts the VM" in r.stdout, r.stdout
    assert "No changes" in plan(host, m).stdout
