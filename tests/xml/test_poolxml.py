"""Storage pool XML: golden inputs read into the model, and specs built. The table:
tests/xml/pool/cases.yaml."""

from __future__ import annotations

from typing import Any

import libvirt
import pytest
from xmlcases import canonical, files_present, files_used, load, params, text

from reconciler.core.model.pool import PoolSpec
from reconciler.core.xml import pool as poolxml

CASES = load("pool")


@pytest.mark.parametrize("case", params(CASES, "read", golden=True))
def test_read(case: dict[str, Any]) -> None:
    got = poolxml.read(text("pool", case["read"]), autostart=case["autostart"])
    assert got == PoolSpec(**case["spec"])


@pytest.mark.parametrize("case", params(CASES, "build", golden=True))
def test_build(case: dict[str, Any]) -> None:
    built = poolxml.build(PoolSpec(**case["spec"]))
    assert canonical(built) == canonical(text("pool", case["build"]))


@pytest.mark.parametrize("case", params(CASES, "build"))
def test_libvirt_takes_what_is_built_and_it_reads_back(case: dict[str, Any]) -> None:
    spec = PoolSpec(**{**case["spec"], "name": "golden-xml"})
    conn = libvirt.open("test:///default")
    try:
        pool = conn.storagePoolDefineXML(poolxml.build(spec))
        try:
            assert poolxml.read(pool.XMLDesc(0), autostart=spec.autostart) == spec
        finally:
            pool.undefine()
    finally:
        conn.close()


def test_every_golden_file_has_a_case() -> None:
    assert files_present("pool") == files_used("pool", CASES)
