"""Lifecycle against the real libvirtd: create, resize live, restart, destroy, conflicts.

Guests are OS-less KVM guests: vCPU hot-unplug and ballooning are not taken up by them, and a
graceful shutdown does nothing (shutdownTimeout 1s: the forced power-off path runs).
"""

from __future__ import annotations

from pathlib import Path

from conftest import apply, plan, vm_manifest, write_manifest
from lxml import etree

MiB = 1 << 20


# --- helpers -------------------------------------------------------------------------------------


def assert_converged(host, folder: Path) -> None:  # type: ignore[no-untyped-def]
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0, r.stdout + r.stderr
    assert "No changes" in r.stdout


def root_of(host, name: str, *, inactive: bool = False) -> etree._Element:  # type: ignore[no-untyped-def]
    return etree.fromstring(host.xml(name, inactive=inactive).encode())


def kib(root: etree._Element, tag: str) -> int:
    element = root.find(tag)
    assert element is not None and element.get("unit", "KiB") == "KiB", tag
    return int(element.text) * 1024


def vcpus(root: etree._Element) -> tuple[int, int]:
    """(current, maximum) from <vcpu current=..>max</vcpu>."""
    vcpu = root.find("vcpu")
    maximum = int(vcpu.text)
    return int(vcpu.get("current", maximum)), maximum


def capacity(host, volume: str) -> int | None:  # type: ignore[no-untyped-def]
    vol = host.volume(volume)
    return None if vol is None else vol.info()[1]


def domain_id(host, name: str) -> int:  # type: ignore[no-untyped-def]
    dom = host.domain(name)
    assert dom.isActive(), f"{name} is not running"
    return dom.ID()


def result_line(stdout: str, name: str) -> str:
    lines = [line for line in stdout.splitlines() if line.startswith(f"{name}: ")]
    assert len(lines) == 1, stdout
    return lines[0]


def plan_line(stdout: str, name: str) -> str:
    lines = [line for line in stdout.splitlines() if line[2:].split(" ", 1)[0] == name]
    assert len(lines) == 1, stdout
    return lines[0]


# --- 1. create ---------------------------------------------------------------------------------


def test_apply_creates_three_vms_then_plan_is_empty(host, tmp_path):
    net = host.network()
    p = host.prefix
    web, big, off = f"{p}web", f"{p}big", f"{p}off"
    folder = tmp_path / "manifests"
    write_manifest(folder, "web.yaml", vm_manifest(
        web, vcpus=1, memory="64MiB", extra="autostart: true",
        disks="""
            - {name: root, size: 16MiB}
            - {name: data, size: 32MiB, format: raw}
        """,
        networks=f"- {{network: {net}, mac: '52:54:00:aa:bb:01'}}"))
    write_manifest(folder, "nested/big.yml", vm_manifest(
        big, vcpus=1, max_vcpus=4, memory="64MiB", max_memory="128MiB"))
    write_manifest(folder, "off.yaml", vm_manifest(
        off, vcpus=2, memory="48MiB", state="stopped", disks="- {name: root, size: 8MiB}"))

    r = apply(host, folder)
    assert r.code == 0
    assert result_line(r.stdout, web) == f"{web}: created, started"
    assert result_line(r.stdout, off) == f"{off}: created"
    # QEMU boots with maxMemory and asks the guest to balloon down, which an OS-less guest never
    # does: reported, never as done.
    line = result_line(r.stdout, big)
    assert line.startswith(f"{big}: created, started, pending restart: memory"), line
    assert "balloon" in line

    # web: running, autostart, 2 disks of the declared sizes, one NIC on the test network
    dom = host.domain(web)
    assert dom.isActive() and dom.autostart() == 1
    live = root_of(host, web)
    assert vcpus(live) == (1, 1)
    assert kib(live, "memory") == kib(live, "currentMemory") == 64 * MiB
    assert capacity(host, f"{web}-root") == 16 * MiB
    assert capacity(host, f"{web}-data") == 32 * MiB
    sources = {d.find("source").get("volume"): d.find("driver").get("type")
               for d in live.iterfind("devices/disk")}
    assert sources == {f"{web}-root": "qcow2", f"{web}-data": "raw"}
    nics = live.findall("devices/interface")
    assert len(nics) == 1
    assert nics[0].find("source").get("network") == net
    assert nics[0].find("mac").get("address") == "52:54:00:aa:bb:01"

    # big: running with headroom for hot-plug and balloon
    assert host.domain(big).isActive() and host.domain(big).autostart() == 0
    live = root_of(host, big)
    assert vcpus(live) == (1, 4)
    assert kib(live, "memory") == 128 * MiB
    assert kib(root_of(host, big, inactive=True), "currentMemory") == 64 * MiB
    assert live.findall("devices/interface") == []

    # off: defined, not started
    assert not host.domain(off).isActive()
    config = root_of(host, off, inactive=True)
    assert vcpus(config) == (2, 2)
    assert kib(config, "memory") == kib(config, "currentMemory") == 48 * MiB
    assert capacity(host, f"{off}-root") == 8 * MiB

    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0
    assert web not in r.stdout and off not in r.stdout
    # the balloon the guest did not take up is pending, not re-applied
    line = plan_line(r.stdout, big)
    assert line.startswith("=") and "memory 128MiB -> 64MiB pending restart" in line
    assert "No changes to apply." in r.stdout and "blocked" not in r.stdout


# --- 2. live vCPU hot-plug and balloon ---------------------------------------------------------


def test_vcpus_hotplug_live_and_balloon_pending_restart(host, tmp_path):
    name = f"{host.prefix}hot"
    folder = tmp_path / "manifests"
    write_manifest(folder, "hot.yaml", vm_manifest(
        name, vcpus=1, max_vcpus=4, memory="64MiB", max_memory="128MiB"))
    assert apply(host, folder).code == 0
    first_id = domain_id(host, name)

    write_manifest(folder, "hot.yaml", vm_manifest(
        name, vcpus=2, max_vcpus=4, memory="96MiB", max_memory="128MiB"))
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 2
    line = plan_line(r.stdout, name)
    assert line.startswith("~") and "vcpus 1 -> 2 (live)" in line
    # the live value: the guest never ballooned down to 64MiB from the 128MiB it booted with
    assert "memory 128MiB -> 96MiB (live)" in line

    r = apply(host, folder)
    assert r.code == 0
    line = result_line(r.stdout, name)
    assert "pending restart" in line and "balloon" in line, line
    assert "converged" not in line
    assert "vcpus" not in line  # the hot-plug itself worked

    # vCPUs: live and persisted, on the same running domain
    assert domain_id(host, name) == first_id
    assert vcpus(root_of(host, name)) == (2, 4)
    assert vcpus(root_of(host, name, inactive=True)) == (2, 4)
    # memory: persisted; the guest has no balloon driver so the live value stays
    config = root_of(host, name, inactive=True)
    assert kib(config, "currentMemory") == 96 * MiB
    assert kib(config, "memory") == 128 * MiB

    # The next plan reports it pending and does not apply the balloon again.
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0
    line = plan_line(r.stdout, name)
    assert line.startswith("=") and "memory" in line and "pending restart" in line
    assert "(live)" not in line and "vcpus" not in line
    r = apply(host, folder)
    assert r.code == 0
    assert f"{name}:" not in r.stdout  # nothing was carried out
    assert domain_id(host, name) == first_id

    # Another live change keeps the record of the balloon the guest ignores.
    write_manifest(folder, "hot.yaml", vm_manifest(
        name, vcpus=3, max_vcpus=4, memory="96MiB", max_memory="128MiB"))
    r = apply(host, folder)
    assert r.code == 0
    line = result_line(r.stdout, name)
    assert "pending restart" in line and "memory" in line and "vcpus" not in line, line
    assert vcpus(root_of(host, name)) == (3, 4)
    assert domain_id(host, name) == first_id
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0
    line = plan_line(r.stdout, name)
    assert "memory 128MiB -> 96MiB pending restart" in line and "balloon" in line


# --- 3. vCPU unplug refused by the guest -------------------------------------------------------


def test_vcpu_unplug_refused_is_persisted_and_pending(host, tmp_path):
    name = f"{host.prefix}unplug"
    folder = tmp_path / "manifests"
    write_manifest(folder, "u.yaml", vm_manifest(name, vcpus=2, max_vcpus=4))
    assert apply(host, folder).code == 0
    first_id = domain_id(host, name)
    assert vcpus(root_of(host, name)) == (2, 4)

    write_manifest(folder, "u.yaml", vm_manifest(name, vcpus=1, max_vcpus=4))
    r = apply(host, folder)
    assert r.code == 0
    line = result_line(r.stdout, name)
    assert "pending restart" in line and "vcpus 2 -> 1 not applied live" in line, line

    assert domain_id(host, name) == first_id
    assert vcpus(root_of(host, name, inactive=True)) == (1, 4)
    assert vcpus(root_of(host, name)) == (2, 4)

    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0
    line = plan_line(r.stdout, name)
    assert line.startswith("=") and "vcpus 2 -> 1 pending restart" in line
    assert "(live)" not in line


# --- 4. maxMemory: restart needed --------------------------------------------------------------


def test_max_memory_needs_restart_live_policy_then_restart_policy(host, tmp_path):
    p = host.prefix
    keep, bounce = f"{p}keep", f"{p}bounce"
    folder = tmp_path / "manifests"
    write_manifest(folder, "keep.yaml", vm_manifest(keep, memory="64MiB"))
    write_manifest(folder, "bounce.yaml", vm_manifest(
        bounce, memory="64MiB", extra="updatePolicy: restart"))
    assert apply(host, folder).code == 0
    keep_id, bounce_id = domain_id(host, keep), domain_id(host, bounce)

    write_manifest(folder, "keep.yaml", vm_manifest(keep, memory="64MiB", max_memory="128MiB"))
    write_manifest(folder, "bounce.yaml", vm_manifest(
        bounce, memory="96MiB", max_memory="96MiB", extra="updatePolicy: restart"))
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 2
    line = plan_line(r.stdout, keep)
    assert line.startswith("~")
    assert "maxMemory 64MiB -> 128MiB needs a restart (updatePolicy: live)" in line
    line = plan_line(r.stdout, bounce)
    assert line.startswith("~") and line.endswith("restarts the VM")
    assert "maxMemory 64MiB -> 96MiB (restart)" in line

    r = apply(host, folder)
    assert r.code == 0
    line = result_line(r.stdout, keep)
    assert line.startswith(f"{keep}: updated, pending restart: ")
    assert "maxMemory 64MiB -> 128MiB needs a restart" in line
    assert result_line(r.stdout, bounce) == f"{bounce}: updated, forced off after 1s, started"

    # live policy: persisted; still the same running domain with the old maximum
    assert domain_id(host, keep) == keep_id
    assert kib(root_of(host, keep, inactive=True), "memory") == 128 * MiB
    assert kib(root_of(host, keep), "memory") == 64 * MiB
    # restart policy: a new domain ID running with the new maximum
    assert domain_id(host, bounce) != bounce_id
    assert kib(root_of(host, bounce), "memory") == 96 * MiB
    assert kib(root_of(host, bounce), "currentMemory") == 96 * MiB
    assert kib(root_of(host, bounce, inactive=True), "memory") == 96 * MiB

    # the waiting VM stays pending: not re-applied, not restarted
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 0
    line = plan_line(r.stdout, keep)
    assert line.startswith("=") and "maxMemory 64MiB -> 128MiB pending restart" in line
    assert bounce not in r.stdout
    r = apply(host, folder)
    assert r.code == 0 and f"{keep}:" not in r.stdout
    assert domain_id(host, keep) == keep_id

    # Switching it to updatePolicy: restart finishes the change (memory up to the new maximum,
    # which an OS-less guest holds without ballooning).
    write_manifest(folder, "keep.yaml", vm_manifest(
        keep, memory="128MiB", max_memory="128MiB", extra="updatePolicy: restart"))
    r = apply(host, folder)
    assert r.code == 0
    assert result_line(r.stdout, keep) == f"{keep}: updated, forced off after 1s, started"
    assert domain_id(host, keep) != keep_id
    live = root_of(host, keep)
    assert kib(live, "memory") == kib(live, "currentMemory") == 128 * MiB
    assert_converged(host, folder)


def test_restart_policy_does_not_restart_for_a_balloon_the_guest_ignores(host, tmp_path):
    name = f"{host.prefix}loop"
    folder = tmp_path / "manifests"
    write_manifest(folder, "l.yaml", vm_manifest(
        name, memory="64MiB", max_memory="128MiB", extra="updatePolicy: restart"))
    r = apply(host, folder)
    assert r.code == 0
    assert "balloon" in result_line(r.stdout, name)
    first_id = domain_id(host, name)
    r = plan(host, folder, "--detailed-exitcode")
    assert "restarts the VM" not in r.stdout
    assert r.code == 0
    assert apply(host, folder).code == 0
    assert domain_id(host, name) == first_id


# --- 5. destroy --------------------------------------------------------------------------------


def test_removed_manifest_destroys_only_that_vm(host, tmp_path):
    p = host.prefix
    stay, gone, wipe = f"{p}stay", f"{p}gone", f"{p}wipe"
    folder = tmp_path / "manifests"
    write_manifest(folder, "stay.yaml", vm_manifest(stay, disks="- {name: root, size: 8MiB}"))
    write_manifest(folder, "gone.yaml", vm_manifest(gone, disks="- {name: root, size: 8MiB}"))
    write_manifest(folder, "wipe.yaml", vm_manifest(wipe, disks="""
        - {name: root, size: 8MiB, reclaim: delete}
        - {name: keep, size: 8MiB}
    """))
    assert apply(host, folder).code == 0
    stay_id, wipe_id = domain_id(host, stay), domain_id(host, wipe)

    (folder / "gone.yaml").unlink()
    r = plan(host, folder)
    assert f"destroy (volumes retained: {gone}-root)" in plan_line(r.stdout, gone)
    r = apply(host, folder)
    assert r.code == 0
    assert f"{gone}: forced off after 1s, destroyed\n" in r.stdout
    assert not host.exists(gone)
    assert capacity(host, f"{gone}-root") == 8 * MiB  # retained by default
    assert domain_id(host, stay) == stay_id
    assert domain_id(host, wipe) == wipe_id
    assert capacity(host, f"{stay}-root") == 8 * MiB

    (folder / "wipe.yaml").unlink()
    r = apply(host, folder)
    assert r.code == 0
    assert f"{wipe}: forced off after 1s, destroyed\n" in r.stdout
    assert not host.exists(wipe)
    assert host.volume(f"{wipe}-root") is None  # reclaim: delete
    assert capacity(host, f"{wipe}-keep") == 8 * MiB
    assert domain_id(host, stay) == stay_id
    assert_converged(host, folder)


# --- 6. a domain the tool did not create --------------------------------------------------------


def test_hand_made_domain_with_a_manifest_name_is_a_conflict(host, tmp_path):
    name = f"{host.prefix}hand"
    root = etree.Element("domain", type="kvm")
    etree.SubElement(root, "name").text = name
    etree.SubElement(root, "memory", unit="MiB").text = "32"
    os_element = etree.SubElement(root, "os")
    etree.SubElement(os_element, "type", arch="x86_64").text = "hvm"
    host.conn.defineXML(etree.tostring(root, encoding="unicode"))
    before = host.xml(name, inactive=True)

    folder = tmp_path / "manifests"
    write_manifest(folder, "hand.yaml", vm_manifest(name, vcpus=2, memory="64MiB"))
    r = plan(host, folder)
    line = plan_line(r.stdout, name)
    assert line.startswith("!") and "conflict" in line
    assert r.code == 1

    r = apply(host, folder)
    assert r.code == 1
    assert host.xml(name, inactive=True) == before
    assert not host.domain(name).isActive()
    assert host.volume(f"{name}-root") is None


# --- 7. disks grow live, never shrink -----------------------------------------------------------


def test_disk_grows_live_and_shrink_is_refused(host, tmp_path):
    name = f"{host.prefix}disk"
    folder = tmp_path / "manifests"
    write_manifest(folder, "d.yaml", vm_manifest(name, disks="- {name: root, size: 16MiB}"))
    assert apply(host, folder).code == 0
    first_id = domain_id(host, name)

    write_manifest(folder, "d.yaml", vm_manifest(name, disks="- {name: root, size: 32MiB}"))
    r = plan(host, folder)
    assert "disk root 16MiB -> 32MiB (live)" in plan_line(r.stdout, name)
    r = apply(host, folder)
    assert r.code == 0
    assert result_line(r.stdout, name) == f"{name}: resized live"
    assert capacity(host, f"{name}-root") == 32 * MiB
    assert host.domain(name).blockInfo("vda")[0] == 32 * MiB  # what QEMU shows the guest
    assert domain_id(host, name) == first_id
    assert_converged(host, folder)

    config_before = host.xml(name, inactive=True)
    write_manifest(folder, "d.yaml", vm_manifest(name, disks="- {name: root, size: 8MiB}"))
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 1
    line = plan_line(r.stdout, name)
    assert line.startswith("!") and "disk root 32MiB -> 8MiB refused" in line
    r = apply(host, folder)
    assert r.code == 1
    assert capacity(host, f"{name}-root") == 32 * MiB
    assert domain_id(host, name) == first_id
    assert host.xml(name, inactive=True) == config_before


def test_stopped_vm_disk_grows_by_volume_resize(host, tmp_path):
    name = f"{host.prefix}cold"
    folder = tmp_path / "manifests"
    write_manifest(folder, "c.yaml", vm_manifest(
        name, state="stopped", disks="- {name: root, size: 8MiB, format: raw}"))
    assert apply(host, folder).code == 0
    write_manifest(folder, "c.yaml", vm_manifest(
        name, state="stopped", disks="- {name: root, size: 24MiB, format: raw}"))
    r = apply(host, folder)
    assert r.code == 0
    assert capacity(host, f"{name}-root") == 24 * MiB
    assert not host.domain(name).isActive()
    assert_converged(host, folder)


def test_a_size_the_manifest_changes_is_read_from_the_volume(host, tmp_path):
    # plan skips reading a stopped VM's volume size when the manifest asks for the size last
    # applied; once the manifest asks for another size, the real one is read. Grown by hand
    # meanwhile, the volume is larger than the new size: that is a shrink, refused.
    name = f"{host.prefix}hand"
    folder = tmp_path / "manifests"
    write_manifest(folder, "h.yaml", vm_manifest(
        name, state="stopped", disks="- {name: root, size: 8MiB, format: raw}"))
    assert apply(host, folder).code == 0
    host.volume(f"{name}-root").resize(32 * MiB, 0)
    write_manifest(folder, "h.yaml", vm_manifest(
        name, state="stopped", disks="- {name: root, size: 16MiB, format: raw}"))
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 1
    assert "disk root 32MiB -> 16MiB refused" in plan_line(r.stdout, name)
    assert apply(host, folder).code == 1
    assert capacity(host, f"{name}-root") == 32 * MiB


def test_a_running_vm_volume_size_is_always_read(host, tmp_path):
    # Only a stopped VM's unchanged size is taken from its record; a running VM's is read.
    name = f"{host.prefix}live"
    folder = tmp_path / "manifests"
    write_manifest(folder, "l.yaml", vm_manifest(name, disks="- {name: root, size: 16MiB}"))
    assert apply(host, folder).code == 0
    host.domain(name).blockResize("vda", 32 * MiB, 1)  # by hand, in bytes (flag 1)
    r = plan(host, folder, "--detailed-exitcode")
    assert r.code == 1
    assert "disk root 32MiB -> 16MiB refused" in plan_line(r.stdout, name)
