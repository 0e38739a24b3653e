"""Sizes and times: the units at the edges of the model.

Inside the model, memory is counted in 4 KiB pages (Python ints) and time in
integer nanoseconds, because float seconds drift and reorder events (ten
0.1 s timeouts end before an event at 1.0 s).  Text such as ``"4GiB"`` or
``"250ms"`` is converted here, once, when a scenario is loaded; tables give
``time_s`` and MiB columns for people.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from fractions import Fraction

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT  # 4 KiB on every architecture modelled here
KIB_PER_PAGE = PAGE_SIZE >> 10  # xenstore's memory keys are in KiB
PAGES_PER_MIB = (1 << 20) >> PAGE_SHIFT
PAGES_PER_GIB = (1 << 30) >> PAGE_SHIFT
NS_PER_S = 1_000_000_000

#: The model's integers go into int64 tables (and Parquet files): every size and time must fit.
INT64_MAX = (1 << 63) - 1
#: Sizes: bytes fit int64 (under 8 EiB), so pages and KiB fit too.
MAX_BYTES = INT64_MAX
MAX_PAGES = MAX_BYTES >> PAGE_SHIFT
#: Times: integer nanoseconds in int64, about 292 years.
MAX_NS = INT64_MAX
#: Whole seconds (a back-off delay) whose nanoseconds fit int64.
MAX_SECONDS = MAX_NS // NS_PER_S
SIZE_LIMIT = "sizes must be under 8 EiB (int64 bytes)"
TIME_LIMIT = "times must be under 292 years (int64 nanoseconds)"
#: digits of the longest number worth reading: int64 has 19
_MAX_DIGITS = 40

_BINARY = {
    "": None,  # a bare number: the caller decides (pages, or an error)
    "b": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "m": 1 << 20,
    "mib": 1 << 20,
    "g": 1 << 30,
    "gib": 1 << 30,
    "t": 1 << 40,
    "tib": 1 << 40,
    "page": PAGE_SIZE,
    "pages": PAGE_SIZE,
}
_DECIMAL_SUFFIXES = {"kb", "mb", "gb", "tb"}

_TIME = {
    "ns": 1,
    "us": 1_000,
    "ms": 1_000_000,
    "s": NS_PER_S,
    "min": 60 * NS_PER_S,
    "h": 3600 * NS_PER_S,
}

_NUMBER_UNIT = re.compile(r"^\s*(-?)([0-9]+)(?:\.([0-9]+))?\s*([A-Za-z]*)\s*$")
#: 10**k for the decimal places a number may have
_POWERS_OF_TEN = [10**k for k in range(_MAX_DIGITS + 1)]


class UnitError(ValueError):
    """A size or time that cannot be read; the message says what is allowed."""


SIZE_HELP = "a size such as '4GiB', '512MiB', '64KiB' or '1048576 pages'"
TIME_HELP = "a time such as '30s', '250ms', '1.5s', '2min' or '100us'"


def quoted(text: str | int) -> str:
    """The input as messages show it: repr, cut short if long (a huge integer by its size)."""
    if isinstance(text, int) and abs(text) > INT64_MAX:
        return f"a {text.bit_length()}-bit number"
    shown = repr(text)
    return shown if len(shown) <= 60 else f"{shown[:50]}...({len(str(text))} characters)"


def _split(text: str | int, help_text: str, limit: str) -> tuple[int, int, str]:
    """'1.5 MiB' -> (15, 10, 'MiB'): the number as a numerator over a power of ten, and the unit.

    Exact without Fraction (a few times faster, which counts for 200,000
    events): a decimal times a unit is whole exactly when the numerator times
    the unit divides by the power of ten.  Errors say what is allowed.
    """
    if type(text) is int and 0 <= text <= INT64_MAX:  # the common YAML integer: nothing to read
        return text, 1, ""
    if isinstance(text, int) and abs(text) > INT64_MAX:
        raise UnitError(f"{quoted(text)} is too large: {limit}")
    m = _NUMBER_UNIT.match(str(text))
    if not m:
        raise UnitError(f"{quoted(text)} is not {help_text}")
    sign, whole, decimals, unit = m.groups()
    if sign:
        raise UnitError(f"{quoted(text)}: must not be negative")
    if len(whole) + (len(decimals) + 1 if decimals else 0) > _MAX_DIGITS:
        raise UnitError(f"{quoted(text)}: too many digits; {limit}")
    if decimals is None:
        return int(whole), 1, unit
    return int(whole + decimals), _POWERS_OF_TEN[len(decimals)], unit


def _fits(value: int, limit: int, text: str | int, rule: str) -> int:
    """``value``, or a UnitError when it is beyond the int64 ``limit``."""
    if value > limit:
        raise UnitError(f"{quoted(text)} is too large: {rule}")
    return value


def parse_bytes(text: str | int, *, bare: str = "error") -> int:
    """Read a size and return it in bytes.

    ``bare`` says what a number without a unit means: ``"pages"`` or
    ``"error"``.  Binary suffixes (K/KiB, M/MiB, ...) are powers of 1024, as
    in ``xl``; decimal ones (KB, MB, GB) are refused because people mean
    different things by them.
    """
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise UnitError(f"{quoted(text)} is not {SIZE_HELP}")
    number, denominator, unit = _split(text, SIZE_HELP, SIZE_LIMIT)
    key = unit.lower()
    if key in _DECIMAL_SUFFIXES:
        shown = Fraction(number, denominator)  # as the message always showed it: 1.5 is 3/2
        raise UnitError(
            f"{quoted(text)}: decimal units are ambiguous; write {shown}{unit[0].upper()}iB for a power of 1024"
        )
    if key not in _BINARY:
        raise UnitError(f"{quoted(text)}: unknown unit {quoted(unit)}; expected {SIZE_HELP}")
    scale = _BINARY[key]
    if scale is None:
        if bare == "pages":
            scale = PAGE_SIZE
        elif number == 0:
            return 0
        else:
            raise UnitError(f"{quoted(text)} has no unit; write {SIZE_HELP}")
    total, rest = divmod(number * scale, denominator)
    if rest:
        raise UnitError(f"{quoted(text)} is not a whole number of bytes")
    return _fits(total, MAX_BYTES, text, SIZE_LIMIT)


def parse_pages(text: str | int, *, bare: str = "error") -> int:
    """Read a size that must be a whole number of pages; return pages."""
    nbytes = parse_bytes(text, bare=bare)
    if nbytes % PAGE_SIZE:
        raise UnitError(f"{quoted(text)} is not a whole number of {PAGE_SIZE // 1024} KiB pages")
    return nbytes >> PAGE_SHIFT


def parse_kib(text: str | int) -> int:
    """Read a size that must be a whole number of KiB; return KiB (xenstore's unit)."""
    nbytes = parse_bytes(text, bare="error")
    if nbytes % 1024:
        raise UnitError(f"{quoted(text)} is not a whole number of KiB")
    return nbytes >> 10


def parse_time_ns(text: str | int) -> int:
    """Read a time and return integer nanoseconds."""
    if isinstance(text, bool) or not isinstance(text, (int, str)):
        raise UnitError(f"{quoted(text)} is not {TIME_HELP}")
    number, denominator, unit = _split(text, TIME_HELP, TIME_LIMIT)
    if unit == "":
        if number == 0:
            return 0
        raise UnitError(f"{quoted(text)} has no unit; write {TIME_HELP}")
    scale = _TIME.get(unit.lower())
    if scale is None:
        raise UnitError(f"{quoted(text)}: unknown time unit {quoted(unit)}; expected {TIME_HELP}")
    ns, rest = divmod(number * scale, denominator)
    if rest:
        raise UnitError(f"{quoted(text)} is not a whole number of nanoseconds")
    return _fits(ns, MAX_NS, text, TIME_LIMIT)


RATE_HELP = "a rate such as '1GiB/s', '200MiB/s' or '50000 pages/s'"


def parse_rate_pages(text: str | int) -> int:
    """Read a rate of memory per second ('1GiB/s'); return whole pages per second."""
    return _parse_rate(text, lambda size: parse_pages(size, bare="pages"), RATE_HELP)


KIB_RATE_HELP = "a rate such as '100KiB/s' or '2MiB/s'"


def parse_rate_kib(text: str | int) -> int:
    """Read a rate of memory per second ('100KiB/s'); return whole KiB per second."""
    return _parse_rate(text, parse_kib, KIB_RATE_HELP)


def _parse_rate(text: str | int, parse_size: Callable[[str], int], help_text: str) -> int:
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{quoted(text)} is not {help_text}")
    size, slash, per = text.partition("/")
    if not slash or per.strip() != "s":
        raise UnitError(f"{quoted(text)} is not {help_text}")
    try:
        return parse_size(size.strip())
    except UnitError as err:
        raise UnitError(f"{quoted(text)}: {err}; expected {help_text}") from None


def pages_to_kib(pages: int) -> int:
    return pages * KIB_PER_PAGE


def kib_to_pages(kib: int) -> int:
    """Whole pages in ``kib`` KiB (rounded down, as the kernel's ``>> (PAGE_SHIFT - 10)``)."""
    return kib // KIB_PER_PAGE


def pages_to_mib(pages):  # int, float or a numpy array
    return pages / PAGES_PER_MIB


def ns_to_s(ns):  # int, float or a numpy array
    return ns / NS_PER_S


def format_ns(ns: int) -> str:
    """The shortest exact text for a time, in the largest unit that divides it."""
    if ns == 0:
        return "0s"
    for unit in ("h", "min", "s", "ms", "us"):
        if ns % _TIME[unit] == 0:
            return f"{ns // _TIME[unit]}{unit}"
    return f"{ns}ns"


def format_pages(pages: int) -> str:
    """Pages for people: '262144 pages (1 GiB)'."""
    nbytes = pages * PAGE_SIZE
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(nbytes) >= size:
            value = nbytes / size
            text = f"{value:.0f}" if value == int(value) else f"{value:.2f}"
            return f"{pages} pages ({text} {unit})"
    return f"{pages} pages"


class Clock:
    """A guest's jiffies on the simulation's nanosecond time line.

    Jiffy ``j`` begins at ``ceil(j * 1e9 / HZ)`` ns, so the mapping is exact
    for every HZ, including 300 where a jiffy is not a whole number of ns.
    """

    __slots__ = ("hz",)

    def __init__(self, hz: int):
        self.hz = hz

    def jiffies(self, ns: int) -> int:
        return ns * self.hz // NS_PER_S

    def jiffy_start_ns(self, jiffy: int) -> int:
        return -(-jiffy * NS_PER_S // self.hz)
