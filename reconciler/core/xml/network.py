"""Network XML: build it from a spec, read a spec back, edit it in place. Pure (lxml).

An edit changes only what a Network manifest governs (the bridge's name, the forward mode, the
IPv4 address and its DHCP range) and keeps the rest as libvirt or a person wrote it: the uuid,
MAC, the bridge's stp and delay, the NAT port range, DHCP host entries, DNS, IPv6 addresses."""

from __future__ import annotations

import ipaddress

from lxml import etree

from reconciler.core.model.common import Mark
from reconciler.core.model.network import IPv4, NetworkSpec
from reconciler.core.xml.common import mark_element, parse, read_mark, set_mark

# The order in which libvirt writes a network's elements: a new one goes in its place.
_ORDER = ("name", "uuid", "metadata", "forward", "bridge", "mtu", "mac", "domain", "dns", "ip")


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


def _place(root: etree._Element, tag: str) -> etree._Element:
    """A new child ``tag`` of ``root``, after the elements libvirt writes before it."""
    element = etree.Element(tag)
    rank = _ORDER.index(tag)
    before = [child for child in root
              if isinstance(child.tag, str) and child.tag in _ORDER[:rank + 1]]
    if before:
        before[-1].addnext(element)
    else:
        root.insert(0, element)
    return element


def _set_network(root: etree._Element, spec: NetworkSpec) -> None:
    _set_bridge(root, spec.bridge)
    _set_forward(root, spec.forward)
    _set_ipv4(root, spec.ipv4)


def _set_bridge(root: etree._Element, name: str | None) -> None:
    if not name:
        return  # libvirt's pick stays
    bridge = root.find("bridge")
    if bridge is None:
        bridge = _place(root, "bridge")
        bridge.set("stp", "on")
    bridge.set("name", name)


def _set_forward(root: etree._Element, mode: str) -> None:
    forward = root.find("forward")
    if mode == "none":
        if forward is not None:
            root.remove(forward)
        return
    if forward is None:
        forward = _place(root, "forward")
    forward.set("mode", mode)
    if mode != "nat":  # libvirt refuses <nat> (address and port ranges) in another mode
        for nat in forward.findall("nat"):
            forward.remove(nat)


def _ipv4_element(root: etree._Element) -> etree._Element | None:
    """The first IPv4 <ip> (a network may also have IPv6 ones, in any order)."""
    for ip in root.iterfind("ip"):
        if ip.get("family", "ipv4") == "ipv4" and ip.get("address"):
            return ip
    return None


def _set_ipv4(root: etree._Element, want: IPv4 | None) -> None:
    ip = _ipv4_element(root)
    if want is None:
        if ip is not None:
            root.remove(ip)
        return
    if ip is None:
        ip = _place(root, "ip")
    ip.set("address", want.address)
    if ip.get("prefix") is not None:  # written by prefix: kept so
        ip.set("prefix", str(want.prefix))
    else:
        ip.set("netmask", str(ipaddress.IPv4Network(f"0.0.0.0/{want.prefix}").netmask))
    _set_dhcp_range(ip, want)


def _set_dhcp_range(ip: etree._Element, want: IPv4) -> None:
    """The DHCP range; the host entries (fixed addresses) stay."""
    dhcp = ip.find("dhcp")
    if not (want.dhcp_start and want.dhcp_end):
        if dhcp is not None:
            for old in dhcp.findall("range"):
                dhcp.remove(old)
            if len(dhcp) == 0:
                ip.remove(dhcp)
        return
    if dhcp is None:
        dhcp = etree.SubElement(ip, "dhcp")
    rng = dhcp.find("range")
    if rng is None:
        rng = etree.Element("range")
        dhcp.insert(0, rng)
    rng.set("start", want.dhcp_start)
    rng.set("end", want.dhcp_end)


def read(xml: str, *, autostart: bool) -> tuple[NetworkSpec, Mark | None]:
    root = parse(xml)
    forward = root.find("forward")
    ip = _ipv4_element(root)
    ipv4 = None
    if ip is not None:
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
