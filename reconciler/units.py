"""Quantities (binary sizes) and durations as written in manifests. Pure."""

from __future__ import annotations

import re

_QUANTITY = re.compile(r"^([0-9]+)(KiB|MiB|GiB|TiB|Ki|Mi|Gi|Ti)$")
_DURATION = re.compile(r"^([0-9]+)(s|m|h)$")
_FACTORS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SECONDS = {"s": 1, "m": 60, "h": 3600}
_DECIMAL = re.compile(r"^([0-9]+(?:\.[0-9]+)?)\s*([kKMGT])[bB]?$")


def parse_quantity(text: object) -> int:
    """Bytes for a quantity such as ``2GiB`` or ``512Mi``; ValueError says how to write it."""
    if isinstance(text, str):
        match = _QUANTITY.match(text.strip())
        if match:
            return int(match.group(1)) * _FACTORS[match.group(2)[0]]
    raise ValueError(f"{text!r} is not a quantity; {_quantity_hint(text)}")


def _quantity_hint(text: object) -> str:
    if isinstance(text, str):
        match = _DECIMAL.match(text.strip())
        if match and "." not in match.group(1):
            number, unit = int(match.group(1)), match.group(2).upper()
            smaller = {"G": "M", "T": "G", "M": "K"}.get(unit)
            also = f" or {number * 1024}{smaller}iB" if smaller else ""
            return f"write {number}{unit}iB{also}"
    if isinstance(text, int | float) and not isinstance(text, bool):
        return f"add a binary unit, e.g. {int(text)}MiB or {int(text)}GiB"
    return "write a whole number with a binary unit: KiB, MiB, GiB, TiB (e.g. 2GiB, 512MiB)"


def parse_duration(text: object) -> int:
    """Seconds for a duration such as ``30s``, ``5m`` or ``1h``."""
    if isinstance(text, str):
        match = _DURATION.match(text.strip())
        if match:
            return int(match.group(1)) * _SECONDS[match.group(2)]
    raise ValueError(f"{text!r} is not a duration; write a whole number with s, m or h "
                     "(e.g. 30s, 5m)")


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
