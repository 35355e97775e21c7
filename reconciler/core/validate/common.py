"""What the checks of every kind share: the name a document claims, where its desired object
came from, the spec hash, and the tool's own annotations. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.errors import Problem
from reconciler.core.model.common import Source
from reconciler.core.validate.document import Document, FieldPath, dotted
from reconciler.core.validate.result import ClaimKey, Position

NAME: FieldPath = ("metadata", "name")

ADOPT = "reconciler/adopt"
SUSPEND = "reconciler/suspend"
OWN_ANNOTATIONS = (ADOPT, SUSPEND)  # read on VirtualMachine manifests only


def spec_hash(applied: Mapping[str, object]) -> str:
    """The short hash of a desired object's record, kept in the mark of what is applied."""
    canonical = json.dumps(applied, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def claim(data: Mapping[str, Any]) -> ClaimKey:
    """The (kind, name) a schema-valid document declares."""
    return (data["kind"], data["metadata"]["name"])


def source(doc: Document) -> Source:
    line, _ = doc.position(NAME)
    return Source(doc.file, doc.relative, line)


def positions(doc: Document, paths: Iterable[FieldPath]) -> dict[str, Position]:
    """Where each of ``paths`` is, by dotted field name (for the checks across documents)."""
    return {dotted(path): doc.position(path) for path in paths}


def foreign_annotations(doc: Document, data: Mapping[str, Any]) -> Iterable[Problem]:
    """The tool's annotations on a network or pool would be ignored: say so."""
    for name in OWN_ANNOTATIONS:
        if name in data["metadata"].get("annotations", {}):
            yield doc.problem(("metadata", "annotations", name),
                              f"only a VirtualMachine reads {name}; remove it from this "
                              f"{data['kind']}")
