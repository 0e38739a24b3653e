"""What planners look at in a sweep: a metric against a setting with the seeds' spread, a heat map
over two settings, and the metric's distribution across seeds.

Each figure reads one value per run: a ``host_`` metric as the run has it, a guest metric taken
over the run's guests (the spec's ``figures.guests``: mean, sum, min or max); failed runs are left
out.  Sizes in pages are drawn in MiB.  Matplotlib Figures, no pyplot state (as ``plots``).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from balloonsim.errors import ScenarioError
from balloonsim.sweep.spec import GUESTS, OVERCOMMIT, SweepSpec
from balloonsim.sweep.store import FIGURES, atomic_write
from balloonsim.sweep.table import HOST_PREFIX
from balloonsim.units import PAGES_PER_MIB

#: guest metrics in pages whose names do not say so (results/summary.py)
PAGE_METRICS = {"min_mem_available", "max_unmet_demand", "max_unmet_anon", "max_unmet_cache",
                "balloon_reclaimed", "kswapd_reclaimed"}  # fmt: skip
LOW, HIGH = 0.1, 0.9  # the band of the seeds' spread


def default_metric(table: pd.DataFrame) -> str:
    """VM-start success when the runs start VMs, else the guests' unmet demand."""
    rate = "host_start_success_rate"
    if rate in table.columns and table[rate].notna().any():
        return rate
    return "unmet_demand_mib_s"


def metric_unit(metric: str) -> tuple[str, float]:
    """The axis label's unit and the factor from the table's values to it."""
    bare = metric.removeprefix(HOST_PREFIX)
    if bare.endswith("_mib_s"):
        return "MiB·s", 1.0
    if bare.endswith("_pages") or bare in PAGE_METRICS:
        return "MiB", 1 / PAGES_PER_MIB
    if bare.endswith("_s"):
        return "s", 1.0
    if bare.endswith("_rate"):
        return "share, 0-1", 1.0
    if bare.startswith("overcommit"):
        return "Σ static-max / host", 1.0
    return "count", 1.0


def per_run(table: pd.DataFrame, metric: str, guests: str) -> pd.DataFrame:
    """One row per run that did not fail: point, seed_index and ``value``, the metric in its figure unit."""
    if metric not in table.columns or not pd.api.types.is_numeric_dtype(table[metric]):
        numeric = [
            c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and c not in ("seed", "seed_index")
        ]
        raise ScenarioError(
            [
                f"figures.metric: {metric!r} is not a numeric column of the table; some that are: "
                f"{', '.join(numeric[:12])}, ...; the runs are kept: start the sweep again to draw the figures"
            ]
        )
    ok = table[~table["failed"].astype(bool)]
    how = "first" if metric.startswith(HOST_PREFIX) else guests
    values = ok.groupby(["point", "seed_index"], sort=False)[metric].agg(how)
    _, scale = metric_unit(metric)
    return (values.astype(float) * scale).rename("value").reset_index()


#: what the derived settings' numbers are (spec.DERIVED)
DERIVED_UNITS = {GUESTS: " (guests)", OVERCOMMIT: " (Σ static-max / host total)"}


def axis(table: pd.DataFrame, setting: str) -> tuple[pd.Series, str, bool]:
    """Each point's position on a setting's axis, its label, and whether it is numeric: the value
    if a number, MiB or seconds if a size or a time, else the values in the spec's order."""
    points = table.drop_duplicates("point").set_index("point")
    plain = DERIVED_UNITS.get(setting, "")
    for column, unit in ((setting, plain), (f"{setting}_mib", " (MiB)"), (f"{setting}_s", " (s)")):
        if column in points.columns and pd.api.types.is_numeric_dtype(points[column]):
            return points[column].astype(float), setting + unit, True
    return points[setting].astype(str), setting, False


def write_figures(table: pd.DataFrame, spec: SweepSpec, where: Path) -> list[str]:
    """Draw the figures the spec asks for (defaults: the first two settings swept) into ``where``."""
    chosen = spec.figures
    metric = chosen.metric or default_metric(table)
    settings = spec.settings
    x = chosen.x or (settings[0] if settings else None)
    by = chosen.by or next((s for s in settings if s != x), None)
    runs = per_run(table, metric, chosen.guests)
    figures = {FIGURES[2]: cdf_figure(table, runs, metric, x)}
    if x is not None:
        figures[FIGURES[0]] = spread_figure(table, runs, metric, x, by)
    if x is not None and by is not None:
        figures[FIGURES[1]] = heatmap_figure(table, runs, metric, x, by)
    for name, figure in figures.items():
        atomic_write(where / name, lambda tmp, f=figure: f.savefig(tmp, format="png", dpi=110))
    return [n for n in FIGURES if n in figures]


def _label(metric: str) -> str:
    unit, _ = metric_unit(metric)
    return f"{metric} ({unit})"


def _groups(table: pd.DataFrame, runs: pd.DataFrame, setting: str | None) -> list[tuple[str, pd.DataFrame]]:
    """The runs by value of ``setting`` (all runs as one group without one), in the spec's order."""
    if setting is None:
        return [("all runs", runs)]
    values, _, _ = axis(table, setting)
    keyed = runs.assign(group=runs["point"].map(values))
    return [(_fmt(v), keyed[keyed["group"] == v]) for v in pd.unique(values)]


def spread_figure(table: pd.DataFrame, runs: pd.DataFrame, metric: str, x: str, by: str | None) -> Figure:
    """The metric against ``x``: the median over seeds (and random samples) and its 10-90 % band,
    one line per value of ``by``."""
    xs, xlabel, numeric = axis(table, x)
    order = list(pd.unique(xs))
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for k, (group, rows) in enumerate(_groups(table, runs, by)):
        at = rows.assign(x=rows["point"].map(xs)).groupby("x", sort=False)["value"]
        stats = pd.DataFrame({"median": at.median(), "low": at.quantile(LOW), "high": at.quantile(HIGH)})
        stats = stats.reindex([v for v in order if v in stats.index])
        pos = stats.index.to_numpy(dtype=float) if numeric else np.array([order.index(v) for v in stats.index])
        ax.plot(pos, stats["median"], "o-", color=f"C{k}", label=group if by else "median")
        ax.fill_between(pos, stats["low"], stats["high"], color=f"C{k}", alpha=0.2, linewidth=0)
    if not numeric:
        ax.set_xticks(range(len(order)), [str(v) for v in order])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(metric))
    per = f", one line per {by}" if by else ""
    _title(ax, f"{metric} against {x}: median over seeds, band 10-90 %{per}")
    ax.grid(alpha=0.3)
    ax.legend(title=by, fontsize=8)
    return fig


def heatmap_figure(table: pd.DataFrame, runs: pd.DataFrame, metric: str, x: str, y: str) -> Figure:
    """The metric's mean over seeds in each cell of ``x`` × ``y``, each cell annotated."""
    xs, xlabel, _ = axis(table, x)
    ys, ylabel, _ = axis(table, y)
    cells = (
        runs.assign(x=runs["point"].map(xs), y=runs["point"].map(ys)).groupby(["y", "x"], sort=False)["value"].mean()
    )
    grid = cells.unstack("x").reindex(index=list(pd.unique(ys)), columns=list(pd.unique(xs)))
    fig = Figure(figsize=(max(5, 1.1 * grid.shape[1] + 3), max(3, 0.6 * grid.shape[0] + 2)), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid.to_numpy(dtype=float), aspect="auto", cmap="viridis")
    for (i, j), value in np.ndenumerate(grid.to_numpy(dtype=float)):
        if np.isfinite(value):
            ax.text(
                j,
                i,
                f"{value:.3g}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if value < np.nanmean(grid) else "black",
            )
    ax.set_xticks(range(grid.shape[1]), [_fmt(v) for v in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [_fmt(v) for v in grid.index])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    fig.colorbar(image, ax=ax, label=_label(metric))
    _title(ax, f"{metric}, mean over seeds, by {x} and {y}")
    return fig


def cdf_figure(table: pd.DataFrame, runs: pd.DataFrame, metric: str, by: str | None) -> Figure:
    """The metric's empirical distribution across seeds (and random samples, and the values of the
    other settings, pooled), one curve per value of ``by``."""
    fig = Figure(figsize=(8, 4.2), layout="constrained")
    ax = fig.subplots()
    for k, (group, rows) in enumerate(_groups(table, runs, by)):
        values = np.sort(rows["value"].dropna().to_numpy())
        if len(values):
            ax.step(values, np.arange(1, len(values) + 1) / len(values), where="post", color=f"C{k}", label=group)
    ax.set_xlabel(_label(metric))
    ax.set_ylabel("share of runs at or below")
    per = f", one curve per {by}" if by else ""
    pooled = (
        " and the other settings' values"
        if by is not None and table["point"].nunique() > len(_groups(table, runs, by))
        else ""
    )
    _title(ax, f"CDF of {metric} across seeds{pooled}{per}")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(title=by, fontsize=8)
    return fig


def _title(ax: Any, text: str) -> None:
    ax.set_title(textwrap.fill(text, 75), loc="left", fontsize=10)


def _fmt(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
