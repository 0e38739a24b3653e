"""Figures drawn from a Result (never by re-running the model).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot,
so nothing global changes and notebooks and scripts can use them alike:

* ``timeline_figure``: per domain, current, target, total and the balloon
  lists (and MemAvailable), with back-off, cancellation, OOM kills and
  hot-added memory marked; the host below;
* ``host_figure``: host free memory, the domains' pages, and the free
  memory the host needs (``host.needed``), with when it got there;
* ``memory_figure``: one guest's memory by holder, stacked, with
  MemAvailable, swap and unmet demand;
* ``gap_heatmap``: target - current for every domain over time, readable
  with a hundred guests;
* ``summary_figure``: bar charts of the summary table;
* ``compare_figure``: one domain in several runs (two policies, two knobs)
  on the same axes.

``write_figures`` draws the set ``balloonsim run`` and ``balloonsim plot``
write next to the tables (memory figures for the guests that suffered most).
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from balloonsim.results.result import Result
from balloonsim.results.summary import host_needed_reached_s
from balloonsim.units import PAGE_SIZE

MAX_PANELS = 12
MAX_MEMORY_FIGURES = 4
MIB_PAGES = (1 << 20) // PAGE_SIZE
#: events marked on the timeline: kind -> (marker, colour, legend label)
EVENT_MARKERS = {
    "EAGAIN": ("v", "tab:orange", "EAGAIN"),
    "ECANCELED": ("X", "tab:red", "ECANCELED"),
    "WAIT": ("s", "tab:purple", "WAIT"),
    "oom_kill": ("*", "black", "OOM kill"),
    "hotplug_add": ("^", "tab:cyan", "hot-added"),
}
#: the memory holders of memory_figure, bottom to top: column, label, colour
HOLDERS = (
    ("kernel_pages", "kernel", "tab:gray"),
    ("anon_pages", "anonymous", "tab:red"),
    ("slab_reclaimable", "slab", "tab:brown"),
    ("page_cache", "page cache", "tab:olive"),
    ("guest_free", "free", "tab:green"),
)


def size_unit(max_pages: float) -> tuple[float, str]:
    """Pages per plotted unit, and the unit's name: GiB from 4 GiB up, else MiB."""
    if max_pages * PAGE_SIZE >= 4 << 30:
        return float(1024 * MIB_PAGES), "GiB"
    return float(MIB_PAGES), "MiB"


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


def _domains(result: Result, domains: Iterable[str] | None) -> list[str]:
    return list(domains) if domains is not None else [str(d) for d in result.timeline["domain"].cat.categories]


def _legend(ax: Axes) -> None:
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)


# -- one domain --------------------------------------------------------------------------


def draw_domain(ax: Axes, result: Result, domain: str, t_div: float | None = None) -> None:
    """current, target, total, the balloon lists and MemAvailable of one domain, its events marked."""
    tl = result.timeline
    rows = tl[tl["domain"] == domain]
    t_div = t_div if t_div is not None else time_unit(_end_s(result))[0]
    t = rows["time_s"].to_numpy() / t_div
    div, unit = size_unit(_peak(rows[["current_pages", "target_pages", "total_pages"]]))
    lines = [
        ("current_pages", "current", "tab:blue", "-"),
        ("target_pages", "target", "black", "--"),
        ("total_pages", "total", "tab:gray", ":"),
        ("balloon_low", "balloon_low", "tab:green", "-"),
        ("mem_available", "MemAvailable", "tab:pink", "-"),  # what the balloon may still take
    ]
    if rows["balloon_high"].any():
        lines.append(("balloon_high", "balloon_high", "tab:olive", "-"))
    for col, label, color, style in lines:
        ax.step(t, rows[col].to_numpy() / div, where="post", label=label, color=color, linestyle=style, lw=1.3)
    ev = result.events
    ev = ev[ev["domain"] == domain]
    for kind, (marker, color, label) in EVENT_MARKERS.items():
        hits = ev[ev["kind"] == kind]
        if len(hits):
            when = hits["time_ns"].to_numpy()
            ax.plot(
                when / 1e9 / t_div,
                _current_at(rows, when) / div,
                marker,
                color=color,
                label=label,
                linestyle="none",
                markersize=8,
            )
    ax.set_title(f"{domain}: {target_note(result, domain)}", loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    _legend(ax)


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
    if r["target_reached"]:
        took = r["time_to_final_target_s"]
        return f"reached its target at {r['final_target_reached_s']:.3g} s" + (
            f" ({took:.3g} s after it was set)" if took > 0 else ""
        )
    gap = int(r["final_target_pages"]) - int(r["final_current_pages"])
    mib = abs(gap) / MIB_PAGES
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
            ax.axvline(when / t_div, color="tab:red", alpha=0.4, lw=1)
        title += f": needs {needed / div:.3g} {unit}, " + (
            f"reached at {when:.3g} s" if when is not None else "not reached"
        )
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.grid(alpha=0.3)
    _legend(ax)


def host_figure(result: Result) -> Figure:
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.subplots()
    t_div, t_label = time_unit(_end_s(result))
    draw_host(ax, result, t_div)
    ax.set_xlabel(t_label)
    return fig


# -- figures -------------------------------------------------------------------------------


def timeline_figure(result: Result, domains: Iterable[str] | None = None) -> Figure:
    """Per domain (at most MAX_PANELS): its timeline panel; at the bottom, host free memory."""
    names = _domains(result, domains)
    shown = names[:MAX_PANELS]
    t_div, t_label = time_unit(_end_s(result))
    fig = Figure(figsize=(10, 2.1 * (len(shown) + 1) + 0.6), layout="constrained")
    axes = fig.subplots(len(shown) + 1, 1, sharex=True, squeeze=False)[:, 0]
    for ax, name in zip(axes, shown, strict=False):
        draw_domain(ax, result, name, t_div)
    draw_host(axes[-1], result, t_div, domain_pages=False)
    axes[-1].set_xlabel(t_label)
    if len(names) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(names)} domains (gap_heatmap.png shows them all)", fontsize=9)
    return fig


def memory_figure(result: Result, domain: str) -> Figure:
    """One guest's memory by holder (stacked), MemAvailable and swap; OOM kills marked below."""
    tl = result.timeline
    rows = tl[tl["domain"] == domain]
    t_div, t_label = time_unit(_end_s(result))
    t = rows["time_s"].to_numpy() / t_div
    div, unit = size_unit(_peak(rows["current_pages"]))
    fig = Figure(figsize=(10, 5.4), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
    stack = [rows[col].to_numpy() / div for col, _, _ in HOLDERS]
    top.stackplot(
        t, *stack, labels=[label for _, label, _ in HOLDERS], colors=[c for _, _, c in HOLDERS], step="post", alpha=0.75
    )
    top.step(t, rows["mem_available"].to_numpy() / div, where="post", color="black", lw=1.2, label="MemAvailable")
    top.step(t, rows["demand_pages"].to_numpy() / div, where="post", color="tab:purple", ls="--", lw=1, label="demand")
    bottom.step(t, rows["unmet_demand"].to_numpy() / div, where="post", color="tab:purple", label="unmet demand")
    bottom.step(t, rows["swap_pages"].to_numpy() / div, where="post", color="tab:cyan", label="swap")
    ev = result.events
    kills = ev[(ev["domain"] == domain) & (ev["kind"] == "oom_kill")]
    for ax in (top, bottom):
        for i, when in enumerate(kills["time_s"].to_numpy()):
            ax.axvline(when / t_div, color="tab:red", lw=1.5, ls=":", label="OOM kill" if i == 0 else None)
    top.set_title(f"{domain}: memory by holder (populated pages)", loc="left", fontsize=10)
    top.set_ylabel(unit)
    top.grid(alpha=0.3)
    _legend(top)
    bottom.set_title("unmet demand, swap, OOM kills", loc="left", fontsize=10)
    bottom.set_ylabel(unit)
    bottom.set_xlabel(t_label)
    bottom.grid(alpha=0.3)
    _legend(bottom)
    return fig


def gap_matrix(result: Result, bins: int = 200) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """target - current (pages) per domain (rows) at the start of each time bin (columns).

    Returns the matrix, the bins' start times in seconds, and the domain names.
    """
    tl = result.timeline
    names = [str(d) for d in tl["domain"].cat.categories]
    end = _end_s(result)
    starts = np.linspace(0.0, end, bins, endpoint=False) if end > 0 else np.zeros(1)
    matrix = np.zeros((len(names), len(starts)), dtype=np.int64)
    for i, (_, rows) in enumerate(tl.groupby("domain", observed=False, sort=True)):
        index = np.searchsorted(rows["time_s"].to_numpy(), starts, side="right") - 1
        gap = (rows["target_pages"] - rows["current_pages"]).to_numpy()
        matrix[i] = np.where(index >= 0, gap[np.maximum(index, 0)], 0)
    return matrix, starts, names


def gap_heatmap(result: Result, bins: int = 200) -> Figure:
    """target - current for every domain over time: red still to give back, blue still to get."""
    matrix, starts, names = gap_matrix(result, bins)
    end = _end_s(result)
    t_div, t_label = time_unit(end)
    div, unit = size_unit(float(np.abs(matrix).max(initial=1)))
    height = min(2.0 + 0.16 * len(names), 18)
    fig = Figure(figsize=(10, height), layout="constrained")
    ax = fig.subplots()
    limit = max(float(np.abs(matrix).max(initial=0)) / div, 1e-9)
    image = ax.imshow(
        matrix / div,
        aspect="auto",
        interpolation="nearest",
        cmap="RdBu",
        vmin=-limit,
        vmax=limit,
        extent=(0, end / t_div, len(names) - 0.5, -0.5),
    )
    step = max(1, len(names) // 40)  # at most about 40 labels
    ax.set_yticks(range(0, len(names), step), names[::step], fontsize=7)
    ax.set_xlabel(t_label)
    ax.set_title("target - current per domain (red: still to give back, blue: still to get)", loc="left", fontsize=10)
    fig.colorbar(image, ax=ax, label=f"target - current ({unit})", shrink=min(1.0, 6 / height))
    return fig


def summary_figure(result: Result) -> Figure:
    """Per domain: time to its final target, seconds in back-off, OOM kills, minimum MemAvailable."""
    s = result.summary
    names = [str(d) for d in s["domain"]]
    y = np.arange(len(names))
    fig = Figure(figsize=(12, 1.6 + 0.22 * len(names)), layout="constrained")
    axes = fig.subplots(1, 4, sharey=True)
    took = s["time_to_final_target_s"].to_numpy(dtype=float)
    reached = s["target_reached"].to_numpy(dtype=bool)
    axes[0].barh(y, np.where(reached, took, 0.0), color="tab:blue")
    for i in np.flatnonzero(~reached):
        axes[0].text(0, i, " not reached", va="center", fontsize=7, color="tab:red")
    axes[0].set_xlabel("time to final target (s)")
    axes[1].barh(y, s["backoff_s"].to_numpy(dtype=float), color="tab:orange")
    axes[1].set_xlabel("in back-off (s)")
    kills = s["oom_kills"].to_numpy(dtype=float)
    axes[2].barh(y, kills, color="black")
    axes[2].set_xlim(0, max(1.0, kills.max(initial=0) * 1.05))
    axes[2].xaxis.get_major_locator().set_params(integer=True)
    axes[2].set_xlabel("OOM kills")
    div, unit = size_unit(_peak(s["min_mem_available"]))
    axes[3].barh(y, s["min_mem_available"].to_numpy(dtype=float) / div, color="tab:pink")
    axes[3].set_xlabel(f"minimum MemAvailable ({unit})")
    axes[0].set_yticks(y, names, fontsize=7 if len(names) > 30 else 9)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.set_xlim(left=0)
        ax.grid(axis="x", alpha=0.3)
    return fig


def compare_figure(results: dict[str, Result], domain: str) -> Figure:
    """One domain's current (solid) and target (dashed) in several runs, one colour per run;
    their MemAvailable below."""
    fig = Figure(figsize=(10, 5.0), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[2, 1])
    rows = {label: r.domain(domain) for label, r in results.items()}
    end = max((float(r["time_s"].max()) for r in rows.values() if len(r)), default=0.0)
    t_div, t_label = time_unit(end)
    div, unit = size_unit(max(_peak(r[["current_pages", "target_pages"]]) for r in rows.values()))
    for i, (label, r) in enumerate(rows.items()):
        color = f"C{i}"
        t = r["time_s"].to_numpy() / t_div
        top.step(t, r["current_pages"].to_numpy() / div, where="post", color=color, label=f"{label}: current")
        top.step(t, r["target_pages"].to_numpy() / div, where="post", color=color, ls="--", label=f"{label}: target")
        bottom.step(t, r["mem_available"].to_numpy() / div, where="post", color=color, label=label)
    top.set_title(f"{domain}: current and target in each run", loc="left", fontsize=10)
    bottom.set_title("MemAvailable", loc="left", fontsize=10)
    for ax in (top, bottom):
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        _legend(ax)
    bottom.set_xlabel(t_label)
    return fig


def most_pressed(result: Result, count: int) -> list[str]:
    """The domains with workloads that suffered most: OOM kills, then unmet demand (MiB·s)."""
    tl = result.timeline
    with_demand = set(tl.loc[tl["demand_pages"] > 0, "domain"].astype(str))
    s = result.summary[result.summary["domain"].astype(str).isin(with_demand)]
    s = s.sort_values(["oom_kills", "unmet_demand_mib_s"], ascending=False, kind="stable")
    return [str(d) for d in s["domain"].head(count)]


def write_figures(result: Result, directory: str | Path, dpi: int = 110) -> list[str]:
    """Draw the standard set into ``directory``; the file names written."""
    directory = Path(directory)
    figures = {
        "timeline.png": timeline_figure(result),
        "host.png": host_figure(result),
        "gap_heatmap.png": gap_heatmap(result),
        "summary.png": summary_figure(result),
    }
    for name in most_pressed(result, MAX_MEMORY_FIGURES):
        figures[f"memory-{name}.png"] = memory_figure(result, name)
    for name, fig in figures.items():
        fig.savefig(directory / name, dpi=dpi)
    return list(figures)
