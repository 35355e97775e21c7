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
OTHER = {"plan": "plan.v1.json"}


@cache
def load(name: str) -> dict[str, Any]:
    """A schema by kind (``VirtualMachine``) or by name (``plan``)."""
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
