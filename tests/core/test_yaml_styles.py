"""Ordinary YAML that must be accepted, and YAML 1.1's surprises explained (issue 11, kind 2):
the manifest styles generators, editors and other operating systems produce."""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest
from conftest import TEST_URI, run_cli, vm_manifest, without_header, write_manifest

from reconciler.adapters.manifests import load_desired, load_file, load_tree

VM = vm_manifest("web-01")


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def names(root: Path) -> list[str]:
    validated = load_desired(root)
    assert [str(p) for p in validated.problems] == []
    return [vm.spec.name for vm in validated.vms]


# --- empty documents, as kubectl skips them ------------------------------------------------


@pytest.mark.parametrize("text", [
    VM + "---\n",  # a trailing separator
    VM + "---\n---\n",  # two in a row
    "---\n" + VM,  # a leading one
    "---\n---\n" + VM + "---\n\n---\n",
    VM + "---\n# only a comment\n---\n",
    VM + "---\n...\n",
    VM + "--- ~\n",  # an explicit null document
    VM + "--- null\n---\n",
    "# Source: chart/templates/vm.yaml\n---\n" + VM + "---\n# Source: chart/templates/none.yaml\n",
])
def test_empty_documents_are_skipped(workdir: Path, text: str) -> None:
    write_manifest(workdir, "m/a.yaml", text)
    assert names(workdir / "m") == ["web-01"]
    result = run_cli("validate", "m")
    assert (result.code, result.stdout) == (0, "1 VM valid.\n")


def test_documents_keep_their_index_past_empty_ones(workdir: Path) -> None:
    path = write_manifest(workdir, "m/a.yaml", "a: 1\n---\n---\nb: 2\n")
    documents, problems = load_file(path, workdir / "m")
    assert problems == []
    assert [(d.index, d.data) for d in documents] == [(0, {"a": 1}), (2, {"b": 2})]


@pytest.mark.parametrize("text", ["# nothing here yet\n", "# a\n---\n# b\n", "---\n", "---\n...\n"])
def test_a_file_of_comments_or_separators_only_is_no_problem(workdir: Path, text: str) -> None:
    write_manifest(workdir, "m/a.yaml", VM)
    write_manifest(workdir, "m/b.yaml", text)
    assert names(workdir / "m") == ["web-01"]


@pytest.mark.parametrize("data", [b"", b"\n\n", b"  \n", b"\xef\xbb\xbf", b"\r\n"])
def test_a_file_with_nothing_in_it_is_still_a_problem(workdir: Path, data: bytes) -> None:
    # A file truncated to nothing (a checkout that failed halfway) must not read as "its VMs
    # are gone": it holds back destroys until it is fixed or deleted.
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_bytes(data)
    assert [str(p) for p in load_tree(workdir / "m")[1]] == [
        "m/a.yaml:1:1: the file is empty; add a manifest, or delete the file"]


# --- real-world styles -------------------------------------------------------------------


STYLES = {
    "crlf": VM.replace("\n", "\r\n").encode(),
    "bom": codecs.BOM_UTF8 + VM.encode(),
    "bom-crlf": codecs.BOM_UTF8 + VM.replace("\n", "\r\n").encode(),
    "utf-16-le": codecs.BOM_UTF16_LE + VM.encode("utf-16-le"),  # PowerShell 5's Out-File
    "utf-16-be": codecs.BOM_UTF16_BE + VM.encode("utf-16-be"),
    "no-final-newline": VM.rstrip("\n").encode(),
    "tabs-in-strings": (VM + "  description: \"a\\tb\tc\"\n").encode(),
    "tab-after-value": VM.replace("vcpus: 1", "vcpus: 1\t# one").encode(),
    "quoted-numbers-where-strings-go": VM.replace(
        "name: web-01", "name: web-01\n  labels: {rack: \"12\", zone: '3'}").encode(),
    "flow-style": (b"{apiVersion: reconciler/v1, kind: VirtualMachine, metadata: {name: web-01},"
                   b" spec: {vcpus: 1, memory: 64MiB, state: running, shutdownTimeout: 1s}}\n"),
    "json": (b'{"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": {"name": '
             b'"web-01"}, "spec": {"vcpus": 1, "memory": "64MiB", "state": "running"}}\n'),
    "comments-everywhere": ("# header\n" + VM.replace("spec:\n", "spec:  # the spec\n  # inside\n")
                            + "# footer\n").encode(),
    "document-end-marker": (VM + "...\n").encode(),
    "directives": ("%YAML 1.1\n---\n" + VM).encode(),
    "block-scalars": (VM + "  description: >-\n    folded\n    text\n").encode(),
    "anchors-and-merge-keys": b"""\
apiVersion: reconciler/v1
kind: VirtualMachine
metadata:
  name: web-01
spec:
  base: &base {vcpus: 1, memory: 64MiB}
""".replace(b"  base: &base {vcpus: 1, memory: 64MiB}\n", b"""\
  <<: &base {vcpus: 1, memory: 64MiB}
  state: running
  disks:
    - &disk {name: root, size: 1GiB}
    - <<: *disk
      name: data
"""),
    "explicit-string-tags": VM.replace("memory: 64MiB", "memory: !!str 64MiB").encode(),
}


@pytest.mark.parametrize("style", STYLES)
def test_real_world_styles_are_accepted(workdir: Path, style: str) -> None:
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_bytes(STYLES[style])
    assert names(workdir / "m") == ["web-01"]


def test_merge_keys_give_the_merged_values(workdir: Path) -> None:
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_bytes(STYLES["anchors-and-merge-keys"])
    (vm,) = load_desired(workdir / "m").vms
    assert [(d.name, d.size) for d in vm.spec.disks] == [("root", 1 << 30), ("data", 1 << 30)]


def test_positions_are_right_in_a_crlf_file_with_a_bom(workdir: Path) -> None:
    (workdir / "m").mkdir()
    (workdir / "m" / "a.yaml").write_bytes(
        codecs.BOM_UTF8 + VM.replace("64MiB", "64MB").replace("\n", "\r\n").encode())
    result = run_cli("validate", "m")
    assert result.stdout == ("m/a.yaml:7:3: spec.memory: '64MB' is not a quantity; write 64MiB"
                             " or 65536KiB\n")


def test_the_same_manifests_in_every_style_plan_the_same(workdir: Path) -> None:
    outputs = set()
    for style in ("crlf", "bom", "utf-16-le", "json"):
        folder = workdir / style
        folder.mkdir()
        (folder / "a.yaml").write_bytes(STYLES[style])
        result = run_cli("plan", "--connect", TEST_URI, style)
        assert result.code == 0, result.stdout
        outputs.add(without_header(result.stdout))
    assert len(outputs) == 1


# --- YAML 1.1 booleans ---------------------------------------------------------------------


@pytest.mark.parametrize(("field", "word", "value", "choices"), [
    ("state", "off", "false", "running, stopped"),
    ("state", "no", "false", "running, stopped"),
    ("state", "yes", "true", "running, stopped"),
    ("state", "On", "true", "running, stopped"),
    ("state", "YES", "true", "running, stopped"),
    ("graphics", "no", "false", "none, vnc, spice"),
    ("updatePolicy", "Off", "false", "live, restart"),
    ("firmware", "OFF", "false", "bios, uefi"),
])
def test_a_yaml_11_boolean_in_an_enum_field_is_explained(workdir: Path, field: str, word: str,
                                                        value: str, choices: str) -> None:
    text = VM.replace("  state: running\n", "") + f"  {field}: {word}\n"
    write_manifest(workdir, "m/a.yaml", text)
    (line,) = [i for i, t in enumerate(text.splitlines(), 1) if t.startswith(f"  {field}:")]
    result = run_cli("validate", "m")
    assert result.stdout == (
        f"m/a.yaml:{line}:3: spec.{field}: YAML 1.1 reads {word} as the boolean {value}; "
        f"write one of: {choices}\n")


@pytest.mark.parametrize(("yaml", "message"), [
    ("  disks: [{name: root, size: 1GiB, format: no}]",
     "spec.disks[0].format: YAML 1.1 reads no as the boolean false; write one of: qcow2, raw"),
    ("  disks: [{name: root, size: 1GiB, reclaim: yes}]",
     "spec.disks[0].reclaim: YAML 1.1 reads yes as the boolean true; write one of: retain, "
     "delete"),
    ("  boot: [on]", "spec.boot[0]: YAML 1.1 reads on as the boolean true; write one of: hd, "
                     "cdrom, network"),
    ("  networks: [{network: default, model: off}]",
     "spec.networks[0].model: YAML 1.1 reads off as the boolean false; write one of: virtio, "
     "e1000, e1000e, rtl8139"),
    ("  description: yes", "spec.description: expected a string, got true (YAML 1.1 reads yes as"
                           " a boolean); quote it: \"yes\""),
    ("  disks: [{name: root, size: 1GiB, pool: off}]",
     "spec.disks[0].pool: expected a string, got false (YAML 1.1 reads off as a boolean); quote "
     "it: \"off\""),
])
def test_yaml_11_booleans_in_nested_fields_are_explained(workdir: Path, yaml: str,
                                                        message: str) -> None:
    write_manifest(workdir, "m/a.yaml", VM + yaml + "\n")
    assert run_cli("validate", "m").stdout.split(": ", 1)[1] == message + "\n"


def test_yaml_11_booleans_in_labels_and_in_networks_are_explained(workdir: Path) -> None:
    write_manifest(workdir, "m/a.yaml", VM.replace("name: web-01", "name: web-01\n  labels: "
                                                   "{tier: yes}") + "---\n" + """\
apiVersion: reconciler/v1
kind: Network
metadata: {name: lab}
spec: {forward: no}
""")
    assert run_cli("validate", "m").stdout.splitlines() == [
        "m/a.yaml:5:12: metadata.labels.tier: expected a string, got true (YAML 1.1 reads yes as "
        "a boolean); quote it: \"yes\"",
        "m/a.yaml:15:8: spec.forward: YAML 1.1 reads no as the boolean false; write one of: "
        "none, nat, route",
    ]


def test_a_mac_address_read_as_a_base_60_number_is_explained(workdir: Path) -> None:
    write_manifest(workdir, "m/a.yaml", VM + "  networks: [{network: default, mac: "
                                             "52:54:00:12:34:56}]\n")
    assert run_cli("validate", "m").stdout.split(": ", 1)[1] == (
        "spec.networks[0].mac: expected a string, got a number (YAML 1.1 reads numbers joined by "
        "':' as one base-60 number); quote it\n")
