"""Field types of the scenario schema: sizes and times in people's units, stored as ints.

Each type is one validator (no pydantic unions), so a wrong value gives one
error message that says what is allowed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer

from balloonsim import units


def _non_negative(parse: Callable[[Any], int]) -> Callable[[Any], int]:
    def check(value: Any) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError("must not be negative")
        return parse(value)

    return check


def _or_words(parse: Callable[[Any], int], *words: str) -> Callable[[Any], int | str]:
    """A parser that also accepts the given words, returned as they are."""

    def check(value: Any) -> int | str:
        if isinstance(value, str) and value.strip() in words:
            return value.strip()
        try:
            return parse(value)
        except ValueError as err:
            raise ValueError(f"{err} (or {' or '.join(repr(w) for w in words)})") from None

    return check


def _pages_text(value: int | str) -> str:
    return value if isinstance(value, str) else f"{value} pages"


def _kib_text(value: int | str) -> str:
    return value if isinstance(value, str) else f"{value}KiB"


_pages = _non_negative(lambda v: units.parse_pages(v, bare="error"))
_page_count = _non_negative(lambda v: units.parse_pages(v, bare="pages"))
_kib = _non_negative(units.parse_kib)
#: the validator of a Nanoseconds field, for those who validate times in bulk (``shared_events``)
time_field = _non_negative(units.parse_time_ns)
_rate = _non_negative(units.parse_rate_pages)
_rate_kib = _non_negative(units.parse_rate_kib)

_as_pages = PlainSerializer(_pages_text, return_type=str)

#: A memory size with a unit ("4GiB", "512MiB", "1000 pages"), stored as pages.
Pages = Annotated[int, BeforeValidator(_pages), _as_pages]
#: A count of pages: a bare integer, or a size with a unit, stored as pages.
PageCount = Annotated[int, BeforeValidator(_page_count), _as_pages]
#: A page count, or "auto" (computed the kernel's way).
PageCountOrAuto = Annotated[int | str, BeforeValidator(_or_words(_page_count, "auto")), _as_pages]
#: A memory size, or "absent" (an xenstore key the toolstack did not write).
PagesOrAbsent = Annotated[int | str, BeforeValidator(_or_words(_pages, "absent")), _as_pages]
#: A size written to xenstore, stored in KiB (xenstore's unit for memory keys).
KiB = Annotated[int, BeforeValidator(_kib), PlainSerializer(_kib_text, return_type=str)]
KiBOrAbsent = Annotated[
    int | str, BeforeValidator(_or_words(_kib, "absent")), PlainSerializer(_kib_text, return_type=str)
]
#: A time ("30s", "250ms"), stored as integer nanoseconds.
Nanoseconds = Annotated[int, BeforeValidator(time_field), PlainSerializer(units.format_ns, return_type=str)]
#: A rate of memory per second ("1GiB/s", "5000 pages/s"), stored as pages per second.
PagesPerSecond = Annotated[int, BeforeValidator(_rate), PlainSerializer(lambda v: f"{v} pages/s", return_type=str)]
#: A rate of memory per second ("100KiB/s"), stored as KiB per second.
KiBPerSecond = Annotated[int, BeforeValidator(_rate_kib), PlainSerializer(lambda v: f"{v}KiB/s", return_type=str)]
