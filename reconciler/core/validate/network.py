"""Checks of Network manifests past the schema, and their desired model. Pure."""

from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.core.errors import Problem
from reconciler.core.model.network import DesiredNetwork, IPv4, NetworkSpec
from reconciler.core.validate.common import (
    NAME,
    claim,
    foreign_annotations,
    positions,
    source,
    spec_hash,
)
from reconciler.core.validate.document import Document
from reconciler.core.validate.result import Checked

KIND = "Network"


def check(doc: Document, data: dict[str, Any]) -> Checked:
    """A schema-valid Network document (defaults filled in): its problems, or the desired
    network with where its bridge is (two networks may not share one). Pure."""
    net, found = desired(doc, data)
    found = [*foreign_annotations(doc, data), *found]
    return Checked(doc.file, tuple(found), claim(data), doc.position(NAME),
                   network=None if found else net, where=positions(doc, [("spec", "bridge")]))


def desired(doc: Document, data: dict[str, Any]) -> tuple[DesiredNetwork | None, list[Problem]]:
    """The desired network, or the problems of its addresses. Pure."""
    spec = data.get("spec") or {}
    problems: list[Problem] = []
    ipv4 = None
    if "ipv4" in spec:
        v4 = spec["ipv4"]
        try:
            net = ipaddress.IPv4Interface(f"{v4['address']}/{v4['prefix']}").network
        except ValueError as exc:
            return None, [doc.problem(("spec", "ipv4", "address"), str(exc))]
        if ipaddress.IPv4Address(v4["address"]) in (net.network_address, net.broadcast_address):
            problems.append(doc.problem(("spec", "ipv4", "address"),
                                        f"{v4['address']} is not a host address of {net}"))
        dhcp = v4.get("dhcp")
        if dhcp:
            start, end = ipaddress.IPv4Address(dhcp["start"]), ipaddress.IPv4Address(dhcp["end"])
            for key, value in (("start", start), ("end", end)):
                if value not in net:
                    problems.append(doc.problem(("spec", "ipv4", "dhcp", key),
                                                f"{value} is outside {net}"))
            if start > end:
                problems.append(doc.problem(("spec", "ipv4", "dhcp", "end"),
                                            f"{end} comes before start {start}"))
        ipv4 = IPv4(v4["address"], v4["prefix"], dhcp["start"] if dhcp else None,
                    dhcp["end"] if dhcp else None)
    if problems:
        return None, problems
    model = NetworkSpec(name=data["metadata"]["name"], bridge=spec.get("bridge"),
                        forward=spec["forward"], autostart=spec["autostart"], ipv4=ipv4)
    record = {"bridge": model.bridge, "forward": model.forward, "autostart": model.autostart,
              "ipv4": ipv4.__dict__ if ipv4 else None}
    return DesiredNetwork(model, source(doc), spec_hash(record)), []
