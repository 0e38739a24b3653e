"""A/B runs of one scenario: two settings (or two scenario files), the same seed, what changed.

>>> c = balloonsim.compare(scenario, a={"balloon.max_retry_count": 4}, b={"balloon.max_retry_count": 1})
>>> c.table          # domain, metric, unit, a, b, change (= b - a); the host's rows under "(host)"
>>> c.changed        # only the rows that differ
>>> c.figure()       # both runs' timelines on one figure

The metrics are ``results.metrics``' (time to target, final pages, back-off
seconds, cancellations, OOM kills, unmet demand, host free memory...).
``save_comparison`` writes the table (Parquet and CSV), the figure and a
run.json with both runs' identity, as the store saves a result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from balloonsim.engine import Simulation
from balloonsim.errors import ScenarioError
from balloonsim.results.metrics import METRICS, format_value, run_metrics
from balloonsim.results.result import HOST, Result
from balloonsim.results.store import save_folder
from balloonsim.scenario import Scenario, load_scenario
from balloonsim.scenario.overrides import with_settings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

TABLE = "comparison"
FIGURE = "compare.png"


@dataclass
class Comparison:
    """Two runs of a scenario and their metrics side by side.

    ``table``: one row per (domain, metric), columns ``domain``, ``metric``, ``unit``,
    ``a``, ``b``, ``change`` (b - a; 0 where equal, also for two times that never came).
    """

    a: Result
    b: Result
    labels: tuple[str, str]
    table: pd.DataFrame

    @property
    def changed(self) -> pd.DataFrame:
        return self.table[self.table["change"] != 0]

    @property
    def wide(self) -> pd.DataFrame:
        """Index domain; columns (a|b|change, metric): what ``--fail-if`` conditions read."""
        wide = self.table.pivot(index="domain", columns="metric", values=["a", "b", "change"])
        return wide.reindex([*dict.fromkeys(self.table["domain"])])

    def figure(self) -> Figure:
        from balloonsim.plots import runs_figure

        changed_first = [*dict.fromkeys([*self.changed["domain"], *self.table["domain"]])]
        domains = [d for d in changed_first if d != HOST]
        return runs_figure({"A": self.a, "B": self.b}, domains)


def compare(
    scenario: Scenario | str | Path,
    a: dict[str, Any] | None = None,
    b: dict[str, Any] | None = None,
    seed: int | None = None,
    *,
    progress: bool | None = False,
) -> Comparison:
    """Run ``scenario`` with settings ``a`` and with ``b`` (dotted keys; a domain field's key, such as
    ``balloon.driver``, in every domain), both with ``seed`` (default: the scenario's)."""
    if not isinstance(scenario, Scenario):
        scenario = load_scenario(scenario)
    a, b = a or {}, b or {}
    return compare_scenarios(
        with_settings(scenario, a, "a"),
        with_settings(scenario, b, "b"),
        seed,
        labels=(settings_label(a), settings_label(b)),
        progress=progress,
    )


def settings_label(settings: dict[str, Any], file: Path | None = None) -> str:
    """How a run is named: its scenario file (when two are compared) and its settings."""
    words = [str(file)] if file is not None else []
    words += [f"{k}={v}" for k, v in settings.items()]
    return " ".join(words) or "the scenario as written"


def compare_scenarios(
    a: Scenario, b: Scenario, seed: int | None = None, *, labels: tuple[str, str], progress: bool | None = False
) -> Comparison:
    """Run two scenarios with the same domains, both with ``seed`` (default: A's seed)."""
    check_same_domains(a, b, labels)
    seed = a.seed if seed is None else seed
    run_a = Simulation(a, seed).run(progress=progress)
    run_b = Simulation(b, seed).run(progress=progress)
    return Comparison(run_a, run_b, labels, metrics_table(run_a, run_b))


def check_same_domains(a: Scenario, b: Scenario, labels: tuple[str, str]) -> None:
    names_a, names_b = [d.name for d in a.domains], [d.name for d in b.domains]
    if names_a != names_b:
        only_a = [n for n in names_a if n not in names_b]
        only_b = [n for n in names_b if n not in names_a]
        differ = "; ".join(
            part
            for part in (
                f"only in A: {', '.join(only_a)}" if only_a else "",
                f"only in B: {', '.join(only_b)}" if only_b else "",
                "the same names in another order" if not only_a and not only_b else "",
            )
            if part
        )
        raise ScenarioError([f"{labels[1]}: its domains differ from {labels[0]}'s ({differ}); compare needs the same"])


def metrics_table(a: Result, b: Result) -> pd.DataFrame:
    """Both runs' metrics, one row per (domain, metric), in A's order."""
    of_a = run_metrics(a).set_index(["domain", "metric"])["value"]
    of_b = run_metrics(b).set_index(["domain", "metric"])["value"]
    keys = of_a.index.append(of_b.index.difference(of_a.index, sort=False))  # A's order, then B's own
    va, vb = of_a.reindex(keys).to_numpy(), of_b.reindex(keys).to_numpy()
    with np.errstate(invalid="ignore"):
        change = np.where((va == vb) | (np.isnan(va) & np.isnan(vb)), 0.0, vb - va)  # NaN: a guest that never ran
    return pd.DataFrame(
        {
            "domain": keys.get_level_values("domain"),
            "metric": keys.get_level_values("metric"),
            "unit": [METRICS[m].unit for m in keys.get_level_values("metric")],
            "a": va,
            "b": vb,
            "change": change,
        }
    )


def render(comparison: Comparison, *, show_all: bool = False) -> str:
    """The comparison for people: a header naming both runs, then the rows that changed (``show_all``: every row)."""
    meta = comparison.a.metadata
    lines = [
        f"{meta.get('scenario')}: {meta.get('domains')} domain(s), seed {meta.get('seed')}",
        f"  A: {comparison.labels[0]}",
        f"  B: {comparison.labels[1]}",
        "",
    ]
    rows = comparison.table if show_all else comparison.changed
    if len(rows):
        lines += _columns(rows)
    total, changed = len(comparison.table), len(comparison.changed)
    if show_all:
        lines.append(f"\n{changed} of {total} metrics changed")
    elif changed:
        lines.append(f"\n{changed} of {total} metrics changed (--all shows every one)")
    else:
        lines.append(f"no metric changed ({total} compared; --all shows them)")
    return "\n".join(lines)


def _columns(rows: pd.DataFrame) -> list[str]:
    cells = [["domain", "metric", "A", "B", "change"]]
    previous = None
    for r in rows.itertuples(index=False):
        cells.append(
            [
                r.domain if r.domain != previous else "",
                r.metric,
                format_value(r.unit, r.a),
                format_value(r.unit, r.b),
                format_value(r.unit, r.change, signed=True),
            ]
        )
        previous = r.domain
    widths = [max(len(row[i]) for row in cells) for i in range(5)]
    return [
        "  ".join(
            text.ljust(w) if i < 2 else text.rjust(w) for i, (text, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in cells
    ]


def save_comparison(
    comparison: Comparison, directory: str | Path, *, plot: bool = True, force: bool = False
) -> list[str]:
    """Write the table (Parquet, CSV), the figure and run.json into ``directory`` (the store's rules);
    the file names written."""
    written: list[str] = []

    def write(tmp: Path) -> None:
        comparison.table.to_parquet(tmp / f"{TABLE}.parquet", index=False)
        comparison.table.to_csv(tmp / f"{TABLE}.csv", index=False)
        written.extend([f"{TABLE}.parquet", f"{TABLE}.csv"])
        if plot:
            comparison.figure().savefig(tmp / FIGURE, dpi=110)
            written.append(FIGURE)

    run = {
        "comparison": {"a": comparison.labels[0], "b": comparison.labels[1]},
        "a": _identity(comparison.a),
        "b": _identity(comparison.b),
    }
    save_folder(directory, write, run, force=force)
    return written


def _identity(result: Result) -> dict[str, Any]:
    keep = ("scenario", "scenario_sha256", "seed", "balloonsim_version", "settings")
    return {k: result.metadata.get(k) for k in keep}
