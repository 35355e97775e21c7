"""Schema and cross-document checks: documents in, desired VMs and problems out. Pure."""

from __future__ import annotations

import copy
import difflib
import hashlib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from reconciler.core import cloudinit
from reconciler.core import schema as schemas
from reconciler.core.errors import Problem, short
from reconciler.core.model.common import Source
from reconciler.core.model.vm import (
    CloudInit,
    DesiredVM,
    Disk,
    Nic,
    PowerState,
    VMSpec,
    applied_record,
)
from reconciler.core.units import parse_duration, parse_quantity
from reconciler.core.validate import infra as infra_validate
from reconciler.core.validate.crossdoc import combine
from reconciler.core.validate.document import Document, FieldPath, dotted
from reconciler.core.validate.result import (
    DEFAULT_STORAGE_ROOTS,
    Checked,
    ClaimKey,
    Position,
    Validated,
)

if TYPE_CHECKING:
    # No stubs in the environment (types-jsonschema is not a test dependency): Any here.
    import jsonschema  # type: ignore[import-untyped]
    import jsonschema_rs

MIN_MEMORY = 16 << 20


def _is_quantity(value: object) -> bool:
    return not isinstance(value, str) or parse_quantity(value) >= 0


def _is_duration(value: object) -> bool:
    return not isinstance(value, str) or parse_duration(value) >= 0


def _is_ipv4(value: object) -> bool:
    """jsonschema's ipv4 check, for jsonschema-rs."""
    return not isinstance(value, str) or bool(ipaddress.IPv4Address(value))


# Each format the schemas use: its check, and what the check raises for a wrong value. The fast
# check (jsonschema-rs) runs these; jsonschema has its own ipv4.
_FORMATS: dict[str, tuple[Callable[[object], bool], type[Exception]]] = {
    "quantity": (_is_quantity, ValueError),
    "duration": (_is_duration, ValueError),
    "ipv4": (_is_ipv4, ipaddress.AddressValueError),
}


def _validator(kind: str) -> jsonschema.protocols.Validator:
    """The jsonschema validator of a kind, which explains what is wrong with a document."""
    cached = _VALIDATORS.get(kind)
    if cached is None:
        import jsonschema  # only needed for documents with errors

        formats = jsonschema.FormatChecker()  # its own checks (ipv4) and ours
        for name in ("quantity", "duration"):
            check, raises = _FORMATS[name]
            formats.checks(name, raises=raises)(check)
        # YAML's 2.0 is a float: refuse it where a whole number is meant (JSON Schema would
        # accept it).
        draft = jsonschema.Draft202012Validator
        strict = jsonschema.validators.extend(
            draft,
            type_checker=draft.TYPE_CHECKER.redefine(
                "integer",
                lambda _checker, value: isinstance(value, int) and not isinstance(value, bool),
            ),
        )
        cached = strict(schemas.load(kind), format_checker=formats)
        _VALIDATORS[kind] = cached
    return cached


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


# --- the fast pass/fail check ---------------------------------------------------------------------
# jsonschema-rs says whether a document is valid many times faster than jsonschema; only the
# documents it does not call valid go through jsonschema, whose errors become the problems. It
# must never call valid what jsonschema would not: the same format checks run (in Python), a
# whole number must be an int (the ``x-reconciler-int`` keyword below), and anything it cannot
# read (a YAML date, a key that is not a string) or any doubt sends the document to jsonschema.

_STRICT_INT = "x-reconciler-int"


class _StrictInt:
    """``2.0`` is not a whole number here (jsonschema-rs would take it for ``integer``)."""

    def __init__(self, _parent: object, _value: object, _path: object) -> None:
        pass

    def validate(self, instance: object) -> None:
        if not isinstance(instance, int) or isinstance(instance, bool):
            raise ValueError("expected a whole number")


def _passes(check: Callable[[object], bool], raises: type[Exception]) -> Callable[[object], bool]:
    def checked(value: object) -> bool:
        try:
            return bool(check(value))
        except raises:
            return False

    return checked


def _fast_schema(node: object, used: set[str]) -> object:
    """A copy of the schema with the strict-integer keyword wherever ``integer`` is a type;
    collects the formats it uses."""
    if isinstance(node, list):
        return [_fast_schema(item, used) for item in node]
    if not isinstance(node, dict):
        return copy.deepcopy(node)
    out = {key: _fast_schema(value, used) for key, value in node.items()}
    kind = node.get("type")
    if kind == "integer" or (isinstance(kind, list) and "integer" in kind):
        out[_STRICT_INT] = True
    if isinstance(node.get("format"), str):
        used.add(node["format"])
    return out


def _fast_validator(kind: str) -> jsonschema_rs.Validator | None:
    """jsonschema-rs's validator of a kind, or None (not installed, or a schema it cannot be
    trusted with): then every document goes through jsonschema."""
    if kind not in _FAST:
        _FAST[kind] = None
        try:
            import jsonschema_rs
        except ImportError:
            return None
        used: set[str] = set()
        schema = _fast_schema(schemas.load(kind), used)
        assert isinstance(schema, dict)  # a schema is a mapping, and so is its copy
        if used - _FORMATS.keys():
            return None  # a format whose check here might differ from jsonschema's
        try:
            _FAST[kind] = jsonschema_rs.validator_for(
                schema, validate_formats=True, keywords={_STRICT_INT: _StrictInt},
                formats={name: _passes(*_FORMATS[name]) for name in used})
        except Exception:  # an older jsonschema-rs (no custom keywords): jsonschema only
            return None
    return _FAST[kind]


_FAST: dict[str, jsonschema_rs.Validator | None] = {}


def _fast_valid(kind: str, data: object) -> bool:
    """True only if the document is certainly valid; False means "ask jsonschema"."""
    fast = _fast_validator(kind)
    if fast is None:
        return False
    try:
        return bool(fast.is_valid(data))
    except Exception:  # a value it cannot read (dates, binary, non-string keys)
        return False


def _shown(value: object, path: FieldPath) -> str:
    """Values under spec.cloudInit (user data, passwords, keys) are never shown, only their
    kind."""
    if path[:2] != ("spec", "cloudInit"):
        return short(value)
    return "a number" if isinstance(value, int | float) and not isinstance(value, bool) else \
        "a value (not shown: cloud-init data)"


def validate(documents: Iterable[Document], load_problems: Iterable[Problem] = (),
             storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS) -> Validated:
    """Check every document; collect every problem, not only the first. Pure."""
    return combine([check(doc, storage_roots) for doc in documents], load_problems)


def check(doc: Document, storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS) -> Checked:
    """One document on its own: its problems, the name it claims and, when it has no problem,
    the resource it declares. Pure."""
    name_at = doc.position(("metadata", "name"))
    doc_problems = list(_check_document(doc))
    if doc_problems or doc.flawed:
        # The name may still be readable: it is claimed, so that duplicates are reported.
        name = _name_of(doc.data)
        # And the cross-field checks of the parts that are well-formed: all errors at once.
        if isinstance(doc.data, dict) and doc.data.get("kind") == "VirtualMachine":
            data = schemas.with_defaults(doc.data, schemas.load("VirtualMachine"))
            assert isinstance(data, dict)
            doc_problems.extend(_check_semantics(doc, data))
        return Checked(doc.file, tuple(doc_problems), _claim_key(doc.data, name) if name else None,
                       name_at)
    assert isinstance(doc.data, dict)
    kind = doc.data["kind"]
    data = schemas.with_defaults(doc.data, schemas.load(kind))
    assert isinstance(data, dict)
    claim = _claim_key(data, data["metadata"]["name"])
    if kind == "Network":
        net, found = infra_validate.network(doc, data)
        found = [*_vm_annotations(doc, data), *found]
        return Checked(doc.file, tuple(found), claim, name_at, network=None if found else net,
                       where=_positions(doc, [("spec", "bridge")]))
    if kind == "StoragePool":
        pool, found = infra_validate.pool(doc, data, storage_roots)
        found = [*_vm_annotations(doc, data), *found]
        return Checked(doc.file, tuple(found), claim, name_at, pool=None if found else pool)
    semantic = tuple(_check_semantics(doc, data))
    if semantic:
        return Checked(doc.file, semantic, claim, name_at)
    spec = data["spec"]
    paths: list[FieldPath] = [("spec", "cloudInit")]
    paths += [("spec", "disks", i, "name") for i in range(len(spec["disks"]))]
    paths += [("spec", "networks", i, "mac") for i in range(len(spec["networks"]))]
    return Checked(doc.file, (), claim, name_at, vm=_desired(doc, data),
                   where=_positions(doc, paths))


def _positions(doc: Document, paths: Iterable[FieldPath]) -> dict[str, Position]:
    return {dotted(path): doc.position(path) for path in paths}


def _claim_key(data: object, name: str) -> ClaimKey:
    kind = data.get("kind") if isinstance(data, dict) else None
    return (kind if kind in ("Network", "StoragePool") else "VirtualMachine", name)


def _name_of(data: object) -> str | None:
    if isinstance(data, dict) and isinstance(data.get("metadata"), dict):
        name = data["metadata"].get("name")
        return name if isinstance(name, str) else None
    return None


def _check_document(doc: Document) -> Iterable[Problem]:
    data = doc.data
    if not isinstance(data, dict):
        yield doc.problem((), "a manifest must be a mapping with apiVersion, kind, metadata, spec")
        return
    kind = data.get("kind")
    if not isinstance(kind, str) or kind not in schemas.KINDS:
        known = ", ".join(schemas.KINDS)
        what = "required field is missing" if "kind" not in data else f"unknown kind {short(kind)}"
        yield doc.problem(("kind",), f"{what}; expected one of: {known}")
        return
    if _fast_valid(kind, data):
        return
    validator = _validator(kind)
    for error in validator.iter_errors(data):
        yield from _translate(doc, error)


def _translate(doc: Document, error: jsonschema.ValidationError) -> Iterable[Problem]:
    """A jsonschema error as problems an operator can act on."""
    path: FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(schema.get("properties", {}))
        for key in error.instance:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"allowed: {', '.join(allowed)}"
            # A key YAML read as a number (1:) is indexed by its text, like every other key.
            yield doc.problem((*path, str(key)), f"unknown field; {hint}")
        return
    if error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        line, column = doc.position(path)
        yield Problem(doc.file, line, column, dotted((*path, missing)), "required field is missing")
        return
    shown = _shown(error.instance, path)
    fmt = schema.get("format")
    if fmt in ("quantity", "duration"):
        parse = parse_quantity if fmt == "quantity" else parse_duration
        try:
            parse(error.instance)
        except ValueError as exc:
            yield doc.problem(path, str(exc).replace(repr(error.instance), shown))
            return
    if error.validator == "pattern" and path and path[-1] == "name":
        longest = 63 if path == ("metadata", "name") else 32
        yield doc.problem(path, f"{shown} is not a valid name: use lowercase letters, "
                                "digits and '-', start and end with a letter or digit, "
                                f"at most {longest} characters")
        return
    if error.validator == "pattern" and path and path[-1] == "mac":
        yield doc.problem(path, f"{shown} is not a MAC address; write six hex pairs "
                                "like 52:54:00:12:34:56")
        return
    if error.validator == "type":
        yield doc.problem(path, _type_message(error.validator_value, error.instance, shown))
        return
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        yield doc.problem(path, "give exactly one of 'network' or 'bridge'")
        return
    if error.validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        yield doc.problem(path, f"{shown} is not one of: {choices}")
        return
    if error.validator == "const":
        yield doc.problem(path, f"{shown}: expected {short(error.validator_value)}")
        return
    # jsonschema's own wording starts with the value's repr, which may be long or secret.
    yield doc.problem(path, error.message.replace(repr(error.instance), shown))


_TYPE_NAMES = {"integer": "a whole number", "number": "a number", "string": "a string",
               "boolean": "true or false", "object": "a mapping", "array": "a list"}


def _type_message(expected: object, instance: object, shown: str) -> str:
    names = [str(name) for name in expected] if isinstance(expected, list) else [str(expected)]
    wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
    if instance is None:
        got = "nothing (null)"
    elif isinstance(instance, bool):
        got = str(instance).lower()
    elif isinstance(instance, dict):
        got = "a mapping"
    elif isinstance(instance, list):
        got = "a list"
    else:
        got = shown
    quote = "; quote it" if "string" in names and isinstance(instance, int | float) else ""
    return f"expected {wanted}, got {got}{quote}"


_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _size(value: object) -> int | None:
    try:
        return parse_quantity(value)
    except ValueError:
        return None


def _check_semantics(doc: Document, data: dict[str, Any]) -> Iterable[Problem]:
    """Checks across fields. Also run on a document with schema errors, so each check skips
    what is malformed (the schema has already said so)."""
    yield from _check_annotations(doc, data)
    spec = data.get("spec")
    if not isinstance(spec, dict):
        return
    vcpus, max_vcpus = _count(spec.get("vcpus")), _count(spec.get("maxVcpus", spec.get("vcpus")))
    memory = _size(spec.get("memory"))
    max_memory = _size(spec.get("maxMemory", spec.get("memory")))
    if vcpus is not None and max_vcpus is not None and vcpus > max_vcpus:
        yield doc.problem(("spec", "vcpus"), f"{vcpus} exceeds maxVcpus {max_vcpus}")
    if memory is not None and memory < MIN_MEMORY:
        yield doc.problem(("spec", "memory"), "must be at least 16MiB")
    if memory is not None and max_memory is not None and memory > max_memory:
        yield doc.problem(("spec", "memory"),
                          f"{spec['memory']} exceeds maxMemory {spec['maxMemory']}")
    disks = spec.get("disks")
    names: dict[str, int] = {}
    for i, disk in enumerate(disks if isinstance(disks, list) else []):
        if not isinstance(disk, dict):
            continue
        name = disk.get("name")
        if isinstance(name, str) and name in names:
            yield doc.problem(("spec", "disks", i, "name"),
                              f"disk {short(name)} is already declared as disks[{names[name]}]")
        if isinstance(name, str):
            names.setdefault(name, i)
        if name == cloudinit.SEED_DISK and isinstance(spec.get("cloudInit"), dict):
            yield doc.problem(("spec", "disks", i, "name"),
                              f"{name!r} is the cloud-init seed volume's name; rename the disk")
        if _size(disk.get("size")) == 0:
            yield doc.problem(("spec", "disks", i, "size"), "must be larger than 0")
    networks = spec.get("networks")
    macs: dict[str, int] = {}
    for i, nic in enumerate(networks if isinstance(networks, list) else []):
        mac = nic.get("mac") if isinstance(nic, dict) else None
        if not isinstance(mac, str) or not _MAC.match(mac.lower()):
            continue
        mac = mac.lower()
        if mac in macs:
            yield doc.problem(("spec", "networks", i, "mac"),
                              f"MAC {mac} is already used by networks[{macs[mac]}]")
        macs.setdefault(mac, i)
        if int(mac[:2], 16) & 1:
            yield doc.problem(("spec", "networks", i, "mac"),
                              "a multicast MAC cannot be used; the first byte must be even")


def _desired(doc: Document, data: dict[str, Any]) -> DesiredVM:
    spec = data["spec"]
    memory = parse_quantity(spec["memory"])
    vm = VMSpec(
        name=data["metadata"]["name"],
        vcpus=spec["vcpus"],
        max_vcpus=spec.get("maxVcpus", spec["vcpus"]),
        memory=memory,
        max_memory=parse_quantity(spec["maxMemory"]) if "maxMemory" in spec else memory,
        state=PowerState(spec["state"]),
        autostart=spec["autostart"],
        update_policy=spec["updatePolicy"],
        shutdown_timeout=parse_duration(spec["shutdownTimeout"]),
        protect=spec["protect"],
        disks=tuple(
            Disk(name=d["name"], size=parse_quantity(d["size"]), pool=d["pool"],
                 format=d["format"], image=d.get("image"), bus=d["bus"], reclaim=d["reclaim"])
            for d in spec["disks"]
        ),
        nics=tuple(
            Nic(network=n.get("network"), bridge=n.get("bridge"),
                mac=n["mac"].lower() if "mac" in n else None, model=n["model"])
            for n in spec["networks"]
        ),
        graphics=spec["graphics"],
        firmware=spec["firmware"],
        boot=tuple(spec["boot"]),
        labels=tuple(sorted(data["metadata"]["labels"].items())),
        cloud_init=_cloud_init(data["metadata"]["name"], spec),
    )
    applied = applied_record(vm)
    line, _ = doc.position(("metadata", "name"))
    return DesiredVM(
        spec=vm,
        source=Source(doc.file, doc.relative, line),
        spec_hash=spec_hash(applied),
        adopt=data["metadata"]["annotations"].get(ADOPT) == "true",
        suspend=data["metadata"]["annotations"].get(SUSPEND) == "true",
    )


ADOPT = "reconciler/adopt"
SUSPEND = "reconciler/suspend"
_OWN_ANNOTATIONS = (ADOPT, SUSPEND)  # read on VirtualMachine manifests only


def _check_annotations(doc: Document, data: dict[str, Any]) -> Iterable[Problem]:
    """The tool's own annotations take "true" or "false" (a typo must not read as "false")."""
    metadata = data.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    for name in _OWN_ANNOTATIONS:
        value = annotations.get(name) if isinstance(annotations, dict) else None
        if isinstance(value, str) and value not in ("true", "false"):
            yield doc.problem(("metadata", "annotations", name),
                              f'{short(value)} is not "true" or "false"')


def _vm_annotations(doc: Document, data: dict[str, Any]) -> Iterable[Problem]:
    """The tool's annotations on a network or pool would be ignored: say so."""
    for name in _OWN_ANNOTATIONS:
        if name in data["metadata"].get("annotations", {}):
            yield doc.problem(("metadata", "annotations", name),
                              f"only a VirtualMachine reads {name}; remove it from this "
                              f"{data['kind']}")


def _cloud_init(name: str, spec: dict[str, Any]) -> CloudInit | None:
    if "cloudInit" not in spec:
        return None
    pool = spec["disks"][0]["pool"] if spec["disks"] else "default"
    return cloudinit.from_manifest(name, spec["cloudInit"], pool=pool)


def spec_hash(applied: Mapping[str, object]) -> str:
    canonical = json.dumps(applied, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
