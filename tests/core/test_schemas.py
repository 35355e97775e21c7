"""The JSON schemas as editors read them: one copy of each file, a schema for every kind at once,
the draft editors support, and quantity and duration patterns that accept exactly what
`reconciler validate` accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core import schema, units
from reconciler.core.units import parse_duration, parse_quantity

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "reconciler" / "schemas"  # what the package installs and `schema` prints
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
MANIFEST_SCHEMAS = ["manifest.v1.json", *schema.KINDS.values()]


def editor(document: dict[str, Any]) -> jsonschema.Draft7Validator:
    """A validator as an editor has it: draft-07, no checks of our own formats."""
    return jsonschema.Draft7Validator(document)


def problems(document: dict[str, Any], data: object) -> list[tuple[str, str]]:
    return sorted((".".join(map(str, e.absolute_path)), e.validator)
                  for e in editor(document).iter_errors(data))


# --- one source --------------------------------------------------------------------------------


def test_the_top_level_schemas_folder_is_the_package_one() -> None:
    top = ROOT / "schemas"
    assert sorted(p.name for p in top.iterdir()) == sorted(p.name for p in SHIPPED.iterdir())
    for shipped in SHIPPED.iterdir():
        assert (top / shipped.name).read_bytes() == shipped.read_bytes(), shipped.name


def test_the_manifest_schema_is_generated_from_the_kinds() -> None:
    shipped = json.loads((SHIPPED / "manifest.v1.json").read_text())
    regenerate = ("python -c 'from reconciler.core import schema as s; "
                  "print(s.dumps(s.manifest_schema()))' > reconciler/schemas/manifest.v1.json")
    assert shipped == schema.manifest_schema(), f"out of date; regenerate it: {regenerate}"
    assert (SHIPPED / "manifest.v1.json").read_text() == schema.dumps(shipped) + "\n"


@pytest.mark.parametrize("name", MANIFEST_SCHEMAS)
def test_manifest_schemas_use_the_draft_editors_support(name: str) -> None:
    document = json.loads((SHIPPED / name).read_text())
    assert document["$schema"] == DRAFT_07
    assert document["$id"] == f"https://reconciler.dev/schemas/{name}"
    jsonschema.Draft7Validator.check_schema(document)


# --- the schema of every kind ------------------------------------------------------------------


def example_documents() -> list[object]:
    return [doc for path in sorted((ROOT / "manifests").glob("*.yaml"))
            for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def test_the_manifest_schema_accepts_the_examples_of_every_kind() -> None:
    combined = schema.load("manifest")
    docs = [*example_documents(),
            {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": "lab"}},
            {"apiVersion": "reconciler/v1", "kind": "StoragePool", "metadata": {"name": "fast"},
             "spec": {"path": "/var/lib/libvirt/pools/fast"}},
            {"apiVersion": "reconciler/v1", "kind": "Host",
             "metadata": {"name": "hv-01", "labels": {"rack": "a"}},
             "spec": {"uri": "qemu+ssh://root@hv-01/system",
                      "capacity": {"vcpus": 64, "memory": "256GiB", "vms": 40}}}]
    assert {d["kind"] for d in docs} == set(schema.KINDS)  # type: ignore[index]
    for doc in docs:
        assert problems(combined, doc) == []


def test_the_manifest_schema_checks_a_document_against_its_own_kind_only() -> None:
    combined = schema.load("manifest")
    network = {"apiVersion": "reconciler/v1", "kind": "Network", "metadata": {"name": "lab"},
               "spec": {"forward": "nope", "vcpus": 2}}
    # Only the Network's own errors: not "vcpus is required" from the VirtualMachine's schema.
    assert problems(combined, network) == problems(schema.load("Network"), network) == [
        ("spec", "additionalProperties"), ("spec.forward", "enum")]
    vm = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": {"name": "a"},
          "spec": {"vcpus": 1, "memory": "1GB"}}
    assert problems(combined, vm) == [("spec.memory", "pattern")]


@pytest.mark.parametrize(("doc", "expected"), [
    ({"apiVersion": "reconciler/v1", "kind": "Volume", "metadata": {"name": "a"}},
     [("kind", "enum")]),
    ({"apiVersion": "reconciler/v1", "metadata": {"name": "a"}}, [("", "required")]),
    ({"apiVersion": "v1", "kind": "Network", "metadata": {"name": "a"}},
     [("apiVersion", "const"), ("apiVersion", "const")]),
])
def test_the_manifest_schema_names_a_wrong_kind_or_version(doc: object,
                                                           expected: list[tuple[str, str]]) -> None:
    assert problems(schema.load("manifest"), doc) == expected


# --- quantities and durations: the pattern and the parser agree ---------------------------------


def vm_schema_definition(name: str) -> dict[str, Any]:
    definition: dict[str, Any] = schema.load("VirtualMachine")["definitions"][name]
    return definition


def accepted_by_pattern(pattern: str, text: str) -> bool:
    """As an editor (ECMA-262) reads the pattern; Python's `$` also matches before a final
    newline, ECMA-262's only at the end: `\\Z` is the latter."""
    assert pattern.endswith("$")
    return re.search(pattern[:-1] + r"\Z", text) is not None


def accepted_by_parser(parse: Any, text: str) -> bool:
    try:
        parse(text)
    except ValueError:
        return False
    return True


QUANTITY_CASES = [
    ("1GiB", True), ("1Gi", True), ("512MiB", True), ("512Mi", True), ("4KiB", True),
    ("4Ki", True), ("3TiB", True), ("3Ti", True), ("0GiB", True), ("007GiB", True),
    (" 2GiB ", True), ("\t16MiB\n", True), ("2GiB\r\n", True),
    ("8388607TiB", True), ("8388608TiB", False), ("0008388607TiB", True),
    ("8589934591GiB", True), ("8589934592GiB", False), ("8796093022207MiB", True),
    ("8796093022208MiB", False), ("9007199254740991KiB", True), ("9007199254740992KiB", False),
    ("9007199254740991Ki", True), ("9" * 30 + "KiB", False), ("0" * 40 + "1KiB", True),
    ("1GB", False), ("1G", False), ("1 GiB", False), ("1.5GiB", False), ("0", False),
    ("2048", False), ("-1GiB", False), ("+1GiB", False), ("1gib", False), ("1GIB", False),
    ("1gi", False), ("1kib", False), ("2048B", False), ("GiB", False), ("", False),
    ("2GiB2", False), ("1_000MiB", False), ("\u0661GiB", False), ("1GiB\x0b", False),
    ("\xa01GiB", False), ("1GiB\n\n", True), ("1Gi B", False), ("1PiB", False),
]
DURATION_CASES = [
    ("30s", True), ("5m", True), ("1h", True), ("0s", True), (" 10s ", True), ("009s", True),
    (f"{units.MAX_VALUE}s", True), (f"{units.MAX_VALUE + 1}s", False),
    (f"{units.MAX_VALUE // 60}m", True), (f"{units.MAX_VALUE // 60 + 1}m", False),
    (f"{units.MAX_VALUE // 3600}h", True), (f"{units.MAX_VALUE // 3600 + 1}h", False),
    ("30", False), ("1.5m", False), ("1d", False), ("30S", False), ("1 h", False),
    ("-5s", False), ("5ms", False), ("1h30m", False), ("", False), ("s", False),
]


def test_the_patterns_are_the_units_modules() -> None:
    assert vm_schema_definition("quantity")["pattern"] == units.QUANTITY_PATTERN
    assert vm_schema_definition("duration")["pattern"] == units.DURATION_PATTERN


@pytest.mark.parametrize(("text", "valid"), QUANTITY_CASES)
def test_the_quantity_pattern_accepts_what_the_parser_accepts(text: str, valid: bool) -> None:
    pattern = vm_schema_definition("quantity")["pattern"]
    assert accepted_by_parser(parse_quantity, text) is valid
    assert accepted_by_pattern(pattern, text) is valid


@pytest.mark.parametrize(("text", "valid"), DURATION_CASES)
def test_the_duration_pattern_accepts_what_the_parser_accepts(text: str, valid: bool) -> None:
    pattern = vm_schema_definition("duration")["pattern"]
    assert accepted_by_parser(parse_duration, text) is valid
    assert accepted_by_pattern(pattern, text) is valid


BLANK = st.sampled_from(["", "", " ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "\u2003"])
NUMBER = st.one_of(st.from_regex(r"\A0{0,3}[0-9]{1,22}\Z"), st.from_regex(r"\A[0-9.+-]{1,6}\Z"),
                   st.sampled_from(["8388607", "8388608", "8589934591", "8589934592",
                                    "8796093022207", "8796093022208", "9007199254740991",
                                    "9007199254740992", "153722867280912930",
                                    "2562047788015215", "2562047788015216", "\u0661"]))
UNIT = st.sampled_from(["KiB", "Ki", "MiB", "Mi", "GiB", "Gi", "TiB", "Ti", "GB", "G", "gib",
                        "Gib", "GIB", "B", "", " GiB", "PiB", "s", "m", "h", "S", "ms", "d"])


@settings(max_examples=2000, deadline=None, derandomize=True, database=None)
@given(st.tuples(BLANK, NUMBER, UNIT, BLANK).map("".join) | st.text(max_size=12))
def test_the_patterns_and_the_parsers_agree_on_any_string(text: str) -> None:
    for name, parse in (("quantity", parse_quantity), ("duration", parse_duration)):
        pattern = vm_schema_definition(name)["pattern"]
        assert accepted_by_pattern(pattern, text) is accepted_by_parser(parse, text), (name, text)


def test_a_bad_quantity_is_flagged_by_an_editor() -> None:
    vm = schema.load("VirtualMachine")
    doc = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine", "metadata": {"name": "a"},
           "spec": {"vcpus": 1, "memory": "1GB", "shutdownTimeout": "30sec",
                    "disks": [{"name": "root", "size": "10G"}]}}
    assert problems(vm, doc) == [("spec.disks.0.size", "pattern"), ("spec.memory", "pattern"),
                                 ("spec.shutdownTimeout", "pattern")]
    # and it says how to write one, not the pattern
    assert "2GiB" in vm_schema_definition("quantity")["patternErrorMessage"]
    assert "30s" in vm_schema_definition("duration")["patternErrorMessage"]


def patterns(node: object) -> list[dict[str, Any]]:
    if isinstance(node, list):
        return [found for item in node for found in patterns(item)]
    if not isinstance(node, dict):
        return []
    own = [node] if isinstance(node.get("pattern"), str) else []
    return own + [found for value in node.values() for found in patterns(value)]


@pytest.mark.parametrize("name", MANIFEST_SCHEMAS)
def test_every_pattern_has_a_message_for_editors(name: str) -> None:
    # yaml-language-server shows patternErrorMessage instead of "does not match the pattern".
    found = patterns(json.loads((SHIPPED / name).read_text()))
    assert found
    for node in found:
        assert node.get("patternErrorMessage"), node["pattern"]
