"""Quantities (binary sizes) and durations as written in manifests. Pure."""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+)(KiB|MiB|GiB|TiB|Ki|Mi|Gi|Ti)$")
_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_FACTORS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600}
# Blanks around a value are allowed (a quoted YAML string may carry them): these, and no others,
# so that the schemas' patterns (ECMA-262 regular expressions, for editors) can say the same.
BLANKS = " \t\r\n"
# What people write instead: 2GB, 2G, 2 GiB, 2gib, 1.5GiB (case-insensitive).
_LOOSE = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kmgt])(?:i?b|i)?$", re.IGNORECASE)
_BARE = re.compile(r"^[0-9]+$")
MAX_VALUE = (1 << 63) - 1  # the largest size (bytes) or duration (seconds) accepted


def parse_quantity(text: object) -> int:
    """Bytes for a quantity such as ``2GiB`` or ``512Mi``; ValueError says how to write it."""
    if isinstance(text, str):
        match = _QUANTITY.match(text.strip(BLANKS))
        if match:
            size = _bounded(match.group(1)) * _FACTORS[match.group(2)[0]]
            if size > MAX_VALUE:
                raise ValueError(f"{text!r} is too large; the most is {MAX_VALUE >> 40}TiB")
            return size
    raise ValueError(f"{text!r} is not a quantity; {_quantity_hint(text)}")


def _quantity_hint(text: object) -> str:
    whole = "write a whole number with a binary unit: KiB, MiB, GiB, TiB (e.g. 2GiB, 512MiB)"
    if isinstance(text, int) and not isinstance(text, bool):
        text = str(text)
    if not isinstance(text, str):
        return whole
    text = text.strip()
    if _BARE.match(text):
        return f"add a binary unit, e.g. {text}MiB or {text}GiB"
    match = _LOOSE.match(text)
    if match is None or len(match.group(1)) > 40:
        return whole
    number, unit = match.group(1), match.group(2).upper()
    if "." in number:  # 1.5GiB -> 1536MiB, when that is a whole number of KiB
        integral, fraction = number.split(".")
        scale = 10 ** len(fraction)
        size = (int(integral) * scale + int(fraction)) * _FACTORS[unit]
        return f"write {format_bytes(size // scale)}" if size % (scale << 10) == 0 else whole
    smaller = {"G": "M", "T": "G", "M": "K"}.get(unit)
    also = f" or {int(number) * 1024}{smaller}iB" if smaller else ""
    return f"write {int(number)}{unit}iB{also}"


def _bounded(digits: str) -> int:
    """int(digits), or MAX_VALUE + 1 when longer than any accepted value (and int()'s limit)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 20 else MAX_VALUE + 1


def parse_duration(text: object) -> int:
    """Seconds for a duration such as ``30s``, ``5m`` or ``1h``."""
    if isinstance(text, str):
        match = _DURATION.match(text.strip(BLANKS))
        if match:
            seconds = _bounded(match.group(1)) * _SECONDS[match.group(2)]
            if seconds > MAX_VALUE:
                raise ValueError(f"{text!r} is too large")
            return seconds
    raise ValueError(f"{text!r} is not a duration; write a whole number with s, m or h "
                     "(e.g. 30s, 5m)")


def _at_most(limit: int) -> str:
    """A regular expression for the decimal numbers 0 to ``limit``, leading zeros allowed."""
    digits = str(limit)
    shorter = [f"[0-9]{{1,{len(digits) - 1}}}"] if len(digits) > 1 else []
    same_length = []  # below ``limit`` from its i-th digit on, then any digits
    for i, digit in enumerate(digits):
        lowest = 1 if i == 0 else 0
        highest, rest = int(digit) - 1, len(digits) - i - 1
        if highest >= lowest:
            below = str(lowest) if highest == lowest else f"[{lowest}-{highest}]"
            any_digits = "" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"
            same_length.append(digits[:i] + below + any_digits)
    return "0*(?:" + "|".join([*shorter, *same_length, digits]) + ")"


def _pattern(factors: dict[str, int], units: dict[str, str]) -> str:
    """What the parser accepts, as one regular expression that means the same to Python and to
    ECMA-262 (editors): blanks, a number no larger than MAX_VALUE in its unit, the unit."""
    blanks = "[" + BLANKS.encode("unicode_escape").decode() + "]*"
    each = [f"{_at_most(MAX_VALUE // factors[unit])}(?:{spellings})"
            for unit, spellings in units.items()]
    return f"^{blanks}(?:{'|'.join(each)}){blanks}$"


# The schemas' ``pattern`` of a quantity and a duration (a test holds the schemas to these).
QUANTITY_PATTERN = _pattern(_FACTORS, {"K": "KiB|Ki", "M": "MiB|Mi", "G": "GiB|Gi", "T": "TiB|Ti"})
DURATION_PATTERN = _pattern(_SECONDS, {"s": "s", "m": "m", "h": "h"})


def format_bytes(size: int) -> str:
    """The largest binary unit that shows ``size`` exactly: 2GiB, 1536MiB, 12345B."""
    for suffix, factor in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size and size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size}B"


def format_duration(seconds: int) -> str:
    for suffix, factor in (("h", 3600), ("m", 60)):
        if seconds and seconds % factor == 0:
            return f"{seconds // factor}{suffix}"
    return f"{seconds}s"
