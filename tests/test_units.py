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
