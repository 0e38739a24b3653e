import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balloonsim import units
from balloonsim.units import Clock, UnitError


@pytest.mark.parametrize(
    "text, pages",
    [
        ("4GiB", 1048576),
        ("4G", 1048576),
        ("512MiB", 131072),
        ("512 MiB", 131072),
        ("64KiB", 16),
        ("1048576 pages", 1048576),
        ("1 page", 1),
        ("1.5GiB", 393216),
        ("0", 0),
        (0, 0),
    ],
)
def test_sizes_in_pages(text, pages):
    assert units.parse_pages(text) == pages


def test_bare_numbers_are_pages_only_where_asked():
    assert units.parse_pages(100, bare="pages") == 100
    assert units.parse_pages("100", bare="pages") == 100
    with pytest.raises(UnitError, match="has no unit"):
        units.parse_pages(100)


@pytest.mark.parametrize(
    "text, message",
    [
        ("4GB", "decimal units are ambiguous"),
        ("-1GiB", "must not be negative"),
        ("lots", "is not a size"),
        ("3 parsecs", "unknown unit"),
        ("6KiB", "whole number of 4 KiB pages"),
        ("1.1B", "whole number of bytes"),
    ],
)
def test_bad_sizes_say_what_is_wrong(text, message):
    with pytest.raises(UnitError, match=message):
        units.parse_pages(text)


def test_kib_for_xenstore_need_not_be_whole_pages():
    assert units.parse_kib("1025KiB") == 1025
    with pytest.raises(UnitError, match="whole number of KiB"):
        units.parse_kib("100B")


@pytest.mark.parametrize(
    "text, ns",
    [
        ("30s", 30 * 10**9),
        ("250ms", 250 * 10**6),
        ("1.5s", 1_500_000_000),
        ("2min", 120 * 10**9),
        ("100us", 100_000),
        ("7ns", 7),
        ("1h", 3600 * 10**9),
        ("0", 0),
        (0, 0),
    ],
)
def test_times_in_nanoseconds(text, ns):
    assert units.parse_time_ns(text) == ns


@pytest.mark.parametrize("text", ["10", "0.5ns", "3 fortnights", "-1s", True])
def test_bad_times(text):
    with pytest.raises(UnitError):
        units.parse_time_ns(text)


@pytest.mark.parametrize("ns", [0, 1, 4_000_000, 1_500_000_000, 3600 * 10**9, 3_333_334])
def test_format_ns_round_trips(ns):
    assert units.parse_time_ns(units.format_ns(ns)) == ns


@given(st.sampled_from([100, 250, 300, 1000]), st.integers(0, 10**9))
def test_a_jiffy_starts_where_its_number_begins(hz, jiffy):
    clock = Clock(hz)
    start = clock.jiffy_start_ns(jiffy)
    assert clock.jiffies(start) == jiffy
    assert start == 0 or clock.jiffies(start - 1) == jiffy - 1


def test_hz_300_jiffies_are_not_whole_nanoseconds():
    clock = Clock(300)
    assert clock.jiffy_start_ns(1) == 3_333_334  # ceil(1e9 / 300)
    assert clock.jiffy_start_ns(3) == 10_000_000


# -- the exact integer/decimal reading (no Fraction): hand-derived values and edges ------------------


@pytest.mark.parametrize(
    "text, ns",
    [
        ("0.1s", 100_000_000),  # 1/10 * 10**9
        ("0.000000001s", 1),  # 10**-9 s is one nanosecond
        ("1.25ms", 1_250_000),  # 125/100 * 10**6
        ("0.5us", 500),
        ("2.5min", 150_000_000_000),  # 25/10 * 60 * 10**9
        ("0.001h", 3_600_000_000),  # 3600 s / 1000
        ("9223372036.854775807s", (1 << 63) - 1),  # INT64_MAX ns, written in seconds
        ("000030s", 30_000_000_000),  # leading zeros are only zeros
    ],
)
def test_decimal_times_are_exact(text, ns):
    assert units.parse_time_ns(text) == ns


@pytest.mark.parametrize(
    "text, message",
    [
        ("0.0000000001s", "'0.0000000001s' is not a whole number of nanoseconds"),  # 0.1 ns
        ("1.0000000005s", "'1.0000000005s' is not a whole number of nanoseconds"),  # 10**9 + 0.5 ns
        ("9223372036.854775808s", "'9223372036.854775808s' is too large: " + units.TIME_LIMIT),  # INT64_MAX + 1
    ],
)
def test_times_at_the_edges(text, message):
    with pytest.raises(UnitError) as err:
        units.parse_time_ns(text)
    assert str(err.value) == message


@pytest.mark.parametrize(
    "text, nbytes",
    [
        ("1.5GiB", 1_610_612_736),  # 3/2 * 2**30 = 3 * 2**29
        ("0.25KiB", 256),
        ("4.000KiB", 4096),
        ("0.5 page", 2048),
        ("1.0009765625MiB", 1_049_600),  # 2**20 + 2**20 / 1024: ten decimals, still whole bytes
        ("9223372036854775807B", (1 << 63) - 1),  # INT64_MAX bytes: the largest size
    ],
)
def test_decimal_sizes_are_exact(text, nbytes):
    assert units.parse_bytes(text) == nbytes


@pytest.mark.parametrize(
    "text, parse, message",
    [
        ("0.1B", units.parse_bytes, "'0.1B' is not a whole number of bytes"),
        ("1.00000000001KiB", units.parse_bytes, "'1.00000000001KiB' is not a whole number of bytes"),  # 1024.00000001
        ("2.5KiB", units.parse_kib, "'2.5KiB' is not a whole number of KiB"),  # 2560 bytes
        ("1.5KiB", units.parse_pages, "'1.5KiB' is not a whole number of 4 KiB pages"),
        ("9223372036854775808B", units.parse_bytes, "'9223372036854775808B' is too large: " + units.SIZE_LIMIT),
        (1 << 63, units.parse_bytes, "a 64-bit number is too large: " + units.SIZE_LIMIT),
        # the number as a fraction in lowest terms, as the message always gave it
        ("1.5GB", units.parse_bytes, "'1.5GB': decimal units are ambiguous; write 3/2GiB for a power of 1024"),
        ("2.50MB", units.parse_bytes, "'2.50MB': decimal units are ambiguous; write 5/2MiB for a power of 1024"),
        ("007kb", units.parse_bytes, "'007kb': decimal units are ambiguous; write 7KiB for a power of 1024"),
        (
            "1" + "0" * 39 + "B",
            units.parse_bytes,
            f"{units.quoted('1' + '0' * 39 + 'B')} is too large: {units.SIZE_LIMIT}",
        ),
        (
            "1" + "0" * 40 + "B",
            units.parse_bytes,
            f"{units.quoted('1' + '0' * 40 + 'B')}: too many digits; {units.SIZE_LIMIT}",
        ),
        # the decimal point counts as a digit's place: 1, the point and 38 zeros is 40
        ("1." + "0" * 38 + "B", units.parse_bytes, None),
        (
            "1." + "0" * 39 + "B",
            units.parse_bytes,
            f"{units.quoted('1.' + '0' * 39 + 'B')}: too many digits; {units.SIZE_LIMIT}",
        ),
    ],
)
def test_sizes_at_the_edges(text, parse, message):
    if message is None:
        assert parse(text) == 1
        return
    with pytest.raises(UnitError) as err:
        parse(text)
    assert str(err.value) == message


def _reference_bytes(text: str) -> int | str:
    """What parse_bytes gave when it read every number as a Fraction: bytes, or the error."""
    m = re.match(r"^\s*(-?)([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$", text)
    if not m:
        return "not"
    if m.group(1):
        return "negative"
    if len(m.group(2)) > 40:
        return "digits"
    value, unit = Fraction(m.group(2)), m.group(3).lower()
    if unit in ("kb", "mb", "gb", "tb"):
        return f"decimal {value}"
    scales = {"b": 1, "k": 1 << 10, "kib": 1 << 10, "m": 1 << 20, "mib": 1 << 20, "g": 1 << 30, "gib": 1 << 30}
    scales |= {"t": 1 << 40, "tib": 1 << 40, "page": 4096, "pages": 4096}
    if unit == "":
        return 0 if value == 0 else "no unit"
    if unit not in scales:
        return "unknown"
    total = value * scales[unit]
    if total.denominator != 1:
        return "whole"
    return int(total) if total <= (1 << 63) - 1 else "large"


def _outcome(text: str) -> int | str:
    try:
        return units.parse_bytes(text)
    except UnitError as err:
        message = str(err)
        for needle, kind in [
            ("is not a size", "not"),
            ("must not be negative", "negative"),
            ("too many digits", "digits"),
            ("no unit", "no unit"),
            ("unknown unit", "unknown"),
            ("whole number of bytes", "whole"),
            ("too large", "large"),
        ]:
            if needle in message:
                return kind
        return "decimal " + message.split("write ")[1].split(" ")[0].rstrip("KMGTiB")


_NUMBERS = st.one_of(
    st.integers(0, 10**25).map(str),
    st.tuples(st.integers(0, 10**20), st.text("0123456789", min_size=1, max_size=22)).map(lambda p: f"{p[0]}.{p[1]}"),
    st.text("0123456789.-", min_size=1, max_size=42),
)
_UNITS = st.sampled_from(["", "B", "KiB", "k", "MiB", "M", "GiB", "g", "TiB", "page", "pages", "KB", "gb", "PiB", "x"])


@given(_NUMBERS, st.sampled_from(["", " "]), _UNITS)
def test_the_exact_reading_agrees_with_fractions(number, space, unit):
    text = f"{number}{space}{unit}"
    assert _outcome(text) == _reference_bytes(text)


@given(st.integers(0, 10**12), st.integers(0, 12), st.sampled_from(["ns", "us", "ms", "s", "min", "h"]))
def test_decimal_times_agree_with_fractions(digits, places, unit):
    text = f"{digits}{unit}" if places == 0 else f"{digits // 10**places}.{digits % 10**places:0{places}d}{unit}"
    exact = Fraction(text[: -len(unit)]) * {"ns": 1, "us": 10**3, "ms": 10**6, "s": 10**9, "min": 60 * 10**9}.get(
        unit, 3600 * 10**9
    )
    if exact.denominator != 1:
        with pytest.raises(UnitError, match="whole number of nanoseconds"):
            units.parse_time_ns(text)
    elif exact > units.MAX_NS:
        with pytest.raises(UnitError, match="too large"):
            units.parse_time_ns(text)
    else:
        assert units.parse_time_ns(text) == exact
