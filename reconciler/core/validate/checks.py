"""Documents in, desired resources and problems out: the schema of each kind (its errors in
words an operator can act on: ``messages``), and each kind's own checks (``vm``, ``network``,
``pool``) past it. Pure."""

from __future__ import annotations

import copy
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.core import schema as schemas
from reconciler.core.errors import Problem, short
from reconciler.core.record import Record
from reconciler.core.units import parse_duration, parse_quantity
from reconciler.core.validate import host, network, pool, vm
from reconciler.core.validate.common import ADOPT, NAME, SUSPEND, spec_hash
from reconciler.core.validate.crossdoc import combine
from reconciler.core.validate.document import Document
from reconciler.core.validate.messages import kind_of, odd_keys, translate
from reconciler.core.validate.result import (
    DEFAULT_STORAGE_ROOTS,
    Checked,
    ClaimKey,
    Validated,
)

# Where others import them from.
__all__ = ["ADOPT", "SUSPEND", "check", "spec_hash", "validate"]

if TYPE_CHECKING:
    # No stubs in the environment (types-jsonschema is not a test dependency): Any here.
    import jsonschema  # type: ignore[import-untyped]
    import jsonschema_rs


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
        schema = schemas.load(kind)
        draft = jsonschema.validators.validator_for(schema)  # the draft editors read it with
        strict = jsonschema.validators.extend(
            draft,
            type_checker=draft.TYPE_CHECKER.redefine(
                "integer",
                lambda _checker, value: isinstance(value, int) and not isinstance(value, bool),
            ),
        )
        cached = strict(schema, format_checker=formats)
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


def validate(documents: Iterable[Document], load_problems: Iterable[Problem] = (),
             storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS) -> Validated:
    """Check every document; collect every problem, not only the first. Pure."""
    return combine([check(doc, storage_roots) for doc in documents], load_problems)


@dataclass(frozen=True, eq=False, repr=False)
class _Kind(Record):
    """A kind's own checks: of a schema-valid document (with its defaults filled in), and the
    ones that also run on a document with schema errors, so that all its errors show at once."""

    check: Callable[[Document, dict[str, Any], Sequence[str]], Checked]
    partial: Callable[[Document, dict[str, Any]], Iterable[Problem]] | None = None


_KINDS: dict[str, _Kind] = {
    vm.KIND: _Kind(lambda doc, data, _roots: vm.check(doc, data), vm.semantics),
    network.KIND: _Kind(lambda doc, data, _roots: network.check(doc, data)),
    pool.KIND: _Kind(pool.check),
    host.KIND: _Kind(lambda doc, data, _roots: host.check(doc, data)),
}


def check(doc: Document, storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS) -> Checked:
    """One document on its own: its problems, the name it claims and, when it has no problem,
    the resource it declares. Pure."""
    doc_problems = list(_check_document(doc))
    if doc_problems or doc.flawed:
        # The name may still be readable: it is claimed, so that duplicates are reported.
        name = _name_of(doc.data)
        # And the cross-field checks of the parts that are well-formed: all errors at once.
        declared = doc.data.get("kind") if isinstance(doc.data, dict) else None
        kind = _KINDS.get(declared) if isinstance(declared, str) else None
        if kind is not None and kind.partial is not None:
            assert isinstance(declared, str)
            data = schemas.with_defaults(doc.data, schemas.load(declared))
            assert isinstance(data, dict)
            doc_problems.extend(kind.partial(doc, data))
        return Checked(doc.file, tuple(doc_problems), _claim_key(doc.data, name) if name else None,
                       doc.position(NAME))
    assert isinstance(doc.data, dict)
    data = schemas.with_defaults(doc.data, schemas.load(doc.data["kind"]))
    assert isinstance(data, dict)
    return _KINDS[data["kind"]].check(doc, data, storage_roots)


def _claim_key(data: object, name: str) -> ClaimKey:
    kind = data.get("kind") if isinstance(data, dict) else None
    return (kind if kind in (network.KIND, pool.KIND, host.KIND) else vm.KIND, name)


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
    odd = list(odd_keys(data, ()))
    for path, key in odd:
        what = f"the boolean {str(key).lower()}" if isinstance(key, bool) else kind_of(key)
        yield doc.problem(path, f"a key must be a string, and YAML reads this one as {what}; "
                                "quote it")
    if not odd and _fast_valid(kind, data):
        return
    validator = _validator(kind)
    for error in validator.iter_errors(data):
        yield from translate(doc, error)
