"""Documents in, desired resources and problems out: the schema of each kind, its errors in
words an operator can act on, and each kind's own checks (``vm``, ``network``, ``pool``) past
it. Pure."""

from __future__ import annotations

import copy
import datetime
import difflib
import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.core import schema as schemas
from reconciler.core.errors import Problem, short
from reconciler.core.units import parse_duration, parse_quantity
from reconciler.core.validate import network, pool, vm
from reconciler.core.validate.common import ADOPT, NAME, SUSPEND, spec_hash
from reconciler.core.validate.crossdoc import combine
from reconciler.core.validate.document import Document, FieldPath, dotted
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


# Errors about the spelling of a string of the right type: a quantity or duration (shown with
# how to write it, as the SPEC's example does), a word of an enum, a name, a MAC address.
_CONTENT_ERRORS = {"enum", "format", "pattern", "const"}
_LONGEST_SHOWN = 64
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n"}  # quoted: strings


def _shown(value: object, path: FieldPath, validator: object = None) -> str:
    """A value as a message may show it. Under ``spec`` (user data, passwords and keys live
    there, and a misplaced one lands in another field): only numbers, true/false and null, a
    quoted boolean word, and a short one-line string of the right type in an error about its
    spelling (a quantity, an enum word, a name); a value of the wrong type, a long or
    multi-line string: only its kind. Under ``spec.cloudInit``: never, only its kind."""
    if not path or path[0] != "spec":
        return short(value)
    if isinstance(value, bool) or value is None:
        return _kind(value)
    if path[:2] == ("spec", "cloudInit"):
        return ("a number" if isinstance(value, int | float) else
                "a value (not shown: cloud-init data)")
    if isinstance(value, int | float):
        return short(value)
    if isinstance(value, str) and (value.lower() in _BOOLEAN_WORDS or (
            validator in _CONTENT_ERRORS and "\n" not in value and "\r" not in value
            and len(value) <= _LONGEST_SHOWN)):
        return short(value)
    return _kind(value) + (" (not shown)" if isinstance(value, str) else "")


def _kind(value: object) -> str:
    """What a value is, in the words of a message, without the value."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return str(value).lower()
    kinds = ((str, "a string"), (dict, "a mapping"), (list, "a list"), (int, "a whole number"),
             (float, "a decimal number"), (datetime.datetime, "a date and time"),
             (datetime.date, "a date"), (bytes, "binary data"))
    return next((name for cls, name in kinds if isinstance(value, cls)), "a value")


def _boolean_word(doc: Document, path: FieldPath, value: bool) -> str:
    """``YAML 1.1 reads off as the boolean false``, or ``got the boolean false`` when it was
    written true or false."""
    word = doc.spelled.get(path)
    said = str(value).lower()
    return (f"YAML 1.1 reads {word} as the boolean {said}" if word
            else f"got the boolean {said}")


def validate(documents: Iterable[Document], load_problems: Iterable[Problem] = (),
             storage_roots: Sequence[str] = DEFAULT_STORAGE_ROOTS) -> Validated:
    """Check every document; collect every problem, not only the first. Pure."""
    return combine([check(doc, storage_roots) for doc in documents], load_problems)


@dataclass(frozen=True)
class _Kind:
    """A kind's own checks: of a schema-valid document (with its defaults filled in), and the
    ones that also run on a document with schema errors, so that all its errors show at once."""

    check: Callable[[Document, dict[str, Any], Sequence[str]], Checked]
    partial: Callable[[Document, dict[str, Any]], Iterable[Problem]] | None = None


_KINDS: dict[str, _Kind] = {
    vm.KIND: _Kind(lambda doc, data, _roots: vm.check(doc, data), vm.semantics),
    network.KIND: _Kind(lambda doc, data, _roots: network.check(doc, data)),
    pool.KIND: _Kind(pool.check),
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
    return (kind if kind in (network.KIND, pool.KIND) else vm.KIND, name)


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
    odd = list(_odd_keys(data, ()))
    for path, key in odd:
        what = f"the boolean {str(key).lower()}" if isinstance(key, bool) else _kind(key)
        yield doc.problem(path, f"a key must be a string, and YAML reads this one as {what}; "
                                "quote it")
    if not odd and _fast_valid(kind, data):
        return
    validator = _validator(kind)
    for error in validator.iter_errors(data):
        yield from _translate(doc, error)


def _odd_keys(data: object, path: FieldPath) -> Iterable[tuple[FieldPath, object]]:
    """Every key that is not a string (YAML 1.1 reads ``on:`` as true, ``1:`` as a number),
    with its path. Walks what the document's node budget bounded (aliases included)."""
    stack: list[tuple[object, FieldPath]] = [(data, path)]
    while stack:
        node, at = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if not isinstance(key, str):
                    yield (*at, key), key
                stack.append((value, (*at, key)))
        elif isinstance(node, list):
            stack.extend((item, (*at, i)) for i, item in enumerate(node))


def _translate(doc: Document, error: jsonschema.ValidationError) -> Iterable[Problem]:
    """A jsonschema error as problems an operator can act on."""
    path: FieldPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = list(schema.get("properties", {}))
        for key in error.instance:
            if key in allowed or not isinstance(key, str):  # odd keys: said already
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
    instance, validator = error.instance, error.validator
    shown = _shown(instance, path, validator)
    fmt = schema.get("format")
    if fmt in ("quantity", "duration") and not isinstance(instance, bool):
        parse = parse_quantity if fmt == "quantity" else parse_duration
        try:
            parse(instance)
        except ValueError as exc:
            if shown == short(instance):  # else its hint would repeat parts of the value
                yield doc.problem(path, str(exc).replace(repr(instance), shown))
            else:
                example = "2GiB or 512MiB" if fmt == "quantity" else "30s, 5m or 1h"
                yield doc.problem(path, f"expected a {fmt} such as {example}, got {shown}")
            return
    said = f"{shown} is" if shown == short(instance) else "it is"  # else: not shown
    if validator == "pattern" and path and path[-1] == "name":
        longest = 63 if path == ("metadata", "name") else 32
        yield doc.problem(path, f"{said} not a valid name: use lowercase letters, "
                                "digits and '-', start and end with a letter or digit, "
                                f"at most {longest} characters")
        return
    if validator == "pattern" and path and path[-1] == "mac":
        yield doc.problem(path, f"{said} not a MAC address; write six hex pairs "
                                "like 52:54:00:12:34:56")
        return
    if validator == "type":
        yield doc.problem(path, _type_message(doc, path, error.validator_value, instance,
                                              shown))
        return
    if validator == "oneOf" and isinstance(instance, dict):
        yield doc.problem(path, "give exactly one of 'network' or 'bridge'")
        return
    if validator == "enum":
        choices = ", ".join(map(str, error.validator_value))
        if isinstance(instance, bool):
            yield doc.problem(path, f"{_boolean_word(doc, path, instance)}; write one of: "
                                    f"{choices}")
        elif shown == short(instance):
            yield doc.problem(path, f"{shown} is not one of: {choices}")
        else:
            close = difflib.get_close_matches(instance, list(map(str, error.validator_value)),
                                              n=1) if isinstance(instance, str) else []
            hint = f"; did you mean {close[0]!r}?" if close else ""
            yield doc.problem(path, f"expected one of: {choices}, got {shown}{hint}")
        return
    if validator == "const":
        yield doc.problem(path, f"{shown}: expected {short(error.validator_value)}")
        return
    bound = error.validator_value
    words = {
        "minimum": f"{shown} is less than the minimum of {bound}",
        "maximum": f"{shown} is greater than the maximum of {bound}",
        "minLength": "must not be empty" if bound == 1 else f"shorter than {bound} characters",
        "maxLength": f"longer than {bound} characters",
        "minItems": "must not be empty" if bound == 1 else f"fewer than {bound} items",
        "maxItems": f"more than {bound} items",
        "uniqueItems": "an item is listed twice",
        "format": f"{said} not a {short(schema.get('format'))}",
        "pattern": f"{said.removesuffix(' is')} does not match {short(bound)}",
    }
    if isinstance(validator, str) and validator in words:
        yield doc.problem(path, words[validator])
        return
    if path and path[0] == "spec":  # jsonschema's own wording may hold the value
        yield doc.problem(path, f"fails the schema's {validator!r} check")
        return
    # jsonschema's own wording starts with the value's repr, which may be long.
    yield doc.problem(path, error.message.replace(repr(instance), shown))


_TYPE_NAMES = {"integer": "a whole number", "number": "a number", "string": "a string",
               "boolean": "true or false", "object": "a mapping", "array": "a list"}


def _type_message(doc: Document, path: FieldPath, expected: object, instance: object,
                  shown: str) -> str:
    names = [str(name) for name in expected] if isinstance(expected, list) else [str(expected)]
    wanted = " or ".join(_TYPE_NAMES.get(name, name) for name in names)
    word = doc.spelled.get(path)
    if isinstance(instance, bool):
        got = str(instance).lower()
        if word:
            got += f" (YAML 1.1 reads {word} as a boolean)"
    elif isinstance(instance, int | float) and word:  # 52:54:00:12:34:56
        got = "a number (YAML 1.1 reads numbers joined by ':' as one base-60 number)"
    elif isinstance(instance, dict | list) or instance is None:
        got = _kind(instance)
    else:
        got = shown
    hint = ""
    if "string" in names and isinstance(instance, int | float):
        hint = f'; quote it: "{word or got}"' if isinstance(instance, bool) else "; quote it"
    elif (names == ["integer"] or names == ["number"]) and isinstance(instance, str) \
            and instance.strip().isdigit():
        hint = "; remove the quotes"
    return f"expected {wanted}, got {got}{hint}"
