"""What a capacity planner reads of a run: VM starts, the manager's goal, stranded memory, overcommit.

Everything here is derived from a Result's tables (so a saved result gives the same numbers):

* ``start_attempts``: one row per VM start (``xl create`` during the run): asked when, started
  or failed, and the latency (events ``start_asked``, ``started``, ``start_failed``);
* ``goal_episodes``: one row per change of the free memory the host manager aims at (its
  ``goal`` events), and when host free memory first reached it (``host_free >= goal``) before
  the next change;
* ``planner_series``: after every timeline row, the host's free memory, the goal in force,
  the memory the running domains' targets still claim, the two kinds of stranded memory and
  the overcommit ratio (definitions below);
* ``planner_table``: one row per run with the totals (``Result.planner``).

Definitions (pages; "running": a domain built and not destroyed, i.e. ``dom_pages > 0``):

* claimed = Σ over running domains of ``max(0, target_pages - current_pages)``: free host
  memory a target has already promised to a guest that is still ballooning up into it;
* stranded free (a) = ``max(0, host_free - goal - claimed)`` while some running guest has unmet
  demand, else 0: memory free on the host but promised to nobody, while a guest lacks memory;
  none before the manager's first goal (it has not said what it keeps free); the goal is 0 all
  along in a run without goals (no manager, or xl: they keep nothing back);
* idle held (b) = Σ over running domains of ``max(0, dom_pages - (used + reserve))``, where
  used is qmemman's meminfo "used" (MemTotal - MemFree - page cache - reclaimable slab + swap in
  use; qubes-linux-utils meminfo-writer.c) and the reserve is the guest's caches (page cache and
  reclaimable slab), which it uses and gives up only by re-reading: so its free pages, less what
  it would need to bring swapped pages back, plus any pages Xen counts but its kernel does not
  manage;
* overcommit = Σ static-max of the running domains / the host's total memory (static-max:
  ``memory/static-max``, xl's maxmem; ``memory`` when the scenario leaves it out).

Means are over the run's simulated time, each row's value holding until the next row.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from balloonsim.units import ns_to_s

if TYPE_CHECKING:
    from balloonsim.results.result import Result

#: the events of a VM start (engine.Simulation._start) and what a manager reports
START_ASKED, STARTED, START_FAILED = "start_asked", "started", "start_failed"
GOAL, DECLARED_STUCK = "goal", "declared_stuck"
#: how the overcommit ratio is labelled wherever it is printed (below 1 it is no overcommit at all)
OVERCOMMIT = "overcommit (Σ static-max / host)"


def domain_sums(timeline: pd.DataFrame, values: np.ndarray, last: np.ndarray | None = None) -> np.ndarray:
    """After each timeline row, Σ over domains of each one's value at its latest row (0 before its first).

    Each row adds its change from its domain's previous row: one stable sort by domain, the
    differences, and a running sum in row (time) order.  ``last``: for rows that continue earlier
    ones (a row group), each domain's value before them (by domain code), updated to its last here."""
    codes = timeline["domain"].cat.codes.to_numpy()
    order = np.lexsort((np.arange(len(codes)), codes))
    v = np.asarray(values)[order]
    c = codes[order]
    first = np.r_[True, c[1:] != c[:-1]][: len(v)]
    before = 0 if last is None else last[c]
    change = np.empty_like(v)
    change[order] = v - np.where(first, before, np.r_[0, v[:-1]][: len(v)])
    if last is None:
        return np.cumsum(change)
    start = last.sum()
    final = np.r_[c[1:] != c[:-1], True][: len(v)]
    last[c[final]] = v[final]
    return start + np.cumsum(change)


def held_ns(time_ns: np.ndarray, end_ns: int) -> np.ndarray:
    """How long each row's value holds: until the next row, the last one until ``end_ns``."""
    return np.diff(np.r_[time_ns, max(end_ns, time_ns[-1] if len(time_ns) else 0)])


def goal_in_force(events: pd.DataFrame, time_ns: np.ndarray) -> np.ndarray:
    """The manager's goal at each time (pages): its last ``goal`` event at or before it; NaN before
    its first (it has not said yet what it keeps free); 0 throughout for a run without any (no
    manager, or xl's autoballoon: they keep nothing back)."""
    goals = events[events["kind"] == GOAL]
    at = goals["time_ns"].to_numpy()
    if not len(at):
        return np.zeros(len(time_ns))
    index = np.searchsorted(at, time_ns, side="right") - 1
    return np.where(index >= 0, goals["pages"].to_numpy(dtype=float)[np.maximum(index, 0)], np.nan)


def static_max_by_code(result: Result, domains: pd.Index) -> np.ndarray:
    """Each domain's static-max (pages), by domain code; NaN for a result saved without it."""
    summary = result.summary
    if "static_max_pages" not in summary.columns:
        return np.full(len(domains), np.nan)
    return summary.set_index("domain")["static_max_pages"].reindex(domains).to_numpy(dtype=float)


def host_row_of(host: pd.DataFrame, start: int, stop: int) -> np.ndarray:
    """For timeline rows ``start`` to ``stop``, the host row in force after each: the last at or before
    it (a result saved before the host table kept only changes has one host row per timeline row)."""
    rows = np.arange(start, stop)
    if "row" not in host.columns:
        return rows
    return np.maximum(np.searchsorted(host["row"].to_numpy(), rows, side="right") - 1, 0)


#: the timeline columns the planner reads
PLANNER_COLUMNS = (
    "time_ns", "domain", "dom_pages", "target_pages", "current_pages", "mem_total", "guest_free",
    "page_cache", "slab_reclaimable", "swap_pages", "unmet_demand",
)  # fmt: skip
#: the running sums over domains in the planner's series
SUMS = ("running", "claimed", "guests_lacking", "idle_held", "max_memory")


def planner_series(result: Result) -> pd.DataFrame:
    """After every timeline row, and at every change of the manager's goal: host free memory and
    total, the goal in force, the running domains and their static-max, what their targets claim,
    stranded free memory, idle held memory and the overcommit ratio (pages; the module's
    docstring defines them)."""
    parts = [part for part, _ in series_parts(result)]
    return pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]


def series_parts(result: Result) -> Iterator[tuple[pd.DataFrame, int | None]]:
    """``planner_series`` a timeline row group at a time, each part with the time the next begins
    (None for the last): every domain's latest values are carried from one group to the next.
    A goal set between two row groups goes with the earlier, after its last row."""
    host, events = result.host, result.events
    goal_ns = events.loc[events["kind"] == GOAL, "time_ns"].to_numpy()
    carried: dict[str, np.ndarray] = {}
    static_max = np.zeros(0)
    pending: pd.DataFrame | None = None  # a row group waiting for the time the next one begins
    start = 0

    def part(tl: pd.DataFrame, next_ns: int | None) -> tuple[pd.DataFrame, int | None]:
        row_ns = tl["time_ns"].to_numpy()
        mine = goal_ns if next_ns is None else goal_ns[goal_ns < next_ns]
        if start:  # a goal before the first row goes with it
            mine = mine[mine >= row_ns[0]]
        if not len(row_ns):  # no domain ever ran: no state for a goal to go with
            mine = mine[:0]
        rows = host_row_of(host, start, start + len(tl))
        return _series_part(tl, host, events, rows, static_max, carried, mine), next_ns

    for tl in result.row_groups("timeline", PLANNER_COLUMNS):
        if pending is None:
            domains = tl["domain"].cat.categories
            static_max = static_max_by_code(result, domains)
            carried = {name: np.zeros(len(domains), float if name == "max_memory" else np.int64) for name in SUMS}
        elif len(tl):  # (only a table without rows has an empty group)
            yield part(pending, int(tl["time_ns"].iloc[0]))
            start += len(pending)
        pending = tl
    assert pending is not None
    yield part(pending, None)


def _series_part(
    tl: pd.DataFrame,
    host: pd.DataFrame,
    events: pd.DataFrame,
    host_rows: np.ndarray,
    static_max: np.ndarray,
    carried: dict[str, np.ndarray],
    goal_ns: np.ndarray,
) -> pd.DataFrame:
    """The series after the rows ``tl`` (their host rows ``host_rows``) and at the goals ``goal_ns``
    that come after them; ``carried``: each domain's values before them, for the running sums."""
    running = tl["dom_pages"].to_numpy() > 0
    claim = np.maximum(0, tl["target_pages"].to_numpy() - tl["current_pages"].to_numpy())
    used = (
        tl["mem_total"].to_numpy() - tl["guest_free"].to_numpy() - tl["page_cache"].to_numpy()
        - tl["slab_reclaimable"].to_numpy() + tl["swap_pages"].to_numpy()
    )  # fmt: skip
    reserve = tl["page_cache"].to_numpy() + tl["slab_reclaimable"].to_numpy()
    idle = np.maximum(0, tl["dom_pages"].to_numpy() - used - reserve)
    wanting = tl["unmet_demand"].to_numpy() > 0
    free = host["host_free"].to_numpy()[host_rows]
    values = {
        "running": running.astype(np.int64),
        "claimed": np.where(running, claim, 0),
        "guests_lacking": (running & wanting).astype(np.int64),
        "idle_held": np.where(running, idle, 0),
        "max_memory": np.where(running, static_max[tl["domain"].cat.codes.to_numpy()], 0.0),
    }
    sums = {name: domain_sums(tl, values[name], carried[name]) for name in SUMS}
    total = free + host["domain_pages"].to_numpy()[host_rows] + host["other_pages"].to_numpy()[host_rows]
    state = {
        "host_free": free,
        "host_total": total,
        "running": sums["running"],
        "claimed": sums["claimed"],
        "guests_lacking": sums["guests_lacking"],
        "idle_held": sums["idle_held"],
        "max_memory": sums["max_memory"],
        "overcommit": sums["max_memory"] / np.maximum(total, 1),
    }
    # a goal change between rows starts a new stretch of the series: the rows' state, the new goal
    row_ns = tl["time_ns"].to_numpy()
    time_ns = np.r_[row_ns, goal_ns]
    order = np.argsort(time_ns, kind="stable")
    row = np.r_[np.arange(len(row_ns)), np.maximum(np.searchsorted(row_ns, goal_ns, side="right") - 1, 0)][order]
    time_ns = time_ns[order]
    goal = goal_in_force(events, time_ns)
    at = {name: values[row] for name, values in state.items()}
    # fmax: no goal yet (NaN) strands nothing
    stranded = np.where(at["guests_lacking"] > 0, np.fmax(0, at["host_free"] - goal - at["claimed"]), 0)
    return pd.DataFrame({"time_ns": time_ns, "time_s": ns_to_s(time_ns), "goal": goal, **at, "stranded_free": stranded})


def start_attempts(events: pd.DataFrame) -> pd.DataFrame:
    """One row per VM start: domain, asked_s, outcome (started / failed / pending at the end) and
    latency_s (from the ask to the domain running, or to the failure)."""
    asked = events[events["kind"] == START_ASKED]
    ends = events[events["kind"].isin([STARTED, START_FAILED])]
    ends = ends.drop_duplicates("domain").set_index(ends["domain"].astype(str).to_numpy())
    domains = asked["domain"].astype(str).to_numpy()
    end = ends.reindex(domains)
    outcome = end["kind"].astype(object).map({STARTED: "started", START_FAILED: "failed"}).fillna("pending")
    return pd.DataFrame(
        {
            "domain": domains,
            "asked_s": asked["time_s"].to_numpy(),
            "outcome": outcome.to_numpy(),
            "latency_s": ns_to_s(end["value"].to_numpy(dtype=float)),
        }
    )


def goal_episodes(result: Result) -> pd.DataFrame:
    """One row per goal the manager set (the last of an instant): set_s, goal_pages, reached (host
    free at or above it before the next goal, or the end) and time_to_goal_s (NaN: not reached)."""
    # of several goals at one instant (a request, then the balance that follows it at once) the last holds
    goals = result.events[result.events["kind"] == GOAL].drop_duplicates("time_ns", keep="last")
    host = result.host
    time_ns, free = host["time_ns"].to_numpy(), host["host_free"].to_numpy()
    set_ns, pages = goals["time_ns"].to_numpy(), goals["pages"].to_numpy()
    until = np.append(set_ns[1:], np.iinfo(np.int64).max)[: len(set_ns)]
    took = np.full(len(set_ns), np.nan)
    for i, (start, stop, goal) in enumerate(zip(set_ns, until, pages, strict=True)):
        # host free when it is set: the last row at or before it; then every row until the next goal
        lo = max(0, np.searchsorted(time_ns, start, side="right") - 1)
        hi = np.searchsorted(time_ns, stop, side="left")
        hits = np.flatnonzero(free[lo:hi] >= goal)
        if len(hits):
            took[i] = ns_to_s(max(int(time_ns[lo + hits[0]]), int(start)) - int(start))
    return pd.DataFrame(
        {"set_s": ns_to_s(set_ns), "goal_pages": pages, "reached": ~np.isnan(took), "time_to_goal_s": took}
    )


def manager_kind(result: Result) -> str:
    """The run's host manager ('none' when the scenario names none)."""
    manager = (result.metadata.get("settings") or {}).get("manager")
    return str(manager.get("kind")) if manager else "none"


def planner_applies(result: Result) -> bool:
    """Whether a planner has something to read: the run had VM starts or a host manager."""
    events = result.events
    return manager_kind(result) != "none" or ("kind" in events.columns and bool((events["kind"] == START_ASKED).any()))


def series_totals(result: Result, end_ns: int) -> dict[str, float]:
    """What ``planner_table`` reads of the series, summed a part at a time (``series_parts``), each row
    holding until the next, the last until ``end_ns``: time below the goal, the time-weighted means
    of stranded free and idle held memory, the most stranded, the overcommit at its most and at the end."""
    weighted = {"stranded_free": 0.0, "idle_held": 0.0}
    held_total = below_ns = 0
    peaks: dict[str, list[float]] = {"stranded_free": [], "overcommit": []}
    last: pd.Series | None = None
    for part, next_ns in series_parts(result):
        if not len(part):
            continue
        time_ns = part["time_ns"].to_numpy()
        held = held_ns(time_ns, end_ns) if next_ns is None else np.diff(np.r_[time_ns, next_ns])
        held_total += int(held.sum())
        below_ns += int(held[part["host_free"].to_numpy() < part["goal"].to_numpy()].sum())
        for column in weighted:
            weighted[column] += float(np.dot(part[column].to_numpy(dtype=float), held))
        for column, values in peaks.items():
            values.append(part[column].max())
        last = part.iloc[-1]
    if last is None:
        return {"below_goal_s": 0.0, "stranded_free_mean": math.nan, "stranded_free_max": 0,
                "idle_held_mean": math.nan, "overcommit_max": math.nan, "overcommit_end": math.nan}  # fmt: skip

    def mean(column: str) -> float:
        return float(weighted[column] / held_total) if held_total else float(last[column])

    return {
        "below_goal_s": float(ns_to_s(below_ns)),
        "stranded_free_mean": mean("stranded_free"),
        "stranded_free_max": max(peaks["stranded_free"]),
        "idle_held_mean": mean("idle_held"),
        "overcommit_max": float(pd.Series(peaks["overcommit"]).max()),
        "overcommit_end": float(last["overcommit"]),
    }


def planner_table(result: Result) -> pd.DataFrame:
    """One row for the run: VM starts, the manager's goal, stranded memory, overcommit, guests
    declared stuck, OOM kills and unmet demand (sizes in pages, times in seconds)."""
    starts = start_attempts(result.events)
    ok = starts[starts["outcome"] == "started"]
    failed = starts[starts["outcome"] == "failed"]
    goals = goal_episodes(result)
    series = series_totals(result, int(result.metadata.get("duration_ns") or 0))
    stuck = result.events[result.events["kind"] == DECLARED_STUCK]["domain"].astype(str).unique()
    summary = result.summary
    return pd.DataFrame(
        {
            "scenario": [result.metadata.get("scenario")],
            "seed": [result.metadata.get("seed")],
            "manager": [manager_kind(result)],
            "starts": [len(starts)],
            "starts_ok": [len(ok)],
            "starts_failed": [len(failed)],
            "start_success_rate": [len(ok) / len(starts) if len(starts) else math.nan],
            "start_latency_median_s": [float(ok["latency_s"].median()) if len(ok) else math.nan],
            "start_latency_max_s": [float(ok["latency_s"].max()) if len(ok) else math.nan],
            "failed_starts": [", ".join(failed["domain"])],
            "goals": [len(goals)],
            "goals_reached": [int(goals["reached"].sum())],
            # the longest wait for a goal; inf when one was never reached
            "time_to_goal_max_s": [
                (math.inf if not goals["reached"].all() else float(goals["time_to_goal_s"].max()))
                if len(goals)
                else math.nan
            ],
            "below_goal_s": [series["below_goal_s"]],
            "stranded_free_mean_pages": [series["stranded_free_mean"]],
            "stranded_free_max_pages": [int(series["stranded_free_max"])],
            "idle_held_mean_pages": [series["idle_held_mean"]],
            "overcommit_max": [series["overcommit_max"]],
            "overcommit_end": [series["overcommit_end"]],
            "guests_stuck": [len(stuck)],
            "stuck_guests": [", ".join(stuck)],
            "oom_kills": [int(summary["oom_kills"].fillna(0).sum())],
            "unmet_demand_mib_s": [float(summary["unmet_demand_mib_s"].fillna(0).sum())],
        }
    )
