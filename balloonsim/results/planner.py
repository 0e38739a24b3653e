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


def domain_sums(timeline: pd.DataFrame, values: np.ndarray) -> np.ndarray:
    """After each timeline row, Σ over domains of each one's value at its latest row (0 before its first).

    Each row adds its change from its domain's previous row: one stable sort by domain, the
    differences, and a running sum in row (time) order."""
    codes = timeline["domain"].cat.codes.to_numpy()
    order = np.lexsort((np.arange(len(codes)), codes))
    v = np.asarray(values)[order]
    first = np.r_[True, codes[order][1:] != codes[order][:-1]][: len(v)]
    change = np.empty_like(v)
    change[order] = v - np.where(first, 0, np.r_[0, v[:-1]][: len(v)])
    return np.cumsum(change)


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


def static_max_of_rows(result: Result) -> np.ndarray:
    """Each timeline row's domain's static-max (pages); NaN for a result saved without it."""
    summary = result.summary
    if "static_max_pages" not in summary.columns:
        return np.full(len(result.timeline), np.nan)
    by_code = summary.set_index("domain")["static_max_pages"].reindex(result.timeline["domain"].cat.categories)
    return by_code.to_numpy(dtype=float)[result.timeline["domain"].cat.codes.to_numpy()]


def planner_series(result: Result) -> pd.DataFrame:
    """After every timeline row, and at every change of the manager's goal: host free memory and
    total, the goal in force, the running domains and their static-max, what their targets claim,
    stranded free memory, idle held memory and the overcommit ratio (pages; the module's
    docstring defines them)."""
    tl, host = result.timeline, result.host
    running = tl["dom_pages"].to_numpy() > 0
    claim = np.maximum(0, tl["target_pages"].to_numpy() - tl["current_pages"].to_numpy())
    used = (
        tl["mem_total"].to_numpy() - tl["guest_free"].to_numpy() - tl["page_cache"].to_numpy()
        - tl["slab_reclaimable"].to_numpy() + tl["swap_pages"].to_numpy()
    )  # fmt: skip
    reserve = tl["page_cache"].to_numpy() + tl["slab_reclaimable"].to_numpy()
    idle = np.maximum(0, tl["dom_pages"].to_numpy() - used - reserve)
    wanting = tl["unmet_demand"].to_numpy() > 0
    free = host["host_free"].to_numpy()
    max_memory = domain_sums(tl, np.where(running, static_max_of_rows(result), 0.0))
    total = free + host["domain_pages"].to_numpy() + host["other_pages"].to_numpy()
    state = {
        "host_free": free,
        "host_total": total,
        "running": domain_sums(tl, running.astype(np.int64)),
        "claimed": domain_sums(tl, np.where(running, claim, 0)),
        "guests_lacking": domain_sums(tl, (running & wanting).astype(np.int64)),
        "idle_held": domain_sums(tl, np.where(running, idle, 0)),
        "max_memory": max_memory,
        "overcommit": max_memory / np.maximum(total, 1),
    }
    # a goal change between rows starts a new stretch of the series: the rows' state, the new goal
    row_ns = host["time_ns"].to_numpy()
    goal_ns = result.events.loc[result.events["kind"] == GOAL, "time_ns"].to_numpy()
    if not len(row_ns):  # no domain ever ran: no state for a goal to go with
        goal_ns = goal_ns[:0]
    time_ns = np.r_[row_ns, goal_ns]
    order = np.argsort(time_ns, kind="stable")
    row = np.r_[np.arange(len(row_ns)), np.maximum(np.searchsorted(row_ns, goal_ns, side="right") - 1, 0)][order]
    time_ns = time_ns[order]
    goal = goal_in_force(result.events, time_ns)
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


def time_weighted_mean(series: pd.DataFrame, column: str, end_ns: int) -> float:
    """The column's mean over simulated time (each row holding until the next, the last until the end)."""
    time_ns = series["time_ns"].to_numpy()
    if not len(time_ns):
        return math.nan
    held = held_ns(time_ns, end_ns)
    if not held.sum():
        return float(series[column].iloc[-1])
    return float(np.dot(series[column].to_numpy(dtype=float), held) / held.sum())


def planner_table(result: Result) -> pd.DataFrame:
    """One row for the run: VM starts, the manager's goal, stranded memory, overcommit, guests
    declared stuck, OOM kills and unmet demand (sizes in pages, times in seconds)."""
    starts = start_attempts(result.events)
    ok = starts[starts["outcome"] == "started"]
    failed = starts[starts["outcome"] == "failed"]
    goals = goal_episodes(result)
    series = result.planner_series
    end_ns = int(result.metadata.get("duration_ns") or (series["time_ns"].max() if len(series) else 0))
    held = held_ns(series["time_ns"].to_numpy(), end_ns)
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
            "below_goal_s": [float(ns_to_s(held[series["host_free"].to_numpy() < series["goal"].to_numpy()].sum()))],
            "stranded_free_mean_pages": [time_weighted_mean(series, "stranded_free", end_ns)],
            "stranded_free_max_pages": [int(series["stranded_free"].max()) if len(series) else 0],
            "idle_held_mean_pages": [time_weighted_mean(series, "idle_held", end_ns)],
            "overcommit_max": [float(series["overcommit"].max()) if len(series) else math.nan],
            "overcommit_end": [float(series["overcommit"].iloc[-1]) if len(series) else math.nan],
            "guests_stuck": [len(stuck)],
            "stuck_guests": [", ".join(stuck)],
            "oom_kills": [int(summary["oom_kills"].fillna(0).sum())],
            "unmet_demand_mib_s": [float(summary["unmet_demand_mib_s"].fillna(0).sum())],
        }
    )
