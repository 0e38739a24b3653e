"""Memory traces in CSV: a time column and anonymous / page-cache sizes, e.g. sampled from /proc/meminfo.

One row per sample, a header naming the columns; times in seconds from the
start of the trace, sizes in KiB (as /proc/meminfo prints them), bytes or
pages.  Problems are reported as ``file:line: message``, every one at once.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from balloonsim.units import NS_PER_S, PAGE_SIZE

SIZE_UNITS = {"KiB": 1024, "bytes": 1, "pages": PAGE_SIZE}


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
        text = path.read_text()
    except OSError as err:
        raise TraceError([f"{path}: cannot read: {err.strerror}"]) from None
    rows = csv.reader(text.splitlines())
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
    for lineno, row in enumerate(rows, start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            t = round(float(row[index["time"]]) * NS_PER_S)
            values = {k: int(float(row[i]) * scale) // PAGE_SIZE for k, i in index.items() if k != "time"}
        except (ValueError, IndexError):
            problems.append(f"{path}:{lineno}: expected numbers in columns {named}")
            continue
        if t < 0 or min(values.values(), default=0) < 0:
            problems.append(f"{path}:{lineno}: times and sizes must not be negative")
        elif times and t <= times[-1]:
            problems.append(f"{path}:{lineno}: time {row[index['time']].strip()} is not after the previous row's")
        times.append(t)
        for k in sizes:
            sizes[k].append(values.get(k, 0))
    if not times and not problems:
        problems.append(f"{path}: no samples after the header")
    if problems:
        raise TraceError(problems)
    return Trace(tuple(times), tuple(sizes["anon"]), tuple(sizes["cache"]))
