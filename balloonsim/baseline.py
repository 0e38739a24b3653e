"""Baselines: the metrics of a set of scenarios, saved, and checked again after a change.

``save_baseline(DIR, scenarios)`` runs each scenario and writes
``DIR/<name>.baseline.json``: its path (relative to DIR), the scenario's
sha256, the seed, balloonsim's version and its metrics (``results.metrics``),
not its timelines.  ``check_baseline(DIR)`` runs them again, with the same
seeds, and lists every metric that moved beyond its tolerance, either way
(an intended change is saved again).  A scenario whose file changed since is
bad input: its metrics would not be comparable.

Default tolerances (``DEFAULT_TOLERANCES``): counts exact (OOM kills,
cancellations, EAGAIN passes); seconds within 5 %; pages within 1 %; MiB·s
within 5 %.  A time that never came (+inf) equals only another that never came.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from balloonsim import __version__
from balloonsim.engine import Simulation
from balloonsim.errors import ScenarioError, UsageError
from balloonsim.results.metrics import (
    COUNT,
    METRICS,
    MIB_S,
    PAGES,
    RATIO,
    SECONDS,
    format_value,
    metric_names,
    read_quantity,
    run_metrics,
)
from balloonsim.results.result import Result
from balloonsim.results.store import BASELINE_SUFFIX, save_folder
from balloonsim.scenario import Scenario, load_scenario


@dataclass(frozen=True)
class Tolerance:
    """How far a metric may move: ``relative`` (a share of the baseline's value) or ``absolute``."""

    relative: float = 0.0
    absolute: float = 0.0

    def allows(self, before: float, now: float) -> bool:
        if before == now or (
            math.isnan(before) and math.isnan(now)
        ):  # two times that never came; a guest that never ran
            return True
        if math.isinf(before) or math.isinf(now) or math.isnan(before) or math.isnan(now):
            return False
        return abs(now - before) <= max(self.absolute, self.relative * abs(before))

    def text(self, unit: str) -> str:
        if self.relative:
            return f"±{self.relative * 100:g}%"
        return "exact" if not self.absolute else f"±{format_value(unit, self.absolute)}"


DEFAULT_TOLERANCES = {
    COUNT: Tolerance(),
    SECONDS: Tolerance(relative=0.05),
    PAGES: Tolerance(relative=0.01),
    MIB_S: Tolerance(relative=0.05),
    RATIO: Tolerance(relative=0.01),
}


def parse_tolerance(text: str) -> tuple[str, Tolerance]:
    """``backoff_seconds=10%`` (relative), ``time_to_target=2s``, ``final_pages=64MiB``, ``oom_kills=1`` (absolute)."""
    metric, equals, amount = (part.strip() for part in text.partition("="))
    if not equals or metric not in METRICS:
        raise UsageError(f"--tolerance {text!r}: write METRIC=N% or METRIC=AMOUNT; metrics: {metric_names()}")
    try:
        if amount.endswith("%"):
            tolerance = Tolerance(relative=float(amount[:-1]) / 100)
        else:
            tolerance = Tolerance(absolute=read_quantity(amount, METRICS[metric].unit))
    except ValueError as err:
        raise UsageError(f"--tolerance {text!r}: {err}") from None
    if tolerance.relative < 0 or tolerance.absolute < 0 or math.isnan(tolerance.relative):
        raise UsageError(f"--tolerance {text!r}: a tolerance is not negative")
    return metric, tolerance


# -- saving ------------------------------------------------------------------------------


def save_baseline(
    directory: str | Path, scenarios: list[Path], seed: int | None = None, *, force: bool = False
) -> None:
    """Run each scenario (with ``seed``, default its own) and save its metrics into ``directory``."""
    directory = Path(directory)
    loaded = [(path, load_scenario(path)) for path in scenarios]
    _check_names(loaded)
    files: dict[str, dict[str, Any]] = {}
    for path, scenario in loaded:
        result = Simulation(scenario, seed).run(progress=False)
        metrics = {
            domain: {m: _json_number(v) for m, v in values.items()} for domain, values in _by_domain(result).items()
        }
        files[scenario.name + BASELINE_SUFFIX] = {
            "scenario": scenario.name,
            "path": Path(os.path.relpath(path.resolve(), directory.resolve())).as_posix(),
            "scenario_sha256": scenario.digest(),
            "seed": result.metadata["seed"],
            "balloonsim_version": __version__,
            "metrics": metrics,  # null: a time that never came
        }

    def write(tmp: Path) -> None:
        for name, content in files.items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")

    save_folder(directory, write, {"baseline": sorted(files)}, force=force)


def _json_number(value: float) -> float | int | None:
    """A metric in JSON: a whole number as an integer, a time that never came as null."""
    if math.isinf(value):
        return None
    return int(value) if value == int(value) else value


def _by_domain(result: Result) -> dict[str, dict[str, float]]:
    """A run's metrics as {domain: {metric: value}}."""
    values: dict[str, dict[str, float]] = {}
    for row in run_metrics(result).itertuples(index=False):
        values.setdefault(row.domain, {})[row.metric] = row.value
    return values


def _check_names(loaded: list[tuple[Path, Scenario]]) -> None:
    seen: dict[str, Path] = {}
    for path, scenario in loaded:
        if scenario.name in seen:
            raise ScenarioError(
                [f"{path}: named {scenario.name!r}, as {seen[scenario.name]} is; a baseline keeps one file per name"]
            )
        seen[scenario.name] = path


# -- checking ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Moved:
    """A metric beyond its tolerance."""

    scenario: str
    domain: str
    metric: str
    before: float
    now: float
    tolerance: Tolerance

    def line(self) -> str:
        unit = METRICS[self.metric].unit
        return (
            f"{self.scenario}: {self.domain}: {self.metric}: {format_value(unit, self.before)} -> "
            f"{format_value(unit, self.now)} (tolerance {self.tolerance.text(unit)})"
        )


@dataclass(frozen=True)
class Saved:
    """One scenario's saved baseline, its scenario loaded (and checked unchanged)."""

    file: Path
    scenario: Scenario
    seed: int
    version: str
    metrics: dict[str, dict[str, float]]


def load_baseline(directory: str | Path) -> list[Saved]:
    """Every scenario of a baseline, each file read and its scenario found unchanged; ScenarioError
    (bad input) otherwise, every problem found, one line each."""
    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(
            f"{directory}: no such folder; save a baseline first: balloonsim baseline save DIR SCENARIOS..."
        )
    files = sorted(directory.glob("*" + BASELINE_SUFFIX))
    if not files:
        raise UsageError(
            f"{directory}: not a baseline (no *{BASELINE_SUFFIX}); save one: balloonsim baseline save DIR SCENARIOS..."
        )
    saved, problems = [], []
    for file in files:
        try:
            saved.append(_read(file, directory))
        except ScenarioError as err:
            problems += err.problems
    if problems:
        raise ScenarioError(problems)
    return saved


def _read(file: Path, directory: Path) -> Saved:
    try:
        content = json.loads(file.read_text())
        path = directory / content["path"]
        metrics = {
            domain: {m: math.inf if v is None else float(v) for m, v in values.items()}
            for domain, values in content["metrics"].items()
        }
        sha, seed, version = content["scenario_sha256"], int(content["seed"]), str(content["balloonsim_version"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise ScenarioError([f"{file}: not a baseline file balloonsim wrote ({type(err).__name__}: {err})"]) from None
    unknown = sorted({m for values in metrics.values() for m in values if m not in METRICS})
    if unknown:
        raise ScenarioError(
            [f"{file}: metrics this balloonsim does not measure ({', '.join(unknown)}); save the baseline again"]
        )
    scenario = load_scenario(path)
    if scenario.digest() != sha:
        raise ScenarioError(
            [
                f"{file}: the scenario {path} changed since the baseline was saved (sha256 {sha[:12]} -> "
                f"{scenario.digest()[:12]}); its metrics are not comparable: save the baseline again "
                f"(balloonsim baseline save {directory} SCENARIOS...)"
            ]
        )
    return Saved(file, scenario, seed, version, metrics)


def check_baseline(
    saved: list[Saved], tolerances: dict[str, Tolerance] | None = None
) -> list[tuple[Saved, list[Moved]]]:
    """Run each saved scenario again with its seed; per scenario, the metrics that moved."""
    tolerances = tolerances or {}
    report = []
    for entry in saved:
        now = _by_domain(Simulation(entry.scenario, entry.seed).run(progress=False))
        moved = []
        for domain in [*entry.metrics, *(d for d in now if d not in entry.metrics)]:
            before_values, now_values = entry.metrics.get(domain, {}), now.get(domain, {})
            for metric in [*before_values, *(m for m in now_values if m not in before_values)]:
                tolerance = tolerances.get(metric, DEFAULT_TOLERANCES[METRICS[metric].unit])
                before, value = before_values.get(metric, math.nan), now_values.get(metric, math.nan)
                if not tolerance.allows(before, value):
                    moved.append(Moved(entry.scenario.name, domain, metric, before, value, tolerance))
        report.append((entry, moved))
    return report
