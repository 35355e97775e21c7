"""Checks of Network and StoragePool manifests past the schema, and their desired model. Pure."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.core.errors import Problem, short
from reconciler.core.model.common import Source
from reconciler.core.model.network import DesiredNetwork, IPv4, NetworkSpec
from reconciler.core.model.pool import DesiredPool, PoolSpec
from reconciler.core.validate.document import Document


def _hash(record: Mapping[str, object]) -> str:
    text = json.dumps(record, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _source(doc: Document) -> Source:
    line, _ = doc.position(("metadata", "name"))
    return Source(doc.file, doc.relative, line)


def network(doc: Document, data: dict[str, Any]) -> tuple[DesiredNetwork | None, list[Problem]]:
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
    return DesiredNetwork(model, _source(doc), _hash(record)), []


def pool(doc: Document, data: dict[str, Any],
         storage_roots: Sequence[str]) -> tuple[DesiredPool | None, list[Problem]]:
    spec = data["spec"]
    path = posixpath.normpath(spec["path"])
    roots = [posixpath.normpath(root) for root in storage_roots]
    if not any(path != root and path.startswith(root.rstrip("/") + "/") for root in roots):
        allowed = ", ".join(roots) or "none configured"
        return None, [doc.problem(("spec", "path"),
                                  f"{short(spec['path'])} is not below an allowed storage root "
                                  f"({allowed}); the host's config lists them in storageRoots")]
    model = PoolSpec(name=data["metadata"]["name"], path=path, autostart=spec["autostart"],
                     type=spec["type"])
    record = {"path": path, "autostart": model.autostart, "type": model.type}
    return DesiredPool(model, _source(doc), _hash(record)), []
