"""Figures drawn from a Result (never by re-running the model).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot,
so nothing global changes and notebooks and scripts can use them alike.
Every figure's title names the run (``run_label``: scenario, seed, driver
settings), and every legend says what its lines and marks mean:

* ``timeline_figure``: per domain, current, target, total and the balloon
  lists (and MemAvailable), with back-off, cancellation, OOM kills and
  hot-added memory marked; the host below; of many guests, the worst;
* ``host_figure``: host free memory, the domains' pages, and the free
  memory the host needs (``host.needed``), with when it got there;
* ``host_memory_figure``: what a capacity planner looks at: every guest's
  memory stacked (the largest few in start order, the rest summed), host free memory, the
  host manager's goal, VM starts (started or failed) and stops;
* ``memory_figure``: one guest's memory by holder, stacked, with
  MemAvailable, swap and unmet demand;
* ``gap_heatmap``: target - current for every domain over time, summed over
  groups of consecutive guests when there are more than ``HEATMAP_ROWS``;
* ``summary_figure``: bar charts of the summary table, the worst guests;
* ``compare_figure``: one domain in several runs (two policies, two knobs)
  on the same axes;
* ``runs_figure``: several runs of a scenario, every domain and the host
  (``balloonsim compare``'s figure).

``write_figures`` draws the set ``balloonsim run`` and ``balloonsim plot``
write next to the tables (memory figures for the guests that suffered most).
A figure's size and drawing time depend on the few guests it draws, not on
how many the run had: their rows are picked by domain code in one pass.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from balloonsim.results.planner import DECLARED_STUCK, GOAL, planner_applies, start_attempts
from balloonsim.results.result import Result
from balloonsim.results.settings import run_label
from balloonsim.results.store import PLANNER_FIGURE
from balloonsim.results.summary import WORST_FIRST_ORDER, host_needed_reached_s, worst_first
from balloonsim.units import PAGES_PER_GIB, PAGES_PER_MIB, ns_to_s, pages_to_mib

MAX_PANELS = 12
MAX_MEMORY_FIGURES = 4
#: guests in summary.png: the worst ones
SUMMARY_ROWS = 30
#: rows of gap_heatmap.png: more guests than this are summed in groups of consecutive ones
HEATMAP_ROWS = 100
#: guests stacked one by one in host_memory.png (the largest); the others are one band
STACKED_GUESTS = 10
#: points a stacked band is drawn at, at most (a long run's rows are sampled on an even grid)
STACK_POINTS = 2000
NOT_REACHED = " not reached"
#: events marked on the timeline: kind -> (marker, colour, legend label)
EVENT_MARKERS = {
    "EAGAIN": ("v", "tab:orange", "EAGAIN"),
    "ECANCELED": ("X", "tab:red", "ECANCELED"),
    "WAIT": ("s", "tab:purple", "WAIT"),
    "oom_kill": ("*", "black", "OOM kill"),
    "hotplug_add": ("^", "tab:cyan", "hot-added"),
    "domain_destroyed": ("P", "darkred", "destroyed"),
}
#: the memory holders of memory_figure, bottom to top: column, label, colour
HOLDERS = (
    ("kernel_pages", "kernel", "tab:gray"),
    ("anon_pages", "anonymous", "tab:red"),
    ("slab_reclaimable", "slab", "tab:brown"),
    ("page_cache", "page cache", "tab:olive"),
    ("guest_free", "free", "tab:green"),
)
#: what each line, band and mark means, for legends (the artists keep the short label)
MEANINGS = {
    "current": "current: pages the guest has (current_pages)",
    "target": "target: what the toolstack asked for (target_pages)",
    "total": "total: RAM at boot plus hot-added memory (total_pages)",
    "balloon_low": "balloon_low: lowmem pages in the balloon, given to Xen",
    "balloon_high": "balloon_high: highmem pages in the balloon (32-bit guests)",
    "MemAvailable": "MemAvailable: si_mem_available(), what the guest can spare",
    "EAGAIN": "EAGAIN: a pass fell short; retried after a back-off",
    "ECANCELED": "ECANCELED: max_retry_count passes fell short; given up",
    "WAIT": "WAIT: waiting for hot-added memory to be onlined",
    "OOM kill": "OOM kill: the OOM killer killed a task",
    "hot-added": "hot-added: memory hot-added to reach the target",
    "destroyed": "destroyed: the guest crashed (kernel panic, or out of PoD memory) and the toolstack destroyed it",
    "host free": "host free: Xen's free memory",
    "Σ domain pages": "Σ domain pages: what all domains hold",
    "needed": "needed: the free memory the host needs (host.needed)",
    "got there": "got there: when host free first reached what it needs",
    "kernel": "kernel: the kernel's own pages (used_at_boot)",
    "anonymous": "anonymous: the tasks' resident anonymous pages",
    "slab": "slab: reclaimable slab (dentries, inodes)",
    "page cache": "page cache: file pages, reclaimable",
    "free": "free: free pages",
    "demand": "demand: what the workloads ask for",
    "unmet demand": "unmet demand: anonymous memory neither resident nor swapped, and page cache not held",
    "swap": "swap: anonymous pages swapped out",
    "other consumers": "other consumers: memory neither free nor a simulated domain's (Xen, dom0, ...)",
    "host total": "host total: the host's memory",
    "goal": "goal: the free memory the host manager aims at (its goal events)",
    "VM started": "VM started: a start (xl create) that got its memory, at the time it was asked",
    "VM start failed": "VM start failed: a start that got no memory (or too late), at the time it was asked",
    "VM stopped": "VM stopped: xl shutdown/destroy, its memory back to the host",
    "declared stuck": "declared stuck: the manager gave up on a guest's balloon driver",
}


def size_unit(max_pages: float) -> tuple[float, str]:
    """Pages per plotted unit, and the unit's name: GiB from 4 GiB up, else MiB."""
    if max_pages >= 4 * PAGES_PER_GIB:
        return float(PAGES_PER_GIB), "GiB"
    return float(PAGES_PER_MIB), "MiB"


def time_unit(end_s: float) -> tuple[float, str]:
    """Seconds per plotted unit, and the axis label: hours, minutes or seconds."""
    if end_s >= 2 * 3600:
        return 3600.0, "time (h)"
    if end_s >= 600:
        return 60.0, "time (min)"
    return 1.0, "time (s)"


def _peak(values: pd.Series | pd.DataFrame) -> float:
    """The largest value (at least 1, so that an empty or zero column still has a scale)."""
    return float(values.to_numpy().max(initial=1))


def _end_s(result: Result) -> float:
    return float(result.timeline["time_s"].max()) if len(result.timeline) else 0.0


def _domain_names(result: Result) -> list[str]:
    return [str(d) for d in result.timeline["domain"].cat.categories]


def rows_by_domain(frame: pd.DataFrame, names: Iterable[str]) -> dict[str, pd.DataFrame]:
    """The rows of each named domain, in time order, picked by domain code in one pass."""
    names = list(names)
    domain = frame["domain"]
    codes = domain.cat.categories.get_indexer(names)
    picked = frame[np.isin(domain.cat.codes.to_numpy(), codes[codes >= 0])]
    groups = {str(name): rows for name, rows in picked.groupby("domain", observed=True, sort=False)}
    return {name: groups.get(name, picked.iloc[:0]) for name in names}


def _heading(fig: Figure, *lines: str) -> None:
    """The figure's title: the run's label, then what the figure shows, wrapped to its width."""
    width = int(fig.get_figwidth() * 13)  # 9 pt characters to an inch, wide ones (capitals, digits) included
    fig.suptitle("\n".join(textwrap.fill(line, width) for line in lines if line), x=0.01, ha="left", fontsize=9)


def _explain(handles: list[Artist]) -> list[str]:
    return [MEANINGS.get(h.get_label(), h.get_label()) for h in handles]


def _legend(ax: Axes) -> None:
    """The axes' legend, right of it, each entry saying what its line means."""
    handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles, _explain(handles), loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


def _figure_legend(fig: Figure, axes: Iterable[Axes]) -> None:
    """One legend below all panels: each label once, saying what its line or mark means."""
    handles: dict[str, Artist] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    listed = list(handles.values())
    fig.legend(listed, _explain(listed), loc="outside lower center", ncols=2, fontsize=8, frameon=False)


# -- one domain --------------------------------------------------------------------------


def draw_domain(ax: Axes, rows: pd.DataFrame, events: pd.DataFrame, title: str, t_div: float) -> None:
    """One domain's current, target, total, balloon lists and MemAvailable, its events marked.

    ``rows`` and ``events`` are that domain's timeline rows and events (``rows_by_domain``).
    """
    t = rows["time_s"].to_numpy() / t_div
    div, unit = size_unit(_peak(rows[["current_pages", "target_pages", "total_pages"]]))
    lines = [
        ("current_pages", "current", "tab:blue", "-"),
        ("target_pages", "target", "black", "--"),
        ("total_pages", "total", "tab:gray", ":"),
        ("balloon_low", "balloon_low", "tab:green", "-"),
        ("mem_available", "MemAvailable", "tab:pink", "-"),
    ]
    if rows["balloon_high"].any():
        lines.append(("balloon_high", "balloon_high", "tab:olive", "-"))
    for col, label, color, style in lines:
        ax.step(t, rows[col].to_numpy() / div, where="post", label=label, color=color, linestyle=style, lw=1.3)
    for kind, (marker, color, label) in EVENT_MARKERS.items():
        when = events.loc[events["kind"] == kind, "time_ns"].to_numpy()
        if len(when):
            at = _current_at(rows, when) / div
            # a format of a marker alone: marks, no line between them
            ax.plot(ns_to_s(when) / t_div, at, marker, color=color, label=label, markersize=8)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)  # pragma: no mutate


def _current_at(rows: pd.DataFrame, when_ns: np.ndarray) -> np.ndarray:
    """current_pages at each time: the last row at or before it (a pass's event and row share an instant)."""
    times = rows["time_ns"].to_numpy()
    index = np.searchsorted(times, when_ns, side="right") - 1
    return rows["current_pages"].to_numpy()[np.maximum(index, 0)]


def target_note(result: Result, domain: str) -> str:
    """'reached its target at 26.8 s (21.8 s after it was set)', or how it ended short."""
    summary = result.summary
    row = summary[summary["domain"] == domain]
    if not len(row):
        return ""
    r = row.iloc[0]
    if not r.get("ran", True):
        return "never ran: its start failed"
    if r["target_reached"]:
        took = r["time_to_final_target_s"]
        return f"reached its target at {r['final_target_reached_s']:.3g} s" + (
            f" ({took:.3g} s after it was set)" if took > 0 else ""
        )
    if r.get("crashed"):
        destroyed = result.events[(result.events["domain"] == domain) & (result.events["kind"] == "domain_destroyed")]
        return f"crashed: destroyed at {destroyed['time_s'].iloc[0]:.3g} s" if len(destroyed) else "crashed"
    if r.get("last_target_refused"):
        return "target not reached: the toolstack refused the last one"
    if r.get("last_target_clamped"):
        return f"target not reached: the driver clamped it to {pages_to_mib(r['final_target_pages']):.0f} MiB"
    gap = int(r["final_target_pages"]) - int(r["final_current_pages"])
    mib = pages_to_mib(abs(gap))
    return f"target not reached (ends {r['final_state']}, {mib:.0f} MiB {'short' if gap > 0 else 'above it'})"


# -- the host ------------------------------------------------------------------------------


def draw_host(ax: Axes, result: Result, t_div: float | None = None, *, domain_pages: bool = True) -> None:
    """Host free memory (and the domains' pages), with the free memory the host needs."""
    host = result.host
    t_div = t_div if t_div is not None else time_unit(_end_s(result))[0]
    needed = result.metadata.get("host_needed_pages")
    top = max(_peak(host["host_free"]), float(needed or 0))
    if domain_pages:
        top = max(top, _peak(host["domain_pages"]))
    div, unit = size_unit(top)
    t = host["time_s"].to_numpy() / t_div
    ax.step(t, host["host_free"].to_numpy() / div, where="post", color="tab:gray", label="host free")
    if domain_pages:
        ax.step(t, host["domain_pages"].to_numpy() / div, where="post", color="tab:blue", label="Σ domain pages")
    title = "host free memory"
    if needed:
        ax.axhline(needed / div, color="tab:red", linestyle="--", lw=1, label="needed")
        when = host_needed_reached_s(result.host, needed)
        if when is not None:
            ax.axvline(when / t_div, color="tab:red", alpha=0.4, lw=1, label="got there")
        title += f": needs {needed / div:.3g} {unit}, " + (
            f"reached at {when:.3g} s" if when is not None else "not reached"
        )
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)  # pragma: no mutate


def host_figure(result: Result) -> Figure:
    fig = Figure(figsize=(10, 3.4), layout="constrained")  # pragma: no mutate
    ax = fig.subplots()
    t_div, t_label = time_unit(_end_s(result))
    draw_host(ax, result, t_div)
    ax.set_xlabel(t_label)
    _legend(ax)
    _heading(fig, run_label(result.metadata))
    return fig


# -- what a planner looks at ---------------------------------------------------------------


def stack_grid(time_ns: np.ndarray, end_ns: int, points: int = STACK_POINTS) -> np.ndarray:
    """The times a stacked band is drawn at: every distinct row time, or ``points`` evenly spaced
    ones when there are more (a value holds from its row until the next)."""
    times = np.unique(time_ns)
    if len(times) <= points:
        return times
    return np.linspace(0, max(end_ns, int(times[-1])), points).astype(np.int64)


def values_at(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Each grid time's value: that of the last row at or before it (0 before the first row)."""
    index = np.searchsorted(times, grid, side="right") - 1
    return np.where(index >= 0, values[np.maximum(index, 0)] if len(values) else 0, 0)


def largest_guests(result: Result, count: int = STACKED_GUESTS) -> list[str]:
    """The ``count`` guests that held the most at their peak (dom_pages), largest first."""
    peak = result.timeline.groupby("domain", observed=True)["dom_pages"].max()
    return [str(d) for d in peak.sort_values(ascending=False, kind="stable").index[:count]]


def in_start_order(rows: dict[str, pd.DataFrame], scenario_order: pd.Index) -> list[str]:
    """The domains by when each first held memory, those that ran together in scenario order: a
    stack in this order grows a band on top at each start, the bands under it stay put."""

    def first_held(name: str) -> tuple[float, int]:
        held = rows[name]["time_ns"].to_numpy()[rows[name]["dom_pages"].to_numpy() > 0]
        return (float(held[0]) if len(held) else np.inf, scenario_order.get_loc(name))

    return sorted(rows, key=first_held)


def host_memory_figure(result: Result) -> Figure:
    """Each guest's memory stacked (the STACKED_GUESTS largest in start order, then the others as
    one band) and other consumers on top, under the host's total; below, host free memory and the
    manager's goal, with VM starts (started or failed, at the time asked) and stops marked."""
    host = result.host
    end_ns = int(result.metadata.get("duration_ns") or (host["time_ns"].max() if len(host) else 0))
    t_div, t_label = time_unit(end_ns / 1e9)
    time_ns = host["time_ns"].to_numpy()
    grid = stack_grid(time_ns, end_ns)
    # the state after an instant's last row holds from that instant: search the rows' times
    total = host["host_free"].to_numpy() + host["domain_pages"].to_numpy() + host["other_pages"].to_numpy()
    div, unit = size_unit(_peak(pd.Series(total)))
    rows = rows_by_domain(result.timeline, largest_guests(result))
    shown = in_start_order(rows, result.timeline["domain"].cat.categories)
    bands = [values_at(rows[n]["time_ns"].to_numpy(), rows[n]["dom_pages"].to_numpy(), grid) for n in shown]
    all_guests = values_at(time_ns, host["domain_pages"].to_numpy(), grid)
    others = all_guests - np.sum(bands, axis=0) if bands else all_guests
    labels = list(shown)
    ran = int(result.summary["ran"].sum()) if "ran" in result.summary.columns else len(result.summary)
    if ran > len(shown):
        bands.append(others)
        labels.append(f"the other {ran - len(shown):,} guests")
    other = values_at(time_ns, host["other_pages"].to_numpy(), grid)
    colors = [f"C{i % 10}" for i in range(len(shown))] + ["lightsteelblue"] * (len(bands) - len(shown))
    if other.any():
        bands.append(other)
        labels.append("other consumers")
        colors.append("tab:gray")
    fig = Figure(figsize=(10, 6.4), layout="constrained")  # pragma: no mutate
    top, bottom = fig.subplots(nrows=2, sharex=True, height_ratios=[3, 1.6])
    t = grid / 1e9 / t_div
    if bands:
        top.stackplot(t, *(b / div for b in bands), labels=labels, colors=colors, step="post", alpha=0.8)
    top.step(t, values_at(time_ns, total, grid) / div, where="post", color="black", ls="--", lw=1, label="host total")
    top.set_title("memory each guest holds (Xen's tot_pages), stacked", loc="left", fontsize=10)
    top.set_ylabel(unit)
    _draw_free_and_goal(bottom, result, t_div, div)
    bottom.set_ylabel(unit)
    bottom.set_xlabel(t_label)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)  # pragma: no mutate
        _legend(ax)
    left_out = f"; the {STACKED_GUESTS} that held the most drawn one by one" if ran > len(shown) else ""
    _heading(fig, run_label(result.metadata), f"guests' memory, host free memory and the manager's goal{left_out}")
    return fig


def _draw_free_and_goal(ax: Axes, result: Result, t_div: float, div: float) -> None:
    """Host free memory, the goal in force (stepwise, from the manager's goal events), VM starts
    at the time they were asked (started ▲, failed ✖), stops and guests declared stuck."""
    host, events, series = result.host, result.events, result.planner_series
    t = series["time_s"].to_numpy() / t_div
    ax.step(t, series["host_free"].to_numpy() / div, where="post", color="tab:gray", label="host free")
    if (events["kind"] == GOAL).any():
        ax.step(t, series["goal"].to_numpy() / div, where="post", color="tab:red", ls="--", lw=1.2, label="goal")
    starts = start_attempts(events)
    for outcome, marker, color, label in (("started", "^", "tab:green", "VM started"),
                                          ("failed", "X", "tab:red", "VM start failed")):  # fmt: skip
        when = starts.loc[starts["outcome"] == outcome, "asked_s"].to_numpy()
        if len(when):
            ax.plot(when / t_div, _free_at(host, when) / div, marker, color=color, markersize=9, label=label)
    for kind, marker, color, label in (("domain_stopped", "s", "black", "VM stopped"),
                                       (DECLARED_STUCK, "D", "tab:orange", "declared stuck")):  # fmt: skip
        when = events.loc[events["kind"] == kind, "time_s"].to_numpy()
        if len(when):
            ax.plot(when / t_div, _free_at(host, when) / div, marker, color=color, markersize=7, label=label)
    ax.set_title("host free memory, the manager's goal, VM starts and stops", loc="left", fontsize=10)
    ax.set_ylim(bottom=0)


def _free_at(host: pd.DataFrame, when_s: np.ndarray) -> np.ndarray:
    """Host free memory at each time: the last host row at or before it."""
    index = np.searchsorted(host["time_s"].to_numpy(), when_s, side="right") - 1
    return host["host_free"].to_numpy()[np.maximum(index, 0)]


# -- figures -------------------------------------------------------------------------------


def timeline_panels(result: Result, domains: Iterable[str] | None = None) -> tuple[list[str], str]:
    """The domains timeline_figure draws (at most MAX_PANELS), and a note on any left out.

    The domains given, in their order; else all in file order, or the worst if there are more.
    """
    names = list(domains) if domains is not None else _domain_names(result)
    if len(names) <= MAX_PANELS:
        return names, ""
    if domains is not None:
        return names[:MAX_PANELS], f"the first {MAX_PANELS} of the {len(names)} domains asked for"
    worst = [str(d) for d in worst_first(result.summary)["domain"].head(MAX_PANELS)]
    return worst, (
        f"the {MAX_PANELS} worst of {len(names):,} guests, worst first ({WORST_FIRST_ORDER}); "
        "gap_heatmap.png shows them all"
    )


def timeline_figure(result: Result, domains: Iterable[str] | None = None) -> Figure:
    """Per domain (at most MAX_PANELS): its timeline panel; at the bottom, host free memory."""
    shown, note = timeline_panels(result, domains)
    rows = rows_by_domain(result.timeline, shown)
    events = rows_by_domain(result.events, shown)
    t_div, t_label = time_unit(_end_s(result))
    fig = Figure(figsize=(10, 2.1 * (len(shown) + 1) + 2.2), layout="constrained")  # pragma: no mutate
    axes = fig.subplots(nrows=len(shown) + 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, shown, strict=False):
        draw_domain(ax, rows[name], events[name], f"{name}: {target_note(result, name)}", t_div)
    draw_host(axes[-1], result, t_div, domain_pages=False)
    axes[-1].set_xlabel(t_label)
    _figure_legend(fig, axes)
    _heading(fig, run_label(result.metadata), note)
    return fig


def memory_figure(result: Result, domain: str) -> Figure:
    """One guest's memory by holder (stacked), MemAvailable and swap; OOM kills marked below."""
    rows = rows_by_domain(result.timeline, [domain])[domain]
    events = rows_by_domain(result.events, [domain])[domain]
    t_div, t_label = time_unit(_end_s(result))
    # every row is drawn, also several at one instant (a swap-out and an OOM kill in one
    # settle): a step plot shows such a row as a vertical stroke at that instant
    t = rows["time_s"].to_numpy() / t_div
    div, unit = size_unit(_peak(rows["current_pages"]))
    fig = Figure(figsize=(10, 5.8), layout="constrained")  # pragma: no mutate
    top, bottom = fig.subplots(nrows=2, sharex=True, height_ratios=[3, 1.4])
    stack = [rows[col].to_numpy() / div for col, _, _ in HOLDERS]
    top.stackplot(
        t, *stack, labels=[label for _, label, _ in HOLDERS], colors=[c for _, _, c in HOLDERS], step="post", alpha=0.75
    )
    top.step(t, rows["mem_available"].to_numpy() / div, where="post", color="black", lw=1.2, label="MemAvailable")
    top.step(t, rows["demand_pages"].to_numpy() / div, where="post", color="tab:purple", ls="--", lw=1, label="demand")
    bottom.step(t, rows["unmet_demand"].to_numpy() / div, where="post", color="tab:purple", label="unmet demand")
    swap_t, swap = swap_line(rows, events)
    bottom.step(swap_t / t_div, swap / div, where="post", color="tab:cyan", label="swap")
    kills = events.loc[events["kind"] == "oom_kill", "time_s"].to_numpy()
    for ax in (top, bottom):
        for i, when in enumerate(kills):
            ax.axvline(when / t_div, color="tab:red", lw=1.5, ls=":", label="OOM kill" if i == 0 else None)
    top.set_title(f"{domain}: memory by holder (populated pages)", loc="left", fontsize=10)
    top.set_ylabel(unit)
    top.grid(alpha=0.3)  # pragma: no mutate
    _legend(top)
    bottom.set_title("unmet demand, swap, OOM kills", loc="left", fontsize=10)
    bottom.set_ylabel(unit)
    bottom.set_xlabel(t_label)
    bottom.grid(alpha=0.3)  # pragma: no mutate
    _legend(bottom)
    _heading(fig, run_label(result.metadata))
    return fig


def swap_line(rows: pd.DataFrame, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(time_s, swap pages): the rows' swap, and at each OOM kill the swap the killer saw
    (``oom_invoked``), which filled and was freed within one step, before that instant's rows."""
    seen = events[events["kind"] == "oom_invoked"]
    times = np.r_[seen["time_s"].to_numpy(), rows["time_s"].to_numpy()]
    values = np.r_[seen["pages"].to_numpy(), rows["swap_pages"].to_numpy()]
    order = np.argsort(times, kind="stable")  # events first at an instant they share with rows
    return times[order], values[order]


def _bin_starts(result: Result, bins: int) -> np.ndarray:
    end = _end_s(result)
    return np.linspace(0.0, end, bins, endpoint=False) if end > 0 else np.zeros(1)


def summed_gaps(timeline: pd.DataFrame, group: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Σ target - current (pages) over the domains of each group (rows) at each start time (columns).

    ``group[code]`` is the group of the domain with that category code.  A domain's gap at a
    time is that of its last row at or before it, 0 before its first row.  So each row adds
    its change from its domain's previous row to every start from its own time on: one sort by
    (domain, time), one bincount of the changes per (group, first start) and a running sum.
    """
    codes = timeline["domain"].cat.codes.to_numpy()
    order = np.lexsort((timeline["time_ns"].to_numpy(), codes))  # stable: same-instant rows keep their order
    dom = codes[order]
    gap = (timeline["target_pages"].to_numpy() - timeline["current_pages"].to_numpy())[order]
    previous = np.where(np.r_[True, dom[1:] != dom[:-1]], 0, np.r_[0, gap[:-1]])
    # a row at time t counts from the first start >= t; rows after the last start fall in column `columns`
    columns = len(starts)
    first = np.searchsorted(starts, timeline["time_s"].to_numpy()[order], side="left")
    groups = int(group.max(initial=-1)) + 1
    cells = np.bincount(group[dom] * (columns + 1) + first, weights=gap - previous, minlength=groups * (columns + 1))
    # float sums of page counts are exact below 2**53 pages
    return np.cumsum(cells.reshape(groups, columns + 1)[:, :columns], axis=1).round().astype(np.int64)


def gap_matrix(result: Result, bins: int = 200) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """target - current (pages) per domain (rows) at the start of each time bin (columns).

    Returns the matrix, the bins' start times in seconds, and the domain names.
    """
    names = _domain_names(result)
    starts = _bin_starts(result, bins)
    return summed_gaps(result.timeline, np.arange(len(names)), starts), starts, names


def heatmap_rows(names: list[str], rows: int = HEATMAP_ROWS) -> tuple[np.ndarray, list[str], str]:
    """Each domain's heat-map row, the rows' labels, and what a row is: one domain, or (more
    than ``rows`` domains) the sum over consecutive ones, labelled 'g0 – g9'."""
    per_row = max(1, -(-len(names) // rows))
    group = np.arange(len(names)) // per_row
    if per_row == 1:
        return group, names, "one row per domain"
    labels = [f"{names[i]} – {names[min(i + per_row, len(names)) - 1]}" for i in range(0, len(names), per_row)]
    return group, labels, f"each row sums {per_row:,} consecutive guests of the {len(names):,} (in scenario order)"


def gap_heatmap(result: Result, bins: int = 200) -> Figure:
    """target - current for every domain over time: red still to give back, blue still to get."""
    group, labels, rows_are = heatmap_rows(_domain_names(result))
    starts = _bin_starts(result, bins)
    matrix = summed_gaps(result.timeline, group, starts)
    end = _end_s(result)
    t_div, t_label = time_unit(end)
    largest = float(np.abs(matrix).max(initial=0))
    div, unit = size_unit(max(largest, 1))
    height = min(2.6 + 0.16 * len(labels), 18)  # pragma: no mutate
    fig = Figure(figsize=(10, height), layout="constrained")  # pragma: no mutate
    ax = fig.subplots()
    limit = largest / div if largest else 1.0
    image = ax.imshow(
        matrix / div,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu",
        vmin=-limit,
        vmax=limit,
        extent=(0, end / t_div, len(labels) - 0.5, -0.5),
    )
    step = max(1, len(labels) // 40)  # at most about 40 labels
    ax.set_yticks(range(0, len(labels), step), labels[::step], fontsize=7)
    ax.set_xlabel(t_label)
    ax.set_title("target - current (red: still to give back, blue: still to get)", loc="left", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"target - current ({unit})", shrink=min(1.0, 6 / height))
    at_target = "" if largest else "every domain was at its target at every bin start"
    _heading(fig, run_label(result.metadata), rows_are, at_target)
    return fig


class Bars(NamedTuple):
    """One panel of summary_figure: a value per guest, the text beside each bar, and the note
    that replaces the panel when every value is 0."""

    xlabel: str
    color: str
    values: np.ndarray
    texts: list[str]
    zero_note: str

    def is_blank(self) -> bool:
        return not self.values.any() and NOT_REACHED not in self.texts


def summary_panels(s: pd.DataFrame) -> list[Bars]:
    """The bars of summary_figure, one list per panel, for the rows of ``s`` in its order."""
    took = s["time_to_final_target_s"].to_numpy(dtype=float)
    reached = s["target_reached"].to_numpy(dtype=bool)
    backoff = s["backoff_s"].to_numpy(dtype=float)
    kills = s["oom_kills"].to_numpy(dtype=float)
    div, unit = size_unit(_peak(s["min_mem_available"]))
    available = s["min_mem_available"].to_numpy(dtype=float) / div
    unmet = s["unmet_demand_mib_s"].to_numpy(dtype=float)
    return [
        Bars(
            "time to final target (s)",
            "tab:blue",
            np.where(reached, took, 0.0),
            [_number(v) if r else NOT_REACHED for v, r in zip(took, reached, strict=True)],
            "0 s: each reached its final target the moment it was set",
        ),
        Bars("in back-off (s)", "tab:orange", backoff, _numbers(backoff), "none was in back-off"),
        Bars("OOM kills", "black", kills, _numbers(kills), "no OOM kills"),
        Bars(f"minimum MemAvailable ({unit})", "tab:pink", available, _numbers(available), "each fell to 0"),
        Bars("unmet demand (MiB·s)", "tab:purple", unmet, _numbers(unmet), "no unmet demand"),
    ]


def _number(value: float) -> str:
    """'0.25', '12.5', '1,100': three significant digits, whole numbers from 1000 up (from 999.5:
    three significant digits of it would read '1e+03')."""
    return f"{value:,.0f}" if abs(value) >= 999.5 else f"{value:.3g}"


def _numbers(values: np.ndarray) -> list[str]:
    return [_number(v) for v in values]


def _draw_bars(ax: Axes, y: np.ndarray, bars: Bars) -> None:
    """A panel's bars with their values beside them, or, when all are 0, its note instead."""
    container = ax.barh(y, bars.values, color=bars.color)
    ax.set_xlabel(bars.xlabel)
    if bars.is_blank():  # the zero-width bars stay: they are the table's values, and invisible
        note = textwrap.fill(bars.zero_note, 22)
        ax.text(0.5, 0.5, note, transform=ax.transAxes, ha="center", va="center", fontsize=8)
        ax.tick_params(bottom=False, labelbottom=False, left=False)
        for spine in ax.spines.values():
            spine.set_visible(False)
        return
    for text in ax.bar_label(container, labels=bars.texts, padding=2, fontsize=7):
        if text.get_text() == NOT_REACHED:
            text.set_color("tab:red")
    ax.set_xlim(0, max(float(bars.values.max()), 1e-9) * 1.3)  # room for the values (a panel with bars has some)
    ax.locator_params(axis="x", nbins=4)  # the values are written out: few ticks
    ax.grid(axis="x", alpha=0.3)  # pragma: no mutate


def summary_figure(result: Result, rows: int = SUMMARY_ROWS) -> Figure:
    """The worst ``rows`` guests (worst_first): time to their final target, seconds in back-off,
    OOM kills, minimum MemAvailable and unmet demand, each value beside its bar.  Guests whose
    start failed have none of these: they are left out, and the title says how many."""
    s = result.summary
    never = s[~s["ran"]]["domain"].astype(str).tolist() if "ran" in s.columns else []
    s = s[~s["domain"].astype(str).isin(never)]
    worst = worst_first(s).head(rows)
    rank = pd.Series(np.arange(len(worst)), index=worst.index)
    shown = s[s.index.isin(worst.index)]  # in the table's order, each bar placed at its rank
    panels = summary_panels(shown)
    fig = Figure(figsize=(14, 2.2 + 0.24 * len(worst)), layout="constrained")  # pragma: no mutate
    widths = [0.5 if bars.is_blank() else 1.0 for bars in panels]
    axes = fig.subplots(1, len(panels), sharey=True, width_ratios=widths)
    for ax, bars in zip(axes, panels, strict=True):
        _draw_bars(ax, rank[shown.index].to_numpy(), bars)
    axes[2].xaxis.get_major_locator().set_params(integer=True)  # OOM kills
    axes[0].set_yticks(rank.to_numpy(), [str(d) for d in worst["domain"]], fontsize=8)
    axes[0].invert_yaxis()
    blank = [bars.xlabel for bars in panels if bars.is_blank()]
    _heading(
        fig,
        run_label(result.metadata),
        _summary_note(len(worst), len(s)),
        f"0 for every guest shown, so a note instead of bars: {', '.join(blank)}" if blank else "",
        f"never ran (their start failed), not shown: {', '.join(never)}" if never else "",
    )
    return fig


def _summary_note(shown: int, total: int) -> str:
    if shown == total:
        return f"all {total:,} guests, worst first ({WORST_FIRST_ORDER})"
    return (
        f"the {shown} worst of {total:,} guests, worst first ({WORST_FIRST_ORDER}); "
        f"{total - shown:,} left out (the summary table has every guest)"
    )


def compare_figure(results: dict[str, Result], domain: str) -> Figure:
    """One domain's current (solid) and target (dashed) in several runs, one colour per run;
    their MemAvailable below.  The title gives each run's label (scenario, seed, settings)."""
    fig = Figure(figsize=(10, 5.0 + 0.3 * len(results)), layout="constrained")  # pragma: no mutate
    top, bottom = fig.subplots(nrows=2, sharex=True, height_ratios=[2, 1])
    rows = {label: r.domain(domain) for label, r in results.items()}
    end = max((float(r["time_s"].max()) for r in rows.values() if len(r)), default=0.0)
    t_div, t_label = time_unit(end)
    div, unit = size_unit(max(_peak(r[["current_pages", "target_pages"]]) for r in rows.values()))
    _draw_runs(top, rows, t_div, div)
    for i, (label, r) in enumerate(rows.items()):
        t = r["time_s"].to_numpy() / t_div
        bottom.step(t, r["mem_available"].to_numpy() / div, where="post", color=f"C{i}", label=label)
    top.set_title(f"{domain}: current and target in each run", loc="left", fontsize=10)
    bottom.set_title("MemAvailable", loc="left", fontsize=10)
    for ax in (top, bottom):
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)  # pragma: no mutate
        _legend(ax)
    bottom.set_xlabel(t_label)
    _heading(fig, *(f"{label}: {run_label(r.metadata)}" for label, r in results.items()))
    return fig


def _draw_runs(ax: Axes, rows: dict[str, pd.DataFrame], t_div: float, div: float) -> None:
    """Each run's current_pages (solid) and target_pages (dashed) of one domain, one colour per run;
    a domain destroyed in a run (it crashed) ends there, with a mark."""
    for i, (label, r) in enumerate(rows.items()):
        destroyed = (r["cause"] == "destroyed").to_numpy() if "cause" in r.columns else np.zeros(len(r), bool)
        if destroyed.any():
            r = r.iloc[: destroyed.argmax() + 1]
        t = r["time_s"].to_numpy() / t_div
        lw = _run_width(i, len(rows))
        current = r["current_pages"].to_numpy() / div
        ax.step(t, current, where="post", color=f"C{i}", lw=lw, label=f"{label}: current")
        ax.step(
            t, r["target_pages"].to_numpy() / div, where="post", color=f"C{i}", lw=lw, ls="--", label=f"{label}: target"
        )
        if destroyed.any():
            ax.plot(t[-1:], current[-1:], "P", color=f"C{i}", markersize=9, label=f"{label}: destroyed")


def _run_width(i: int, runs: int) -> float:
    """Earlier runs' lines are wider, so that where runs agree each one still shows under the next."""
    return 1.3 + 2.0 * (runs - 1 - i) / max(runs - 1, 1)


def runs_figure(results: dict[str, Result], domains: Iterable[str]) -> Figure:
    """Several runs of one scenario on one figure: per domain (at most MAX_PANELS), each run's
    current (solid) and target (dashed), one colour per run; each run's host free memory below."""
    names = list(domains)
    shown = names[:MAX_PANELS]
    rows = {label: rows_by_domain(r.timeline, shown) for label, r in results.items()}
    t_div, t_label = time_unit(max(_end_s(r) for r in results.values()))
    fig = Figure(
        figsize=(10, 2.1 * (len(shown) + 1) + 1.6 + 0.3 * len(results)), layout="constrained"
    )  # pragma: no mutate
    axes = fig.subplots(nrows=len(shown) + 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, shown, strict=False):
        of_domain = {label: by_name[name] for label, by_name in rows.items()}
        div, unit = size_unit(max(_peak(r[["current_pages", "target_pages"]]) for r in of_domain.values()))
        _draw_runs(ax, of_domain, t_div, div)
        ax.set_title(name, loc="left", fontsize=10)
        ax.set_ylabel(unit)
    host = axes[-1]
    div, unit = size_unit(max(_peak(r.host["host_free"]) for r in results.values()))
    for i, (label, r) in enumerate(results.items()):
        t = r.host["time_s"].to_numpy() / t_div
        free = r.host["host_free"].to_numpy() / div
        host.step(t, free, where="post", color=f"C{i}", lw=_run_width(i, len(results)), label=f"{label}: host free")
    host.set_title("host free memory", loc="left", fontsize=10)
    host.set_ylabel(unit)
    host.set_xlabel(t_label)
    for ax in axes:
        ax.grid(alpha=0.3)  # pragma: no mutate
    _figure_legend(fig, axes)
    left_out = len(names) - len(shown)
    note = f"{left_out} more domains not drawn (the table has them all)" if left_out > 0 else ""
    _heading(fig, *(f"{label}: {run_label(r.metadata)}" for label, r in results.items()), note)
    return fig


def most_pressed(result: Result, count: int) -> list[str]:
    """The domains with workloads that fared worst, in worst_first's order."""
    tl = result.timeline
    with_demand = set(map(str, tl["domain"][tl["demand_pages"].to_numpy() > 0].unique()))
    s = result.summary
    pressed = s[s["domain"].astype(str).isin(with_demand)]
    return [str(d) for d in worst_first(pressed)["domain"].head(count)]


def write_figures(
    result: Result, directory: str | Path, dpi: int = 110, on_figure: Callable[[int, int], None] | None = None
) -> list[str]:
    """Draw the standard set into ``directory``; the file names written.  ``on_figure(done, total)``
    is told before each figure is drawn and when all are (for a progress bar)."""
    directory = Path(directory)
    figures: dict[str, Callable[[], Figure]] = {
        "timeline.png": lambda: timeline_figure(result),
        "host.png": lambda: host_figure(result),
        "gap_heatmap.png": lambda: gap_heatmap(result),
        "summary.png": lambda: summary_figure(result),
    }
    if planner_applies(result):
        figures[PLANNER_FIGURE] = lambda: host_memory_figure(result)
    for name in most_pressed(result, MAX_MEMORY_FIGURES):
        figures[f"memory-{name}.png"] = lambda name=name: memory_figure(result, name)
    for done, (name, draw) in enumerate(figures.items()):  # one figure in memory at a time
        if on_figure is not None:
            on_figure(done, len(figures))
        draw().savefig(directory / name, dpi=dpi)
    if on_figure is not None:
        on_figure(len(figures), len(figures))
    return list(figures)
