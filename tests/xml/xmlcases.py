"""Golden XML case tables (tests/xml/<kind>/cases.yaml): loading them, and comparing XML."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from lxml import etree

from reconciler.core.model.common import Mark

HERE = Path(__file__).parent


def load(kind: str) -> list[dict[str, Any]]:
    cases: list[dict[str, Any]] = yaml.safe_load((HERE / kind / "cases.yaml").read_text())
    return cases


def params(cases: list[dict[str, Any]], op: str, *, golden: bool = False) -> list[Any]:
    """The cases of one operation (read, build, edit). For the test against the golden file
    (``golden``), a case with ``bug`` is a strict xfail."""
    return [pytest.param(case, id=case["name"],
                         marks=[pytest.mark.xfail(strict=True, reason=case["bug"])]
                         if golden and "bug" in case else [])
            for case in cases if op in case]


def text(kind: str, name: str) -> str:
    return (HERE / kind / name).read_text()


def canonical(xml: str) -> bytes:
    """The XML in canonical form, without comments and the whitespace between elements:
    attribute order and quotes, and indentation, do not matter; element order does."""
    root = etree.fromstring(xml.encode(), etree.XMLParser(remove_comments=True))
    root = copy.deepcopy(root)
    for element in root.iter():
        if element.text is not None and not element.text.strip():
            element.text = None
        if element.tail is not None and not element.tail.strip():
            element.tail = None
    return etree.tostring(root, method="c14n")


def mark(data: dict[str, Any] | None) -> Mark | None:
    if data is None:
        return None
    return Mark(manifest=data["manifest"], spec_hash=data["spec_hash"], commit=data["commit"],
                applied={}, instance=data["instance"])


def files_used(kind: str, cases: list[dict[str, Any]]) -> set[str]:
    keys = ("read", "build", "edit", "out")
    return {case[key] for case in cases for key in keys if key in case}


def files_present(kind: str) -> set[str]:
    return {path.name for path in (HERE / kind).glob("*.xml")}
