"""Network XML: build it from a spec, read a spec back, edit it in place. Pure (lxml)."""

from __future__ import annotations

import ipaddress

from lxml import etree

from reconciler.core.model.common import Mark
from reconciler.core.model.network import IPv4, NetworkSpec
from reconciler.core.xml.common import mark_element, parse, read_mark, set_mark


def build(spec: NetworkSpec, *, mark: Mark) -> str:
    root = etree.Element("network")
    etree.SubElement(root, "name").text = spec.name
    etree.SubElement(root, "metadata").append(mark_element(mark))
    _set_network(root, spec)
    return _text(root)


def edit(xml: str, spec: NetworkSpec, *, mark: Mark) -> str:
    """The persistent network XML edited to match ``spec``; uuid, mac and the rest kept."""
    root = parse(xml)
    set_mark(root, mark)
    _set_network(root, spec)
    return _text(root)


def _text(root: etree._Element) -> str:
    text: str = etree.tostring(root, pretty_print=True, encoding="unicode")
    return text


def _set_network(root: etree._Element, spec: NetworkSpec) -> None:
    for tag in ("forward", "ip"):
        for old in root.findall(tag):
            root.remove(old)
    if spec.bridge:
        bridge = root.find("bridge")
        if bridge is None:
            bridge = etree.SubElement(root, "bridge")
        bridge.set("name", spec.bridge)
        bridge.set("stp", bridge.get("stp", "on"))
    if spec.forward != "none":
        etree.SubElement(root, "forward", mode=spec.forward)
    if spec.ipv4:
        netmask = str(ipaddress.IPv4Network(f"0.0.0.0/{spec.ipv4.prefix}").netmask)
        ip = etree.SubElement(root, "ip", address=spec.ipv4.address, netmask=netmask)
        if spec.ipv4.dhcp_start and spec.ipv4.dhcp_end:
            dhcp = etree.SubElement(ip, "dhcp")
            etree.SubElement(dhcp, "range", start=spec.ipv4.dhcp_start, end=spec.ipv4.dhcp_end)


def read(xml: str, *, autostart: bool) -> tuple[NetworkSpec, Mark | None]:
    root = parse(xml)
    forward = root.find("forward")
    ip = root.find("ip")
    ipv4 = None
    if ip is not None and ip.get("family", "ipv4") == "ipv4" and ip.get("address"):
        if ip.get("prefix"):
            prefix = int(ip.get("prefix", "24"))
        else:
            mask = ip.get("netmask", "255.255.255.0")
            prefix = ipaddress.IPv4Network(f"0.0.0.0/{mask}").prefixlen
        rng = ip.find("dhcp/range")
        ipv4 = IPv4(ip.get("address", ""), prefix,
                    rng.get("start") if rng is not None else None,
                    rng.get("end") if rng is not None else None)
    bridge = root.find("bridge")
    spec = NetworkSpec(
        name=root.findtext("name") or "",
        bridge=bridge.get("name") if bridge is not None else None,
        forward=forward.get("mode", "nat") if forward is not None else "none",
        autostart=autostart,
        ipv4=ipv4,
    )
    return spec, read_mark(root)
