"""Schema errors in words an operator can act on, and what of a value a message may show
(never a secret from under ``spec``). Pure."""

from __future__ import annotations

import datetime
import difflib
from collections.abc import Iterable
from typing import TYPE_CHECKING

from reconciler.core.errors import Problem, short
from reconciler.core.units import parse_duration, parse_quantity
from reconciler.core.validate.document import Document, FieldPath, dotted

if TYPE_CHECKING:
    import jsonschema  # type: ignore[import-untyped]

# Errors about the spelling of a string of the right type: a quantity or duration (shown with
# how to write it, as the SPEC's example does), a word of an enum, a name, a MAC address.
_CONTENT_ERRORS = {"enum", "format", "pattern", "const"}
_LONGEST_SHOWN = 64
_BOOLEAN_WORDS = {"true", "false", "yes", "no", "on", "off", "y", "n"}  # quoted: strings


def shown_value(value: object, path: FieldPath, validator: object = None) -> str:
    """A value as a message may show it. Under ``spec`` (user data, passwords and keys live
    there, and a misplaced one lands in another field): only numbers, true/false and null, a
    quoted boolean word, and a short one-line string of the right type in an error about its
    spelling (a quantity, an enum word, a name); a value of the wrong type, a long or
    multi-line string: only its kind. Under ``spec.cloudInit``: never, only its kind."""
    if not path or path[0] != "spec":
        return short(value)
    if isinstance(value, bool) or value is None:
        return kind_of(value)
    if path[:2] == ("spec", "cloudInit"):
        return ("a number" if isinstance(value, int | float) else
                "a value (not shown: cloud-init data)")
    if isinstance(value, int | float):
        return short(value)
    if isinstance(value, str) and (value.lower() in _BOOLEAN_WORDS or (
            validator in _CONTENT_ERRORS and "\n" not in value and "\r" not in value
            and len(value) <= _LONGEST_SHOWN)):
        return short(value)
    return kind_of(value) + (" (not shown)" if isinstance(value, str) else "")


def kind_of(value: object) -> str:
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


def odd_keys(data: object, path: FieldPath) -> Iterable[tuple[FieldPath, object]]:
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


def translate(doc: Document, error: jsonschema.ValidationError) -> Iterable[Problem]:
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
    shown = shown_value(instance, path, validator)
    fmt = schema.get("format")
    if fmt in ("quantity", "duration") and validator == "pattern":
        return  # the pattern (for editors) says what the format check says: said once, there
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
        got = kind_of(instance)
    else:
        got = shown
    hint = ""
    if "string" in names and isinstance(instance, int | float):
        hint = f'; quote it: "{word or got}"' if isinstance(instance, bool) else "; quote it"
    elif (names == ["integer"] or names == ["number"]) and isinstance(instance, str) \
            and instance.strip().isdigit():
        hint = "; remove the quotes"
    return f"expected {wanted}, got {got}{hint}"
