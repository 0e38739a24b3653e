"""Figures drawn from a Result (never by re-running the model).

Each function returns a ``matplotlib.figure.Figure`` built without pyplot,
so nothing global changes and notebooks and scripts can use them alike.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from balloonsim.results.result import Result
from balloonsim.units import PAGE_SIZE

MAX_PANELS = 12
_MARKERS = {"EAGAIN": ("v", "tab:orange"), "ECANCELED": ("X", "tab:red"), "WAIT": ("s", "tab:purple")}


def _scale(max_pages: float) -> tuple[float, str]:
    """Pages per plotted unit, and the unit's name (MiB or GiB)."""
    if max_pages * PAGE_SIZE >= 4 << 30:
        return (1 << 30) / PAGE_SIZE, "GiB"
    return (1 << 20) / PAGE_SIZE, "MiB"


def _time_axis(end_s: float) -> tuple[float, str]:
    if end_s >= 2 * 3600:
        return 3600.0, "time (h)"
    if end_s >= 600:
        return 60.0, "time (min)"
    return 1.0, "time (s)"


def timeline_figure(result: Result, domains: list[str] | None = None) -> Figure:
    """Per domain: current, target and the balloon lists over time, back-off and
    cancellation marked; at the bottom, the host's free memory."""
    tl = result.timeline
    names = domains if domains is not None else [str(d) for d in tl["domain"].cat.categories]
    shown = names[:MAX_PANELS]
    end_s = float(tl["time_s"].max()) if len(tl) else 0.0
    t_div, t_label = _time_axis(end_s)
    fig = Figure(figsize=(10, 2.1 * (len(shown) + 1) + 0.6), layout="constrained")
    axes = fig.subplots(len(shown) + 1, 1, sharex=True, squeeze=False)[:, 0]

    for ax, name in zip(axes, shown, strict=False):  # the last axes is the host panel
        rows = tl[tl["domain"] == name]
        t = rows["time_s"].to_numpy() / t_div
        cols = ["current_pages", "target_pages", "balloon_low", "balloon_high"]
        div, unit = _scale(float(rows[cols[:2]].to_numpy().max(initial=1)))
        lines = [
            ("current_pages", "current", "tab:blue", "-"),
            ("target_pages", "target", "black", "--"),
            ("balloon_low", "balloon_low", "tab:green", "-"),
        ]
        if rows["balloon_high"].any():
            lines.append(("balloon_high", "balloon_high", "tab:olive", "-"))
        for col, label, color, style in lines:
            ax.step(t, rows[col].to_numpy() / div, where="post", label=label, color=color, linestyle=style)
        work = rows[rows["cause"] == "work"]
        for state, (marker, color) in _MARKERS.items():
            hit = work[work["state"] == state]
            if len(hit):
                ax.plot(
                    hit["time_s"].to_numpy() / t_div,
                    hit["current_pages"].to_numpy() / div,
                    marker,
                    color=color,
                    label=state,
                    linestyle="none",
                )
        reached = _final_target_note(result, name)
        ax.set_title(f"{name}: {reached}", loc="left", fontsize=10)
        ax.set_ylabel(unit)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)

    host = result.host
    ax = axes[-1]
    div, unit = _scale(float(host["host_free"].max()) if len(host) else 1.0)
    ax.step(host["time_s"].to_numpy() / t_div, host["host_free"].to_numpy() / div, where="post", color="tab:gray")
    ax.set_title("host free memory", loc="left", fontsize=10)
    ax.set_ylabel(unit)
    ax.set_xlabel(t_label)
    ax.grid(alpha=0.3)
    if len(names) > len(shown):
        fig.suptitle(f"first {len(shown)} of {len(names)} domains", fontsize=9)
    return fig


def _final_target_note(result: Result, domain: str) -> str:
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
    return f"target not reached (ends {r['final_state']}, {_gap(r)})"


def _gap(r: pd.Series) -> str:
    gap = int(r["final_target_pages"]) - int(r["final_current_pages"])
    mib = abs(gap) * PAGE_SIZE / (1 << 20)
    return f"{mib:.0f} MiB short" if gap > 0 else f"{mib:.0f} MiB above it"
