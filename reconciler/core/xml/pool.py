"""Storage pool XML: build it from a spec, read a spec back. Pure (lxml)."""

from __future__ import annotations

from lxml import etree

from reconciler.core.model.pool import PoolSpec
from reconciler.core.xml.common import parse


def _text(root: etree._Element) -> str:
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text


def build(spec: PoolSpec) -> str:
    root = etree.Element("pool", type=spec.type)
    etree.SubElement(root, "name").text = spec.name
    target = etree.SubElement(root, "target")
    etree.SubElement(target, "path").text = spec.path
    return _text(root)


def read(xml: str, *, autostart: bool) -> PoolSpec:
    root = parse(xml)
    return PoolSpec(name=root.findtext("name") or "", path=root.findtext("target/path") or "",
                    autostart=autostart, type=root.get("type", "dir"))


