"""Network XML: golden inputs read into the model, specs built, and live XML edited in place so
that what the manifest does not govern survives. The table: tests/xml/network/cases.yaml."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import libvirt
import pytest
from xmlcases import canonical, files_present, files_used, load, mark, params, text

from reconciler.core.model.network import IPv4, NetworkSpec
from reconciler.core.xml import network as networkxml

CASES = load("network")


def _spec(data: dict[str, Any]) -> NetworkSpec:
    fields = dict(data)
    if fields.get("ipv4") is not None:
        fields["ipv4"] = IPv4(**fields["ipv4"])
    return NetworkSpec(**fields)


def _made(case: dict[str, Any]) -> str:
    """The XML a build or edit case makes."""
    spec, marked = _spec(case["spec"]), mark(case["mark"])
    assert marked is not None
    if "build" in case:
        return networkxml.build(spec, mark=marked)
    return networkxml.edit(text("network", case["edit"]), spec, mark=marked)


@pytest.mark.parametrize("case", params(CASES, "read", golden=True))
def test_read(case: dict[str, Any]) -> None:
    spec, marked = networkxml.read(text("network", case["read"]), autostart=case["autostart"])
    assert spec == _spec(case["spec"])
    assert marked == mark(case["mark"])


@pytest.mark.parametrize("case", params(CASES, "build", golden=True))
def test_build(case: dict[str, Any]) -> None:
    assert canonical(_made(case)) == canonical(text("network", case["build"]))


@pytest.mark.parametrize("case", params(CASES, "edit", golden=True))
def test_edit(case: dict[str, Any]) -> None:
    assert canonical(_made(case)) == canonical(text("network", case["out"]))


@pytest.mark.parametrize("case", [*params(CASES, "build"), *params(CASES, "edit")])
def test_what_is_written_reads_back_as_the_spec(case: dict[str, Any]) -> None:
    spec = _spec(case["spec"])
    assert networkxml.read(_made(case), autostart=spec.autostart) == (spec, mark(case["mark"]))


@pytest.mark.parametrize("case", params(CASES, "edit"))
def test_a_second_edit_changes_nothing(case: dict[str, Any]) -> None:
    once = _made(case)
    marked = mark(case["mark"])
    assert marked is not None
    twice = networkxml.edit(once, _spec(case["spec"]), mark=marked)
    assert canonical(twice) == canonical(once)


@pytest.fixture(scope="module")
def testdriver() -> Iterator[libvirt.virConnect]:
    conn = libvirt.open("test:///default")
    yield conn
    conn.close()


@pytest.mark.parametrize("case", [*params(CASES, "build"), *params(CASES, "edit")])
def test_libvirt_takes_what_is_written(case: dict[str, Any],
                                       testdriver: libvirt.virConnect) -> None:
    """libvirt's own parser (the test driver's) accepts the XML, and what it gives back reads
    as the spec."""
    xml = _made(case).replace(f"<name>{case['spec']['name']}</name>", "<name>golden-xml</name>")
    net = testdriver.networkDefineXML(xml)
    try:
        spec, marked = networkxml.read(net.XMLDesc(0), autostart=case["spec"].get("autostart",
                                                                                   True))
    finally:
        net.undefine()
    want = _spec({**case["spec"], "name": "golden-xml"})
    if want.bridge is None:  # libvirt picks one (qemu's driver; not the test driver)
        spec = NetworkSpec(**{**spec.__dict__, "bridge": None})
    assert (spec, marked) == (want, mark(case["mark"]))


def test_every_golden_file_has_a_case() -> None:
    assert files_present("network") == files_used("network", CASES)
    assert len(params(CASES, "edit")) >= 6
