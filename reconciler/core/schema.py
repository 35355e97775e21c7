"""The JSON schemas shipped in ``schemas/``: the single source of field names, types, defaults."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

KINDS = {
    "VirtualMachine": "virtualmachine.v1.json",
    "Network": "network.v1.json",
    "StoragePool": "storagepool.v1.json",
    "Host": "host.v1.json",
}
MANIFEST = "manifest"  # every kind in one schema, for files that mix kinds
OTHER = {MANIFEST: "manifest.v1.json", "plan": "plan.v1.json"}
ALIASES = {"all": MANIFEST}
DRAFT = "http://json-schema.org/draft-07/schema#"  # what editors (yaml-language-server) support


def lookup(name: str) -> str:
    """The schema a user means by ``name``: a kind in any case (``network``), ``manifest`` or
    ``all`` for every kind, or ``plan``. KeyError for anything else. Pure."""
    known = {key.lower(): key for key in [*KINDS, *OTHER]}
    lowered = name.lower()
    found = known.get(ALIASES.get(lowered, lowered))
    if found is None:
        raise KeyError(name)
    return found


@cache
def load(name: str) -> dict[str, Any]:
    """A schema by kind (``VirtualMachine``) or by name (``manifest``, ``plan``)."""
    filename = KINDS.get(name) or OTHER.get(name)
    if filename is None:
        raise KeyError(name)
    shipped = Path(__file__).with_name("schemas") / filename
    if shipped.is_file():  # an installed package; importlib.resources costs ~5 ms to import
        schema: dict[str, Any] = json.loads(shipped.read_text("utf-8"))
        return schema
    from importlib import resources  # a package not on the file system (a zip)

    schema = json.loads(
        resources.files("reconciler").joinpath("schemas", filename).read_text("utf-8"))
    return schema


def manifest_schema() -> dict[str, Any]:
    """The schema of any manifest, generated from the kinds' schemas (``manifest.v1.json`` is
    this, written out): each kind's own schema applies to a document whose ``kind`` names it
    (if/then, so that an editor reports only that kind's errors, not every kind's)."""
    branches: list[dict[str, Any]] = []
    shared: dict[str, Any] = {}
    for kind in KINDS:
        kind_schema = copy.deepcopy(load(kind))
        assert kind_schema["$schema"] == DRAFT, kind
        for key in ("$schema", "$id"):
            del kind_schema[key]
        for name, definition in kind_schema.pop("definitions", {}).items():
            assert shared.setdefault(name, definition) == definition, name  # one meaning each
        shared[kind] = kind_schema
        branches.append({"if": {"properties": {"kind": {"const": kind}}, "required": ["kind"]},
                         "then": {"$ref": f"#/definitions/{kind}"}})
    return {
        "$schema": DRAFT,
        "$id": "https://reconciler.dev/schemas/manifest.v1.json",
        "title": "reconciler manifest",
        "description": "Any reconciler manifest: the schema of the kind that `kind` names.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": {"const": "reconciler/v1"},
            "kind": {"description": "What the document declares.", "enum": list(KINDS)},
        },
        "allOf": branches,
        "definitions": shared,
    }


def dumps(schema: dict[str, Any]) -> str:
    """A schema as ``reconciler schema`` prints it and ``schemas/`` holds a generated one."""
    return json.dumps(schema, indent=2)


def with_defaults(instance: object, schema: dict[str, Any],
                  root: dict[str, Any] | None = None) -> object:
    """A copy of ``instance`` with the schema's ``default`` values filled in. Pure."""
    root = root or schema
    if "$ref" in schema:
        schema = _resolve(root, schema["$ref"])
    if isinstance(instance, dict):
        out = copy.copy(instance)
        for key, sub in schema.get("properties", {}).items():
            if key not in out and "default" in sub:
                default = sub["default"]
                out[key] = default if type(default) in _IMMUTABLE else copy.deepcopy(default)
            if key in out and isinstance(out[key], dict | list):  # nothing to fill in others
                out[key] = with_defaults(out[key], sub, root)
        return out
    if isinstance(instance, list) and isinstance(schema.get("items"), dict):
        return [with_defaults(item, schema["items"], root) for item in instance]
    return instance


_IMMUTABLE = {str, int, float, bool, type(None)}  # defaults used as they are, not copied


def _resolve(root: dict[str, Any], ref: str) -> dict[str, Any]:
    node: dict[str, Any] = root
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node
