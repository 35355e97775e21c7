"""Properties of the loader, the validator and the plan renderer, for any input (issue 11, kind
7): no traceback, every problem names its file and line, the plan does not depend on the order
of the files, and no value under ``spec`` of the wrong type reaches a message. The same
properties as the atheris target in ``fuzz/``, whose corpus is run here too.

Hypothesis profiles (``HYPOTHESIS_PROFILE`` picks one):

- ``bounded`` (the default, what the test command and CI run): a bounded number of examples,
  derandomized (a CI run never fails on an example another run did not try), no example
  database written anywhere; the whole module takes well under a minute.
- ``explore``: many more random examples; run it by hand when the loader or the validator
  changes: ``HYPOTHESIS_PROFILE=explore pytest tests/property``.
"""

from __future__ import annotations

import os
import string
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "fuzz"))

from fuzz_manifests import SPLIT, check_properties, files_of, load, plan_of  # noqa: E402

from reconciler.core import render  # noqa: E402

CORPUS = sorted((ROOT / "fuzz" / "corpus").iterdir())

_SLOW = [HealthCheck.too_slow, HealthCheck.data_too_large]
settings.register_profile("bounded", max_examples=150, deadline=None, derandomize=True,
                          database=None, suppress_health_check=_SLOW)
settings.register_profile("explore", max_examples=5000, deadline=None, database=None,
                          suppress_health_check=_SLOW)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bounded"))


# --- values ----------------------------------------------------------------------------------

scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(10 ** 30), max_value=10 ** 30), st.integers(0, 4096),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.text(string.ascii_lowercase + "-", min_size=1, max_size=70),
    st.sampled_from(["1GiB", "64MiB", "2GB", "0Mi", "1e3Gi", "99999999999999999999TiB", "30s",
                     "-1s", "running", "stopped", "virtio", "qcow2", "raw", "default", "",
                     "52:54:00:12:34:56", "52:54:00:12:34:5G", "/var/lib/libvirt/images/x",
                     "yes", "off", "10.0.0.1", "10.0.0.300", "\x00", "a\nb", "true"]),
    st.dates(), st.datetimes(),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.one_of(st.text(max_size=8), st.sampled_from(["name", "size", "pool", "network",
                                                         "mac", "userData", "<<"])),
        inner, max_size=4),
    max_leaves=12)

VM_FIELDS = ["vcpus", "maxVcpus", "memory", "maxMemory", "state", "autostart", "updatePolicy",
             "shutdownTimeout", "protect", "disks", "networks", "cloudInit", "graphics",
             "firmware", "boot", "description", "bogus"]
NAMES = st.sampled_from(["web-01", "web-02", "a", "a-b", "db", "Bad_Name", "x" * 64])


@st.composite
def vm_documents(draw: st.DrawFn) -> dict[str, object]:
    """A VirtualMachine manifest, valid or near it: names, MACs and disk names from small sets
    (so that documents clash), any field may hold any value."""
    spec: dict[str, object] = {"vcpus": draw(st.integers(1, 4)),
                               "memory": draw(st.sampled_from(["64MiB", "1GiB"]))}
    if draw(st.booleans()):
        spec["disks"] = [{"name": draw(st.sampled_from(["root", "b", "b-c"])),
                          "size": draw(st.sampled_from(["1GiB", "2GiB"]))}]
    if draw(st.booleans()):
        spec["networks"] = [{"network": "default",
                             "mac": draw(st.sampled_from(["52:54:00:00:00:01",
                                                          "52:54:00:00:00:02"]))}]
    for name in draw(st.lists(st.sampled_from(VM_FIELDS), max_size=3)):
        spec[name] = draw(values)
    document: dict[str, object] = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
                                   "metadata": {"name": draw(NAMES)}, "spec": spec}
    if draw(st.integers(0, 5)) == 0:
        document[draw(st.sampled_from(["apiVersion", "kind", "metadata", "spec"]))] = draw(values)
    return document


other_documents = st.builds(
    lambda kind, name, spec: {"apiVersion": "reconciler/v1", "kind": kind,
                              "metadata": {"name": name}, "spec": spec},
    st.sampled_from(["Network", "StoragePool"]), NAMES,
    st.one_of(values, st.fixed_dictionaries(
        {}, optional={"forward": st.sampled_from(["nat", "none", False]),
                      "bridge": st.sampled_from(["virbr9", "br-x"]),
                      "path": st.sampled_from(["/var/lib/libvirt/images/p", "/etc", "rel"]),
                      "ipv4": values})))


def dump(documents: list[object], style: str) -> bytes:
    """Documents as one file, in one of the styles people and generators write."""
    text = yaml.safe_dump_all(documents, default_flow_style=style == "flow",
                              explicit_start=style != "plain", sort_keys=False,
                              allow_unicode=True)
    if style == "crlf":
        text = text.replace("\n", "\r\n")
    if style == "trailing":
        text += "---\n---\n"
    data = text.encode("utf-16" if style == "utf-16" else "utf-8")
    return (b"\xef\xbb\xbf" + data) if style == "bom" else data


STYLES = st.sampled_from(["plain", "flow", "crlf", "trailing", "bom", "utf-16", "block"])
files = st.lists(
    st.tuples(st.lists(st.one_of(vm_documents(), other_documents), max_size=3), STYLES),
    min_size=1, max_size=4,
).map(lambda parts: [(f"m{i}/f.yaml", dump(docs, style)) for i, (docs, style) in
                     enumerate(parts)])


# --- properties ------------------------------------------------------------------------------


@given(st.binary(max_size=3000))
def test_any_bytes(data: bytes) -> None:
    check_properties(files_of(data))


YAMLISH = st.lists(st.sampled_from(list(": -[]{}&*!|>'\"#%@`,?\n\t\r\\~.<=") + list("abyon0129e")
                                   + ["\n  ", "---\n", "<<: ", "*a", "&a ", "!!int ", "\ufeff",
                                      "\x85", "\x00", "yes", "off", "spec:", "  vcpus: ",
                                      "kind: VirtualMachine\n", "\ud800"]),
                  max_size=120).map("".join)


@given(YAMLISH)
def test_yaml_like_text(text: str) -> None:
    check_properties([("a.yaml", text.encode("utf-8", "surrogatepass"))])


@given(st.lists(st.tuples(st.sampled_from(["a.yaml", "b.yaml"]), st.integers(0, 400),
                          YAMLISH), max_size=4), STYLES)
def test_valid_manifests_cut_and_spliced(edits: list[tuple[str, int, str]], style: str) -> None:
    # Real manifests with text cut out or put in (a merge conflict, a truncated write).
    web = (ROOT / "manifests" / "web.yaml").read_bytes().decode()
    db = (ROOT / "manifests" / "db.yaml").read_bytes().decode()
    texts = {"a.yaml": web, "b.yaml": db}
    for name, at, insert in edits:
        text = texts[name]
        at = at % (len(text) + 1)
        texts[name] = text[:at] + insert + text[at + len(insert) // 2:]
    check_properties([(name, text.encode("utf-8", "surrogatepass"))
                      for name, text in texts.items()])


@given(files)
def test_generated_manifests(manifests: list[tuple[str, bytes]]) -> None:
    check_properties(manifests)


@given(files, st.randoms(use_true_random=False))
def test_the_plan_is_the_same_whatever_the_file_order(manifests: list[tuple[str, bytes]],
                                                      rng: object) -> None:
    validated, text = check_properties(manifests)
    shuffled = list(manifests)
    rng.shuffle(shuffled)  # type: ignore[attr-defined]
    again = load(shuffled)
    assert again == validated
    assert render.plan_text(plan_of(again)) == text


SECRET = "s3cr3t-Zq9"
HOLDERS = st.sampled_from([
    lambda s: {"password": s}, lambda s: [s], lambda s: f"#cloud-config\npassword: {s}\n",
    lambda s: [{"userData": s}], lambda s: {"userData": {"chpasswd": s}}, lambda s: s * 20,
    lambda s: {"k": [s]},
])


@given(st.sampled_from([*VM_FIELDS, "spec"]), HOLDERS, st.sampled_from(["block", "flow"]))
def test_no_value_of_the_wrong_type_under_spec_is_shown(field: str, holder: object,
                                                        style: str) -> None:
    document = {"apiVersion": "reconciler/v1", "kind": "VirtualMachine",
                "metadata": {"name": "web-01"}, "spec": {"vcpus": 1, "memory": "64MiB"}}
    value = holder(SECRET)  # type: ignore[operator]
    # (a short word in a list of words is of the right type: shown, as a typo in one would be)
    assume(not (field == "boot" and value == [SECRET]))
    if field == "spec":
        document["spec"] = value
    else:
        document["spec"][field] = value  # type: ignore[index]
    validated, text = check_properties([("a.yaml", dump([document], style))])
    said = "".join(str(p) for p in validated.problems) + text
    assert SECRET not in said


@pytest.mark.parametrize("seed", CORPUS, ids=lambda p: p.name)
def test_the_fuzz_corpus(seed: Path) -> None:
    check_properties(files_of(seed.read_bytes()))


def test_the_corpus_is_small_and_split_where_the_target_splits() -> None:
    assert 20 <= len(CORPUS) <= 80
    assert sum(p.stat().st_size for p in CORPUS) < 256 * 1024
    assert any(SPLIT in p.read_bytes() for p in CORPUS)
