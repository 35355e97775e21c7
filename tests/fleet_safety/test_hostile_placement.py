"""Hostile: placement truth and one daemon per host, on libvirt's test driver.

hv-x = test:///default (shared per process, kept alive by the testdrv fixture) is the host
where VMs really are; the other hosts are test-driver node files of our own (each connection
opens a fresh host holding what the file says)."""

from __future__ import annotations

from conftest import run_cli, suspended, vm_manifest, write_manifest
from hostile_helpers import URI, as_host, host_yaml, node, preferring

from reconciler.adapters.manifests import load_desired
from reconciler.core.placement import place, score

# --- a Host manifest that turns invalid, is declared twice, or is removed ----------------------


def _selected_fleet(tmp_path, prefix, c_manifest_extra=""):  # type: ignore[no-untyped-def]
    """hv-a (an empty host of our own) and hv-c (test:///default), both pool=x; one VM
    selecting pool=x that hashing puts on hv-c."""
    m = tmp_path / "m"
    a_uri = node(tmp_path, "hv-a")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", a_uri, {"pool": "x"}))
    write_manifest(m, "hosts/hv-c.yaml", host_yaml("hv-c", URI, {"pool": "x"}, c_manifest_extra))
    name = preferring(prefix, "hv-c", "hv-a")
    write_manifest(m, "vm.yaml", vm_manifest(name, state="stopped",
                                             extra="hostSelector: {pool: x}"))
    return m, a_uri, name


def _break_host(m, how):  # type: ignore[no-untyped-def]
    c = m / "hosts/hv-c.yaml"
    if how == "typo":  # one character: GB for GiB
        c.write_text(c.read_text() + "  capacity: {memory: 512GB}\n")
    elif how == "declared-twice":  # a copy made to rename the file, the old one not yet removed
        (m / "hosts/hv-c-new.yaml").write_text(c.read_text())
    elif how == "removed":  # decommissioned in the repository before its VMs were drained
        c.unlink()


def _check_duplicate(testdrv, prefix, tmp_path, how):  # type: ignore[no-untyped-def]
    m, a_uri, name = _selected_fleet(tmp_path, prefix)
    assert as_host(tmp_path, "hv-c", URI, "apply", m).code == 0
    assert testdrv.lookupByName(name)  # it runs on hv-c
    # hv-a's reconciler runs too (it knows the fleet: adapters.knownhosts)
    assert "No changes" in as_host(tmp_path, "hv-a", a_uri, "apply", m).stdout
    _break_host(m, how)
    r = as_host(tmp_path, "hv-a", a_uri, "plan", m)
    # hv-c still runs the VM (its reconciler plans nothing: it is no longer in the fleet), so
    # hv-a must not make a second one (an empty one at that: its disks are on hv-c).
    assert f"+ {name}" not in r.stdout, r.stdout
    assert "to create" not in r.stdout or "0 to create" in r.stdout


def test_a_typo_in_a_host_manifest_never_creates_a_second_copy_of_its_vms(testdrv, prefix,
                                                                          tmp_path):
    """FINDING: hv-c's Host manifest gets a typo (512GB): it is dropped from the fleet, its
    selected VMs are placed on hv-a, and hv-a creates them, while they still run on hv-c (hv-a
    looks for them only on the valid Hosts)."""
    _check_duplicate(testdrv, prefix, tmp_path, "typo")


def test_a_host_declared_twice_never_creates_a_second_copy_of_its_vms(testdrv, prefix,
                                                                      tmp_path):
    """FINDING: the same as a typo: a Host declared in two files is applied from neither."""
    _check_duplicate(testdrv, prefix, tmp_path, "declared-twice")


def test_removing_a_host_manifest_moves_its_vms_never_recreates_them(testdrv, prefix,
                                                                     tmp_path):
    """FINDING: README: "cordoning or removing a host moves only its own VMs". Removing hv-c's
    manifest does not move its VM (hv-c plans nothing once out of the fleet): hv-a created a
    new, empty one while the VM kept running on hv-c. Now hv-a remembers hv-c and says the VM
    is stranded there."""
    _check_duplicate(testdrv, prefix, tmp_path, "removed")
    m = tmp_path / "m"
    r = as_host(tmp_path, "hv-a", node(tmp_path, "hv-a"), "plan", m)
    assert "it runs on host hv-c, which the repository no longer declares" in r.stdout
    assert r.code == 1


def test_two_host_manifests_with_one_uri_never_hide_a_running_vm(testdrv, prefix, tmp_path):
    """FINDING: hv-a's URI is pasted from hv-b's Host manifest. Nothing refuses two Hosts with
    one URI, so hv-b looks for the VM "on hv-a" by reading itself, and creates a second copy of
    the VM that runs on the real hv-a."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    name = f"{prefix}web"
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-a"))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    # the commit that moves web to hv-b also pastes hv-b's URI into hv-a's manifest
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", b_uri))
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-b"))
    r = as_host(tmp_path, "hv-b", b_uri, "plan", m)
    assert f"+ {name}" not in r.stdout, "a second copy of a VM that runs on hv-a"


# --- placement: who moves -----------------------------------------------------------------------


def test_adding_a_host_moves_vms_only_to_the_added_host_also_with_capacity(tmp_path, prefix):
    """FINDING (README "A host added to the fleet takes only the VMs for which it scores best
    ..., every other VM stays where it is"): with a capacity limit, the room a VM leaves on an
    old host is taken by another VM, which then moves between two old hosts."""
    names = None
    for i in range(5000):
        v1, v2 = f"app{i:04d}-1", f"app{i:04d}-2"
        if (score("hv-a", v1) > score("hv-b", v1) and score("hv-a", v2) > score("hv-b", v2)
                and score("hv-c", v1) > score("hv-a", v1)
                and score("hv-a", v2) > score("hv-c", v2)):
            names = v1, v2
            break
    assert names is not None

    def placement(hosts: tuple[str, ...]) -> dict[str, str | None]:
        m = tmp_path / "-".join(hosts)
        for h in hosts:
            write_manifest(m, f"hosts/{h}.yaml", host_yaml(
                h, f"test:///{h}", {"pool": "x"}, "capacity: {vms: 1}" if h == "hv-a" else ""))
        for v in names:
            write_manifest(m, f"{v}.yaml", vm_manifest(v, extra="hostSelector: {pool: x}"))
        inputs = load_desired(m)
        assert not inputs.problems, inputs.problems
        return {n: p.host for n, p in place(inputs.vms, inputs.hosts).items()}

    before, after = placement(("hv-a", "hv-b")), placement(("hv-a", "hv-b", "hv-c"))
    moved = {n: (before[n], after[n]) for n in names if before[n] != after[n]}
    # README: a VM moves to the added host, or (capacity limits) into room another left, on
    # a host it ranks higher than the one it was on: closer to its first choice, never away
    assert moved
    for name, (old, new) in moved.items():
        assert new == "hv-c" or score(new, name) > score(old, name), (name, old, new)


def test_a_typo_in_one_vm_manifest_never_moves_another_vm(testdrv, prefix, tmp_path):
    """FINDING: "Never destroy because of bad input". v1's manifest gets a typo (it is
    dropped, held back from destruction as promised) but the room it held on hv-a is given to
    v2, which hv-b then moves (its volumes deleted here at the end) because of the typo."""
    v1 = v2 = ""
    for i in range(5000):
        a, b = f"{prefix}v{i:04d}-1", f"{prefix}v{i:04d}-2"
        if score("hv-a", a) > score("hv-b", a) and score("hv-a", b) > score("hv-b", b):
            v1, v2 = a, b
            break
    m = tmp_path / "m"
    a_uri = node(tmp_path, "hv-a")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", a_uri, {"pool": "x"},
                                                   "capacity: {vms: 1}"))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", URI, {"pool": "x"}))
    for v in (v1, v2):
        write_manifest(m, f"{v}.yaml", vm_manifest(v, state="stopped",
                                                   extra="hostSelector: {pool: x}"))
    assert as_host(tmp_path, "hv-b", URI, "apply", m).code == 0
    assert testdrv.lookupByName(v2)  # v1 holds hv-a's one place: v2 runs on hv-b
    assert "No changes" in as_host(tmp_path, "hv-b", URI, "plan", m).stdout
    write_manifest(m, f"{v1}.yaml", vm_manifest(v1, state="stopped", memory="64MB",
                                                extra="hostSelector: {pool: x}"))
    r = as_host(tmp_path, "hv-b", URI, "plan", m)
    assert r.code == 1  # the typo is reported
    assert f"> {v2}" not in r.stdout, "a typo in v1's manifest moves v2"


# --- suspended VMs ------------------------------------------------------------------------------


def test_a_suspended_vm_is_never_moved(testdrv, prefix, tmp_path):
    """FINDING: README "Maintenance": while reconciler/suspend is "true", nothing creates,
    changes, restarts or starts the VM. A suspended VM whose host changes is moved anyway
    (cold: undefined here, its volumes deleted here)."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    name = f"{prefix}db"
    write_manifest(m, "db.yaml", vm_manifest(name, state="stopped", extra="host: hv-a"))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    write_manifest(m, "db.yaml", suspended(vm_manifest(name, state="stopped",
                                                       extra="host: hv-b")))
    r = as_host(tmp_path, "hv-a", URI, "plan", m)
    assert f"> {name}" not in r.stdout, "the plan moves a suspended VM"
    r = as_host(tmp_path, "hv-a", URI, "apply", m)
    assert f"{name}: moved" not in r.stdout
    assert testdrv.lookupByName(name)  # left as it is


# --- an interrupted cold move -------------------------------------------------------------------


def test_a_cold_move_interrupted_after_define_there_is_finished(testdrv, prefix, tmp_path):
    """FINDING (Safety promise 9, README "A move is interrupted ... the next reconcile finds it
    still leaving and starts the move again"): a cold move killed between "define there" and
    "undefine here" leaves the very same domain (same UUID, same mark) on both hosts. The next
    run does not finish the move: it is blocked forever ("hv-b already has a domain")."""
    import libvirt

    m = tmp_path / "m"
    name = f"{prefix}web"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-a"))
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    # what DEFINE_THERE did before the run was killed: the definition, mark included, there
    xml = testdrv.lookupByName(name).XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE)
    b_uri = node(tmp_path, "hv-b", domains=(xml,))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-b"))
    r = as_host(tmp_path, "hv-a", URI, "plan", m)
    assert "already has a domain" not in r.stdout, (
        "the move it started itself is refused as a name taken: never finished")
    assert (f"> {name}   move hv-a -> hv-b (cold move, finished: it is defined there)"
            in r.stdout)


# --- what plans and status say ------------------------------------------------------------------


def test_a_fleet_plan_never_shows_a_create_its_host_would_not_make(testdrv, prefix, tmp_path):
    """FINDING: README: "Every host is planned at once, read-only, by the same code as its own
    reconciler" and "none of them creates a VM while it cannot tell whether the down host runs
    it". hv-b's own plan blocks the VM (hv-a cannot be read); the fleet plan shows it as
    `+ web`, "1 to create"."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", f"test://{tmp_path}/down.xml"))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    name = f"{prefix}web"
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-b"))
    own = as_host(tmp_path, "hv-b", b_uri, "plan", m)
    assert f"! {name}" in own.stdout and "cannot tell whether it already runs" in own.stdout
    r = run_cli("plan", "--fleet", m)
    print(r.stdout)
    section = r.stdout.split("Host hv-b (")[1]
    assert f"+ {name}" not in section, "the fleet plan shows a create hv-b would not make"
    assert "1 to create" not in r.stdout


def test_status_fleet_never_says_in_sync_while_a_vm_would_be_destroyed(testdrv, prefix,
                                                                        tmp_path):
    """FINDING: db's manifest is deleted: hv-a's plan destroys it, yet `status --fleet`
    lists only web, "in sync", and exits 0 (all in sync)."""
    m = tmp_path / "m"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    for vm in ("web", "db"):
        write_manifest(m, f"{vm}.yaml", vm_manifest(f"{prefix}{vm}", state="stopped",
                                                    extra="host: hv-a"))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    (m / "db.yaml").unlink()
    plan = run_cli("plan", "--fleet", m)
    assert f"- {prefix}db" in plan.stdout  # the fleet plan destroys it
    r = run_cli("status", "--fleet", "--manifests", m)
    print(r.stdout)
    assert f"{prefix}db" in r.stdout, "a VM about to be destroyed is not in the table"
    assert r.code != 0, "exit 0: every VM in sync"


def test_status_fleet_never_says_in_sync_with_an_invalid_manifest(testdrv, prefix, tmp_path):
    """FINDING: web's manifest gets a typo. `status --fleet` prints an empty table and exits 0
    (status: "1 ... invalid manifests"); web is not even listed."""
    m = tmp_path / "m"
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    name = f"{prefix}web"
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", extra="host: hv-a"))
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    write_manifest(m, "web.yaml", vm_manifest(name, state="stopped", memory="64MB",
                                              extra="host: hv-a"))
    r = run_cli("status", "--fleet", "--manifests", m)
    print(r.stdout, r.stderr)
    assert r.code == 1, "an invalid manifest: status exits 1"


def _blocked_move_fleet(testdrv, prefix, tmp_path):  # type: ignore[no-untyped-def]
    """web (a thin 200GiB disk) runs on hv-a; it is moved to hv-b, whose pool has 100GiB free
    (the test driver's pools are all that size)."""
    m = tmp_path / "m"
    b_uri = node(tmp_path, "hv-b")
    write_manifest(m, "hosts/hv-a.yaml", host_yaml("hv-a", URI))
    write_manifest(m, "hosts/hv-b.yaml", host_yaml("hv-b", b_uri))
    name = f"{prefix}web"

    def web(on: str) -> None:
        write_manifest(m, "web.yaml", vm_manifest(
            name, state="stopped", extra=f"host: {on}",
            disks="- name: root\n  size: 200GiB\n  pool: default-pool"))

    web("hv-a")
    assert as_host(tmp_path, "hv-a", URI, "apply", m).code == 0
    web("hv-b")
    return m, name


def test_plan_detailed_exitcode_is_not_in_sync_while_a_move_is_blocked(testdrv, prefix,
                                                                       tmp_path):
    """FINDING: the move is blocked (no room on hv-b): the VM is not where the repository
    says and apply exits 1, yet `plan --detailed-exitcode` exits 0, "no changes", on the host
    (a create refused on the host exits 1 there)."""
    m, name = _blocked_move_fleet(testdrv, prefix, tmp_path)
    r = as_host(tmp_path, "hv-a", URI, "plan", m, "--detailed-exitcode")
    assert f"! {name}   move to hv-b blocked: pool 'default-pool' on hv-b has 100GiB free" \
        in r.stdout
    assert r.code != 0, "exit 0: no changes, nothing refused"


def test_fleet_plan_detailed_exitcode_is_not_in_sync_while_a_move_is_blocked(testdrv, prefix,
                                                                             tmp_path):
    """FINDING: the same over the fleet: `plan --fleet --detailed-exitcode` exits 0."""
    m, _name = _blocked_move_fleet(testdrv, prefix, tmp_path)
    r = run_cli("plan", "--fleet", "--detailed-exitcode", m)
    print(r.stdout)
    assert "move to hv-b blocked" in r.stdout
    assert "1 blocked" in r.stdout
    assert r.code != 0, "exit 0: no changes, nothing refused"
