"""Checks of StoragePool manifests past the schema, and their desired model. Pure."""

from __future__ import annotations

import posixpath
from collections.abc import Sequence
from typing import Any

from reconciler.core.errors import Problem, short
from reconciler.core.model.pool import DesiredPool, PoolSpec, below
from reconciler.core.validate.common import NAME, claim, foreign_annotations, source, spec_hash
from reconciler.core.validate.document import Document
from reconciler.core.validate.result import Checked

KIND = "StoragePool"


def check(doc: Document, data: dict[str, Any], storage_roots: Sequence[str]) -> Checked:
    """A schema-valid StoragePool document (defaults filled in): its problems, or the desired
    pool. Its path must be below one of ``storage_roots``. Pure."""
    pool, found = desired(doc, data, storage_roots)
    found = [*foreign_annotations(doc, data), *found]
    return Checked(doc.file, tuple(found), claim(data), doc.position(NAME),
                   pool=None if found else pool)


def desired(doc: Document, data: dict[str, Any],
            storage_roots: Sequence[str]) -> tuple[DesiredPool | None, list[Problem]]:
    """The desired pool, or why its path is not allowed. Pure."""
    spec = data["spec"]
    path = posixpath.normpath(spec["path"])
    roots = [posixpath.normpath(root) for root in storage_roots]
    if not any(below(path, root) for root in roots):
        allowed = ", ".join(roots) or "none configured"
        return None, [doc.problem(("spec", "path"),
                                  f"{short(spec['path'])} is not below an allowed storage root "
                                  f"({allowed}); the host's config lists them in storageRoots")]
    model = PoolSpec(name=data["metadata"]["name"], path=path, autostart=spec["autostart"],
                     type=spec["type"])
    record = {"path": path, "autostart": model.autostart, "type": model.type}
    return DesiredPool(model, source(doc), spec_hash(record)), []
