"""`reconciler validate`: what a user sees for good and bad manifests, and the defaults applied.

The bad manifests live in ``invalid/``, one file per case; each ends with the exact lines
`validate` must print for it, as ``# expect: LINE:COL: FIELD: MESSAGE`` comments.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import run_cli, vm_manifest, write_manifest

from reconciler.adapters import manifests as loader
from reconciler.adapters.manifests import load_desired
from reconciler.core.errors import Problem
from reconciler.core.model.common import Source
from reconciler.core.model.vm import DesiredVM, Disk, Nic, PowerState, VMSpec
from reconciler.core.validate.checks import validate

INVALID = Path(__file__).parent / "invalid"
CASES = sorted(INVALID.glob("*.yaml"))
MiB, GiB = 1 << 20, 1 << 30


def expected_lines(case: Path, shown: str) -> list[str]:
    prefix = "# expect: "
    lines = [f"{shown}:{line.removeprefix(prefix)}"
             for line in case.read_text().splitlines() if line.startswith(prefix)]
    assert lines, f"{case.name} has no '# expect:' lines"
    return lines


def line_of(problem: dict) -> str:
    """A JSON problem as the text line it must match."""
    return str(Problem(**problem))


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Paths are shown relative to the working directory, as a user would type them."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# --- the table of bad manifests ------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_invalid_manifest_prints_every_error(workdir: Path, case: Path) -> None:
    (workdir / "manifests").mkdir()
    shutil.copy(case, workdir / "manifests")
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == expected_lines(case, f"manifests/{case.name}")
    assert result.stderr == ""
    assert result.code == 1


@pytest.mark.parametrize("case", CASES, ids=lambda p: p.stem)
def test_invalid_manifest_as_json(workdir: Path, case: Path) -> None:
    (workdir / "manifests").mkdir()
    shutil.copy(case, workdir / "manifests")
    result = run_cli("validate", "--format", "json", "manifests")
    assert result.code == 1
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["valid"] is False
    assert [line_of(p) for p in doc["problems"]] == expected_lines(case,
                                                                   f"manifests/{case.name}")
    assert all(list(p) == ["file", "line", "column", "field", "message"]
               for p in doc["problems"])


def test_all_cases_in_one_run_report_every_error(workdir: Path) -> None:
    shutil.copytree(INVALID, workdir / "manifests")
    result = run_cli("validate", "manifests")
    expected = [line for case in CASES for line in expected_lines(case, f"manifests/{case.name}")]
    assert result.stdout.splitlines() == expected
    assert result.code == 1
    # only the VM that passed (after-separator-1) is counted in JSON: duplicate-keys has no
    # schema error, but a document with a load problem is never applied
    doc = json.loads(run_cli("validate", "--format", "json", "manifests").stdout)
    assert (doc["valid"], doc["vms"], len(doc["problems"])) == (False, 1, len(expected))


def test_json_problem_exactly(workdir: Path) -> None:
    write_manifest(workdir, "manifests/web.yaml", vm_manifest("web-01", memory="2GB"))
    result = run_cli("validate", "--format", "json", "manifests")
    assert result.code == 1
    assert json.loads(result.stdout) == {
        "valid": False,
        "vms": 0, "networks": 0, "pools": 0,
        "problems": [{"file": "manifests/web.yaml", "line": 7, "column": 3,
                      "field": "spec.memory",
                      "message": "'2GB' is not a quantity; write 2GiB or 2048MiB"}],
    }


# --- across files --------------------------------------------------------------------------------


def test_same_name_in_two_files_names_the_first(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01"))
    write_manifest(workdir, "manifests/sub/b.yaml",
                   vm_manifest("db-01") + "---\n" + vm_manifest("web-01"))
    write_manifest(workdir, "manifests/sub/c.yaml", vm_manifest("web-01", memory="2GB"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/sub/b.yaml:14:3: metadata.name: 'web-01' is already declared in "
        "manifests/a.yaml:4; names must be unique, and neither is applied until one is renamed",
        # a duplicate is reported even when its document has other errors
        "manifests/sub/c.yaml:4:3: metadata.name: 'web-01' is already declared in "
        "manifests/a.yaml:4; names must be unique, and neither is applied until one is renamed",
        "manifests/sub/c.yaml:7:3: spec.memory: '2GB' is not a quantity; write 2GiB or 2048MiB",
    ]
    assert result.code == 1


def test_same_name_twice_in_one_file(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml",
                   vm_manifest("web-01") + "---\n" + vm_manifest("web-01"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/a.yaml:14:3: metadata.name: 'web-01' is already declared in "
        "manifests/a.yaml:4; names must be unique, and neither is applied until one is renamed"]
    assert result.code == 1


def test_a_name_claimed_twice_is_applied_from_neither_file(workdir: Path) -> None:
    # Applying either would flip the VM between the two specs on every run.
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01", vcpus=1) +
                   "---\n" + vm_manifest("db-01"))
    write_manifest(workdir, "manifests/b.yaml", vm_manifest("web-01", vcpus=2))
    write_manifest(workdir, "manifests/net.yaml", NETWORK.format(name="lan", bridge="br-a") +
                   "---\n" + NETWORK.format(name="lan", bridge="br-b"))
    validated = load_desired(workdir / "manifests")
    assert [vm.spec.name for vm in validated.vms] == ["db-01"]
    assert validated.networks == ()
    assert [(p.file, p.line, p.field) for p in validated.problems] == [
        ("manifests/b.yaml", 4, "metadata.name"), ("manifests/net.yaml", 11, "metadata.name")]


NETWORK = """\
apiVersion: reconciler/v1
kind: Network
metadata:
  name: {name}
spec:
  bridge: {bridge}
"""


def test_validate_counts_each_kind(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01") + "---\n" +
                   NETWORK.format(name="lan", bridge="br-lan"))
    result = run_cli("validate", "manifests")
    assert (result.code, result.stdout) == (0, "1 VM, 1 network valid.\n")


def test_two_networks_on_one_bridge_apply_neither(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", NETWORK.format(name="lan", bridge="br0"))
    write_manifest(workdir, "manifests/b.yaml", NETWORK.format(name="dmz", bridge="br0"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/b.yaml:6:3: spec.bridge: bridge 'br0' is already used by network 'lan' "
        "(manifests/a.yaml)"]
    assert result.code == 1
    assert load_desired(workdir / "manifests").networks == ()  # neither is applied


def test_a_document_with_a_duplicate_key_is_never_applied(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01") + "  vcpus: 4\n")
    validated = load_desired(workdir / "manifests")
    assert validated.vms == ()
    assert [str(p) for p in validated.problems] == [
        "manifests/a.yaml:10:3: spec.vcpus: duplicate key"]


def test_one_mac_on_two_vms_is_refused_and_neither_is_applied(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml",
                   vm_manifest("web-01", networks="- {network: lan, mac: '52:54:00:AA:00:01'}"))
    write_manifest(workdir, "manifests/b.yaml",
                   vm_manifest("web-02", networks="- {network: lan, mac: '52:54:00:aa:00:01'}")
                   + "---\n" + vm_manifest("web-03"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/b.yaml:11:22: spec.networks[0].mac: MAC 52:54:00:aa:00:01 is also used by VM "
        "'web-01' (manifests/a.yaml:4); give each NIC its own MAC"]
    assert result.code == 1
    assert [vm.spec.name for vm in load_desired(workdir / "manifests").vms] == ["web-03"]


def test_two_vms_whose_volumes_would_share_a_name_are_refused(workdir: Path) -> None:
    # Volumes are <vm>-<disk> and <vm>-cidata: "a" + disk "b-c" is "a-b-c", as is "a-b" + "c";
    # "p" + disk "q-cidata" is the seed of VM "p-q".
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("a", disks="- {name: b-c, size: 1GiB}"))
    write_manifest(workdir, "manifests/b.yaml", vm_manifest("a-b", disks="- {name: c, size: 1GiB}"))
    write_manifest(workdir, "manifests/c.yaml", vm_manifest(
        "p", disks="- {name: q-cidata, size: 1GiB}"))
    write_manifest(workdir, "manifests/d.yaml", vm_manifest(
        "p-q", extra="cloudInit: {userData: '#cloud-config'}"))
    # the same names in different pools do not collide
    write_manifest(workdir, "manifests/e.yaml", vm_manifest(
        "x", disks="- {name: y-z, size: 1GiB, pool: fast}"))
    write_manifest(workdir, "manifests/f.yaml", vm_manifest("x-y", disks="- {name: z, size: 1GiB}"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/b.yaml:11:8: spec.disks[0].name: volume 'a-b-c' in pool 'default' is also the "
        "disk volume of VM 'a' (manifests/a.yaml:4); rename the disk or the VM",
        "manifests/d.yaml:10:3: spec.cloudInit: volume 'p-q-cidata' in pool 'default' is also the "
        "disk volume of VM 'p' (manifests/c.yaml:4); rename the disk or the VM",
    ]
    assert result.code == 1
    assert [vm.spec.name for vm in load_desired(workdir / "manifests").vms] == ["x", "x-y"]


def test_cloud_init_values_never_appear_in_messages(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01", extra="""\
        cloudInit:
          userData: [ "password: hunter2" ]
          networkConfig: 12345
          metaData: "ssh-key AAAAsecret"
        """))
    result = run_cli("validate", "manifests")
    assert result.code == 1
    assert "hunter2" not in result.stdout and "12345" not in result.stdout
    assert "AAAAsecret" not in result.stdout
    assert result.stdout.splitlines() == [
        "manifests/a.yaml:11:5: spec.cloudInit.userData: expected a string, got a list",
        "manifests/a.yaml:12:5: spec.cloudInit.networkConfig: expected a string, got a number; "
        "quote it",
        "manifests/a.yaml:13:5: spec.cloudInit.metaData: expected a mapping, got a value (not "
        "shown: cloud-init data)",
    ]


def test_long_values_are_cut_in_messages(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml",
                   vm_manifest("web-01").replace("VirtualMachine", "x" * 5000))
    result = run_cli("validate", "manifests")
    (line,) = result.stdout.splitlines()
    assert line.startswith("manifests/a.yaml:2:1: kind: unknown kind 'xxxx")
    assert line.endswith("...; expected one of: VirtualMachine, Network, StoragePool, Host")
    assert len(line) < 200


def test_long_values_under_spec_are_not_shown(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("web-01", state="x" * 5000))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/a.yaml:8:3: spec.state: expected one of: running, stopped, got a string (not "
        "shown)"]


def test_errors_in_several_files_are_all_reported(workdir: Path) -> None:
    write_manifest(workdir, "manifests/a.yaml", vm_manifest("a", vcpus=4, max_vcpus=2))
    write_manifest(workdir, "manifests/b.yaml", "a: [\n")
    write_manifest(workdir, "manifests/c.yaml", vm_manifest("c", memory="8MiB"))
    write_manifest(workdir, "manifests/d.yaml", vm_manifest("d"))
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == [
        "manifests/a.yaml:6:3: spec.vcpus: 4 exceeds maxVcpus 2",
        "manifests/b.yaml:2:1: YAML syntax error: did not find expected node content"
        " (while parsing a flow node)",
        "manifests/c.yaml:7:3: spec.memory: must be at least 16MiB",
    ]
    assert result.code == 1


# --- valid input ---------------------------------------------------------------------------------


def test_valid_directory_exits_0(workdir: Path) -> None:
    write_manifest(workdir, "manifests/web.yaml", vm_manifest(
        "web-01", vcpus=2, max_vcpus=8, memory="2GiB", max_memory="8GiB",
        disks="- name: root\n  size: 20GiB\n  image: debian-12.qcow2",
        networks="- network: default\n  mac: '52:54:00:12:34:56'\n- bridge: br0"))
    write_manifest(workdir, "manifests/db.yml", vm_manifest("db-01", memory="16MiB"))
    result = run_cli("validate", "manifests")
    assert (result.code, result.stdout, result.stderr) == (0, "2 VMs valid.\n", "")
    result = run_cli("validate", "--format", "json", "manifests")
    assert result.code == 0
    assert json.loads(result.stdout) == {"valid": True, "vms": 2, "networks": 0, "pools": 0,
                                         "problems": []}


def test_the_spec_example_is_valid(workdir: Path) -> None:
    write_manifest(workdir, "manifests/web.yaml", """\
        apiVersion: reconciler/v1
        kind: VirtualMachine
        metadata:
          name: web-01              # the libvirt domain name
          labels: {tier: web}       # optional, string -> string
          annotations: {}           # optional
        spec:
          vcpus: 2
          maxVcpus: 8
          memory: 2GiB
          maxMemory: 8GiB
          state: running
          autostart: false
          updatePolicy: live
          shutdownTimeout: 60s
          protect: false
          disks:
            - name: root
              size: 20GiB
              pool: default
              format: qcow2
              image: debian-12.qcow2
              bus: virtio
              reclaim: retain
          networks:
            - network: default
              mac: "52:54:00:12:34:56"
              model: virtio
          cloudInit:
            userData: |
              #cloud-config
            metaData: {}
            networkConfig: ""
          graphics: none
        """)
    result = run_cli("validate", "manifests")
    assert (result.code, result.stdout, result.stderr) == (0, "1 VM valid.\n", "")


def test_hidden_and_non_yaml_files_are_skipped(workdir: Path) -> None:
    bad = "this: [is not valid\n"
    write_manifest(workdir, "manifests/web.yaml", vm_manifest("web-01"))
    write_manifest(workdir, "manifests/deep/er/db.yml", vm_manifest("db-01"))
    for name in [".hidden.yaml", ".git/config.yaml", ".cache/deep/x.yml", "deep/.old/y.yaml",
                 "notes.txt", "web.yaml~", "web.yaml.orig", "README.md", "schema.json"]:
        write_manifest(workdir, f"manifests/{name}", bad)
    result = run_cli("validate", "manifests")
    assert (result.code, result.stdout, result.stderr) == (0, "2 VMs valid.\n", "")


def test_multi_document_file(workdir: Path) -> None:
    write_manifest(workdir, "manifests/all.yaml",
                   "---\n" + vm_manifest("a") + "---\n# empty\n---\n" + vm_manifest("b")
                   + "...\n---\n" + vm_manifest("c", memory="1GB"))
    result = run_cli("validate", "manifests")
    # 1 + 9 + 3 + 9 + 2 lines before the third document; its memory is its 7th line. The empty
    # document between them is skipped, as kubectl skips it.
    assert result.stdout.splitlines() == [
        "manifests/all.yaml:31:3: spec.memory: '1GB' is not a quantity; write 1GiB or 1024MiB"]
    assert result.code == 1
    vms = load_desired(workdir / "manifests").vms
    assert [(vm.spec.name, vm.source.line) for vm in vms] == [("a", 5), ("b", 17)]


def test_one_file_can_be_validated(workdir: Path) -> None:
    write_manifest(workdir, "manifests/web.yaml", vm_manifest("web-01"))
    write_manifest(workdir, "manifests/bad.yaml", "nope\n")
    result = run_cli("validate", "manifests/web.yaml")
    assert (result.code, result.stdout) == (0, "1 VM valid.\n")


def test_empty_directory_is_valid(workdir: Path) -> None:
    (workdir / "manifests").mkdir()
    result = run_cli("validate", "manifests")
    assert (result.code, result.stdout) == (0, "0 VMs valid.\n")


def test_missing_path(workdir: Path) -> None:
    result = run_cli("validate", "nope")
    assert (result.code, result.stdout) == (1, "nope: no such file or directory\n")


def test_unreadable_file(workdir: Path) -> None:
    (workdir / "manifests").mkdir()
    (workdir / "manifests" / "bin.yaml").write_bytes(b"\xff\xfe\x00")
    write_manifest(workdir, "manifests/ok.yaml", vm_manifest("ok"))
    result = run_cli("validate", "manifests")
    # (FF FE is UTF-16's byte order mark: the lone byte after it is half a character)
    assert result.stdout.splitlines() == [
        "manifests/bin.yaml:1:1: not UTF-16 text: byte 0x00 cannot be decoded; save the file as "
        "UTF-8"]
    assert result.code == 1


# --- limits: the edges that are still valid, and the first step beyond -------------------------


@pytest.mark.parametrize(("manifest", "problems"), [
    (vm_manifest("a", memory="16MiB"), []),
    (vm_manifest("a", memory="16Mi"), []),
    (vm_manifest("a", memory="16383KiB"), ["7:3: spec.memory: must be at least 16MiB"]),
    (vm_manifest("a", memory="0MiB"), ["7:3: spec.memory: must be at least 16MiB"]),
    (vm_manifest("a", vcpus=4, max_vcpus=4), []),
    (vm_manifest("a", vcpus=5, max_vcpus=4), ["6:3: spec.vcpus: 5 exceeds maxVcpus 4"]),
    (vm_manifest("a", vcpus=1024), []),
    (vm_manifest("a", vcpus=1025), ["6:3: spec.vcpus: 1025 is greater than the maximum of 1024"]),
    (vm_manifest("a", memory="1GiB", max_memory="1024MiB"), []),
    (vm_manifest("a", memory="1GiB", max_memory="1023MiB"),
     ["7:3: spec.memory: 1GiB exceeds maxMemory 1023MiB"]),
    (vm_manifest("a" * 63), []),
    (vm_manifest("a" * 64), [f"4:3: metadata.name: '{'a' * 64}' is not a valid name: use lowercase"
                             " letters, digits and '-', start and end with a letter or digit, at"
                             " most 63 characters"]),
    (vm_manifest("x"), []),
    (vm_manifest("0"), ["4:3: metadata.name: expected a string, got 0; quote it"]),
    (vm_manifest("'0'"), []),
    (vm_manifest("a-"), ["4:3: metadata.name: 'a-' is not a valid name: use lowercase letters,"
                         " digits and '-', start and end with a letter or digit, at most 63"
                         " characters"]),
    (vm_manifest("a", disks=f"- name: {'d' * 32}\n  size: 1KiB"), []),
    (vm_manifest("a", disks=f"- name: {'d' * 33}\n  size: 1KiB"),
     [f"11:7: spec.disks[0].name: '{'d' * 33}' is not a valid name: use lowercase letters, digits"
      " and '-', start and end with a letter or digit, at most 32 characters"]),
    (vm_manifest("a", disks="- name: d\n  size: 0Ki"),
     ["12:7: spec.disks[0].size: must be larger than 0"]),
    (vm_manifest("a", networks="- network: n\n  mac: '02:00:00:00:00:01'"), []),
    (vm_manifest("a", networks="- network: n\n  mac: '03:00:00:00:00:01'"),
     ["12:7: spec.networks[0].mac: a multicast MAC cannot be used; the first byte must be even"]),
    (vm_manifest("a", networks="- network: n\n  mac: '52:54:00:12:34'"),
     ["12:7: spec.networks[0].mac: '52:54:00:12:34' is not a MAC address; write six hex pairs"
      " like 52:54:00:12:34:56"]),
    (vm_manifest("a", extra="graphics: spice\nautostart: true"), []),
])
def test_limits(workdir: Path, manifest: str, problems: list[str]) -> None:
    write_manifest(workdir, "manifests/a.yaml", manifest)
    result = run_cli("validate", "manifests")
    assert result.stdout.splitlines() == (
        [f"manifests/a.yaml:{p}" for p in problems] or ["1 VM valid."])
    assert result.code == (1 if problems else 0)


# --- defaults, as the rest of the tool sees them ------------------------------------------------


def test_schema_defaults_are_applied(workdir: Path) -> None:
    write_manifest(workdir, "manifests/sub/web.yaml", """\
        apiVersion: reconciler/v1
        kind: VirtualMachine
        metadata:
          name: web-01
        spec:
          vcpus: 2
          memory: 1Gi
          disks:
            - {name: root, size: 10GiB}
          networks:
            - network: default
            - bridge: br0
              mac: "52:54:00:AB:CD:EF"
        """)
    result = load_desired(workdir / "manifests")
    assert result.problems == ()
    (vm,) = result.vms
    assert vm.spec == VMSpec(
        name="web-01", vcpus=2, max_vcpus=2, memory=GiB, max_memory=GiB,
        state=PowerState.RUNNING, autostart=False, update_policy="live", shutdown_timeout=60,
        protect=False,
        disks=(Disk(name="root", size=10 * GiB, pool="default", format="qcow2", image=None,
                    bus="virtio", reclaim="retain"),),
        nics=(Nic(network="default", bridge=None, mac=None, model="virtio"),
              Nic(network=None, bridge="br0", mac="52:54:00:ab:cd:ef", model="virtio")),
        graphics="none", labels=())
    assert vm.source == Source("manifests/sub/web.yaml", "sub/web.yaml", 4)
    assert vm.applied == {
        "vcpus": 2, "maxVcpus": 2, "memory": GiB, "maxMemory": GiB, "state": "running",
        "autostart": False, "updatePolicy": "live", "shutdownTimeout": 60, "protect": False,
        "graphics": "none", "firmware": "bios", "boot": ["hd"],
        "disks": [{"name": "root", "size": 10 * GiB, "pool": "default", "format": "qcow2",
                   "image": None, "bus": "virtio", "reclaim": "retain"}],
        "networks": [{"network": "default", "bridge": None, "mac": None, "model": "virtio"},
                     {"network": None, "bridge": "br0", "mac": "52:54:00:ab:cd:ef",
                      "model": "virtio"}],
    }


def test_explicit_values_win_over_defaults(workdir: Path) -> None:
    text = vm_manifest(
        "db-01", vcpus=2, max_vcpus=4, memory="1GiB", max_memory="4GiB", state="stopped",
        extra="autostart: true\nupdatePolicy: restart\nprotect: true\ngraphics: vnc",
        disks="- name: data\n  size: 1TiB\n  pool: fast\n  format: raw\n  bus: scsi\n"
              "  reclaim: delete\n  image: base.img",
        networks="- network: lan\n  model: e1000e")
    text = text.replace("metadata:\n", "metadata:\n  labels: {tier: db, team: data}\n")
    write_manifest(workdir, "manifests/db.yaml", text)
    (vm,) = load_desired(workdir / "manifests").vms
    assert vm.spec == VMSpec(
        name="db-01", vcpus=2, max_vcpus=4, memory=GiB, max_memory=4 * GiB,
        state=PowerState.STOPPED, autostart=True, update_policy="restart", shutdown_timeout=1,
        protect=True,
        disks=(Disk(name="data", size=1 << 40, pool="fast", format="raw", image="base.img",
                    bus="scsi", reclaim="delete"),),
        nics=(Nic(network="lan", model="e1000e"),),
        graphics="vnc", labels=(("team", "data"), ("tier", "db")))


def test_spellings_of_the_same_size_hash_the_same(workdir: Path) -> None:
    write_manifest(workdir, "a/vm.yaml", vm_manifest("vm", memory="1Gi", max_memory="2048MiB"))
    write_manifest(workdir, "b/vm.yaml", vm_manifest("vm", memory="1024Mi", max_memory="2GiB"))
    (a,), (b,) = load_desired(workdir / "a").vms, load_desired(workdir / "b").vms
    assert a.spec == b.spec
    assert a.spec_hash == b.spec_hash
    write_manifest(workdir, "c/vm.yaml", vm_manifest("vm", memory="1Gi", max_memory="3GiB"))
    (c,) = load_desired(workdir / "c").vms
    assert c.spec_hash != a.spec_hash


def test_float_counts_are_refused_not_passed_on(workdir: Path) -> None:
    write_manifest(workdir, "manifests/vm.yaml", vm_manifest("vm", vcpus=2.0))  # type: ignore[arg-type]
    result = load_desired(workdir / "manifests")
    assert result.vms == ()
    assert [str(p) for p in result.problems] == [
        "manifests/vm.yaml:6:3: spec.vcpus: expected a whole number, got 2.0"]


def test_validate_does_not_change_the_documents(workdir: Path) -> None:
    write_manifest(workdir, "manifests/vm.yaml", vm_manifest("vm", disks="- {name: r, size: 1Gi}"))
    documents, problems = loader.load_tree(workdir / "manifests")
    before = json.dumps([d.data for d in documents], sort_keys=True)
    result = validate(documents, problems)
    assert result.ok
    assert json.dumps([d.data for d in documents], sort_keys=True) == before
    assert isinstance(result.vms[0], DesiredVM)
    assert result.vms[0].spec.memory == 64 * MiB
