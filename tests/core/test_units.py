"""Quantities, durations and their formatting: what a manifest may say, and what users are told."""

from __future__ import annotations

import pytest

from reconciler.core.units import (
    MAX_VALUE,
    format_bytes,
    format_duration,
    parse_duration,
    parse_quantity,
)

KiB, MiB, GiB, TiB = 1 << 10, 1 << 20, 1 << 30, 1 << 40

WHOLE = "write a whole number with a binary unit: KiB, MiB, GiB, TiB (e.g. 2GiB, 512MiB)"


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1Ki", KiB),
        ("1KiB", KiB),
        ("512Mi", 512 * MiB),
        ("512MiB", 512 * MiB),
        ("2Gi", 2 * GiB),
        ("2GiB", 2 * GiB),
        ("3Ti", 3 * TiB),
        ("3TiB", 3 * TiB),
        ("0KiB", 0),
        ("0Mi", 0),
        ("1536MiB", 1536 * MiB),
        ("007GiB", 7 * GiB),
        (" 2GiB ", 2 * GiB),  # a quoted YAML string may carry blanks
        ("\t16MiB\n", 16 * MiB),
        ("8388607TiB", 8388607 * TiB),  # the largest: still below 2**63 bytes
        ("0000000000000000000000000001KiB", KiB),  # leading zeros are not "huge"
    ],
)
def test_parse_quantity_accepts(text: str, size: int) -> None:
    assert parse_quantity(text) == size


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2GB", "'2GB' is not a quantity; write 2GiB or 2048MiB"),
        ("2G", "'2G' is not a quantity; write 2GiB or 2048MiB"),
        ("2gib", "'2gib' is not a quantity; write 2GiB or 2048MiB"),
        ("2 GiB", "'2 GiB' is not a quantity; write 2GiB or 2048MiB"),
        ("1TB", "'1TB' is not a quantity; write 1TiB or 1024GiB"),
        ("512MB", "'512MB' is not a quantity; write 512MiB or 524288KiB"),
        ("4k", "'4k' is not a quantity; write 4KiB"),
        ("4KB", "'4KB' is not a quantity; write 4KiB"),
        # decimals are refused; the hint gives the exact whole number when there is one
        ("1.5GiB", "'1.5GiB' is not a quantity; write 1536MiB"),
        ("1.5GB", "'1.5GB' is not a quantity; write 1536MiB"),
        ("0.5Gi", "'0.5Gi' is not a quantity; write 512MiB"),
        ("1.25MiB", "'1.25MiB' is not a quantity; write 1280KiB"),
        ("0.3GiB", f"'0.3GiB' is not a quantity; {WHOLE}"),
        ("0.5KiB", f"'0.5KiB' is not a quantity; {WHOLE}"),
        # bare numbers: which unit was meant is not guessed
        ("2048", "'2048' is not a quantity; add a binary unit, e.g. 2048MiB or 2048GiB"),
        (2048, "2048 is not a quantity; add a binary unit, e.g. 2048MiB or 2048GiB"),
        (0, "0 is not a quantity; add a binary unit, e.g. 0MiB or 0GiB"),
        (1.5, f"1.5 is not a quantity; {WHOLE}"),
        ("1.5", f"'1.5' is not a quantity; {WHOLE}"),
        ("2048B", f"'2048B' is not a quantity; {WHOLE}"),
        ("-1GiB", f"'-1GiB' is not a quantity; {WHOLE}"),
        ("+1GiB", f"'+1GiB' is not a quantity; {WHOLE}"),
        ("1_000MiB", f"'1_000MiB' is not a quantity; {WHOLE}"),
        ("GiB", f"'GiB' is not a quantity; {WHOLE}"),
        ("", f"'' is not a quantity; {WHOLE}"),
        ("2GiB2", f"'2GiB2' is not a quantity; {WHOLE}"),
        ("2KIB", "'2KIB' is not a quantity; write 2KiB"),
        ("\u0661\u0662GiB", f"'\u0661\u0662GiB' is not a quantity; {WHOLE}"),  # ASCII digits only
        (None, f"None is not a quantity; {WHOLE}"),
        (True, f"True is not a quantity; {WHOLE}"),
        ([], f"[] is not a quantity; {WHOLE}"),
        # too large for libvirt (and for int() when absurdly long)
        ("8388608TiB", "'8388608TiB' is too large; the most is 8388607TiB"),
        ("9" * 30 + "KiB", f"'{'9' * 30}KiB' is too large; the most is 8388607TiB"),
        ("1" * 5000 + "GiB", f"'{'1' * 5000}GiB' is too large; the most is 8388607TiB"),
    ],
)
def test_parse_quantity_refuses_with_the_accepted_spelling(value: object, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_quantity(value)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0s", 0), ("30s", 30), ("5m", 300), ("1h", 3600), ("90m", 5400), (" 10s ", 10),
     ("009s", 9), (f"{MAX_VALUE}s", MAX_VALUE)],
)
def test_parse_duration_accepts(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


DURATION_HINT = "write a whole number with s, m or h (e.g. 30s, 5m)"


@pytest.mark.parametrize(
    "value",
    ["30", 30, "1.5m", "10x", "1d", "30S", "1 h", "-5s", "5ms", "1h30m", "", "s", None, True],
)
def test_parse_duration_refuses(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(info.value) == f"{value!r} is not a duration; {DURATION_HINT}"


@pytest.mark.parametrize("text", [f"{MAX_VALUE + 1}s", "9" * 5000 + "h"])
def test_parse_duration_refuses_huge(text: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == f"{text!r} is too large"


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0B"),
        (1, "1B"),
        (1023, "1023B"),
        (KiB, "1KiB"),
        (1536, "1536B"),
        (1536 * KiB, "1536KiB"),
        (MiB, "1MiB"),
        (1536 * MiB, "1536MiB"),
        (2 * GiB, "2GiB"),
        (TiB, "1TiB"),
        (1024 * TiB, "1024TiB"),  # no unit above TiB
        (8388607 * TiB, "8388607TiB"),
        (GiB + 1, "1073741825B"),
    ],
)
def test_format_bytes(size: int, text: str) -> None:
    assert format_bytes(size) == text


@pytest.mark.parametrize("text", ["1KiB", "512MiB", "1536MiB", "2GiB", "3TiB", "8388607TiB"])
def test_format_bytes_round_trips(text: str) -> None:
    assert format_bytes(parse_quantity(text)) == text


@pytest.mark.parametrize("spelling", [("1Ki", "1KiB"), ("64Mi", "64MiB"), ("2Gi", "2GiB"),
                                      ("1Ti", "1TiB"), ("1Gi", "1024MiB"), ("1Ti", "1048576Mi")])
def test_short_and_long_units_are_the_same_size(spelling: tuple[str, str]) -> None:
    short, long = spelling
    assert parse_quantity(short) == parse_quantity(long)


@pytest.mark.parametrize(("seconds", "text"),
                         [(0, "0s"), (1, "1s"), (59, "59s"), (60, "1m"), (90, "90s"),
                          (300, "5m"), (3600, "1h"), (5400, "90m"), (7200, "2h")])
def test_format_duration(seconds: int, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds
