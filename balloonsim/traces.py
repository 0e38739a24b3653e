"""Memory traces in CSV: a time column and anonymous / page-cache sizes, e.g. sampled from /proc/meminfo.

One row per sample, a header naming the columns; times in seconds from the
start of the trace, sizes in KiB (as /proc/meminfo prints them), bytes or
pages.  Problems are reported as ``file:line: message``, every one at once.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balloonsim.textfile import TextError, read_text
from balloonsim.units import MAX_NS, MAX_PAGES, NS_PER_S, PAGE_SIZE, SIZE_LIMIT, TIME_LIMIT

SIZE_UNITS = {"KiB": 1024, "bytes": 1, "pages": PAGE_SIZE}
#: The largest trace file read: its samples are kept in memory for the whole run.
MAX_TRACE_BYTES = 32 << 20


@dataclass(frozen=True)
class Trace:
    time_ns: tuple[int, ...]
    anon: tuple[int, ...]  # pages
    cache: tuple[int, ...]  # pages


class TraceError(ValueError):
    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def read_trace(path: Path, *, time: str, anon: str | None, cache: str | None, unit: str) -> Trace:
    """Read a trace; sizes become whole pages (rounded down), times nanoseconds."""
    try:
        text = read_text(path, MAX_TRACE_BYTES)
    except TextError as err:
        raise TraceError([str(err)]) from None
    rows = csv.reader(text.splitlines())
    try:
        return _parse(rows, path, time=time, anon=anon, cache=cache, unit=unit)
    except csv.Error as err:  # a field beyond csv's limit (128 KiB), a NUL
        raise TraceError([f"{path}:{rows.line_num}: not CSV ({err})"]) from None


def _parse(rows: Any, path: Path, *, time: str, anon: str | None, cache: str | None, unit: str) -> Trace:
    header = [h.strip() for h in next(rows, [])]
    wanted = {"time": time, "anon": anon, "cache": cache}
    missing = [name for name in wanted.values() if name is not None and name not in header]
    if missing:
        columns = ", ".join(header) or "none"
        raise TraceError([f"{path}:1: no column {', '.join(map(repr, missing))} (columns: {columns})"])
    index = {key: header.index(name) for key, name in wanted.items() if name is not None}
    scale = SIZE_UNITS[unit]
    times: list[int] = []
    sizes: dict[str, list[int]] = {"anon": [], "cache": []}
    problems: list[str] = []
    named = ", ".join(n for n in wanted.values() if n)
    for row in rows:
        lineno = rows.line_num  # a quoted field may span lines
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            numbers = {k: float(row[i]) for k, i in index.items()}
        except (ValueError, IndexError):
            problems.append(f"{path}:{lineno}: expected numbers in columns {named}")
            continue
        wrong = _out_of_range(numbers, scale)
        if wrong:
            problems.append(f"{path}:{lineno}: {wrong}")
            continue
        t = round(numbers.pop("time") * NS_PER_S)
        values = {k: int(v * scale) // PAGE_SIZE for k, v in numbers.items()}
        if times and t <= times[-1]:
            problems.append(f"{path}:{lineno}: time {row[index['time']].strip()} is not after the previous row's")
        times.append(t)
        for k in sizes:
            sizes[k].append(values.get(k, 0))
    if not times and not problems:
        problems.append(f"{path}: no samples after the header")
    if problems:
        raise TraceError(problems)
    return Trace(tuple(times), tuple(sizes["anon"]), tuple(sizes["cache"]))


def _out_of_range(numbers: dict[str, float], scale: int) -> str | None:
    """Why a sample (seconds, sizes in ``scale`` bytes) cannot be used, if it cannot."""
    if not all(math.isfinite(v) for v in numbers.values()):
        return "inf and nan are not sizes or times"
    if min(numbers.values()) < 0:
        return "times and sizes must not be negative"
    if numbers["time"] * NS_PER_S > MAX_NS:
        return f"time {numbers['time']:g} s is too large: {TIME_LIMIT}"
    if max((v for k, v in numbers.items() if k != "time"), default=0) * scale > MAX_PAGES * PAGE_SIZE:
        return f"a size is too large: {SIZE_LIMIT}"
    return None
