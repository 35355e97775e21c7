"""Checks of Host manifests past the schema, and their desired model. Pure."""

from __future__ import annotations

from typing import Any

from reconciler.core.model.host import Capacity, DesiredHost, HostSpec
from reconciler.core.units import parse_quantity
from reconciler.core.validate.common import NAME, claim, foreign_annotations, positions, source
from reconciler.core.validate.document import Document
from reconciler.core.validate.result import Checked

KIND = "Host"


def check(doc: Document, data: dict[str, Any]) -> Checked:
    """A schema-valid Host document (defaults filled in): its problems, or the desired host."""
    found = tuple(foreign_annotations(doc, data))
    return Checked(doc.file, found, claim(data), doc.position(NAME),
                   host=None if found else desired(doc, data),
                   where=positions(doc, [("spec", "uri")]))


def desired(doc: Document, data: dict[str, Any]) -> DesiredHost:
    """The desired host of a document without problems. Pure."""
    spec = data["spec"]
    limits = spec["capacity"]
    capacity = Capacity(
        vcpus=limits.get("vcpus"),
        memory=parse_quantity(limits["memory"]) if "memory" in limits else None,
        vms=limits.get("vms"))
    host = HostSpec(name=data["metadata"]["name"], uri=spec["uri"],
                    labels=tuple(sorted(data["metadata"]["labels"].items())),
                    capacity=capacity, cordon=spec["cordon"],
                    migrate_uri=spec.get("migrateUri"))
    return DesiredHost(host, source(doc))
