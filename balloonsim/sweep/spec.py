"""A sweep's spec (``SPEC.yaml``): the base scenario, the settings swept, the seeds, the figures.

Read like a scenario (``scenario/yamldoc``, pydantic, ``scenario/messages``): every problem at
once, one ``file:line: path: message`` line each.  A spec given as a dict (the Python API) gets
``path: message`` lines.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from ruamel.yaml.comments import CommentedMap

from balloonsim import units
from balloonsim.errors import Loc, ScenarioError, dotted
from balloonsim.scenario.base import NAME_PATTERN, Model, the_one_set
from balloonsim.scenario.loader import line_of, plain
from balloonsim.scenario.messages import issues_of
from balloonsim.scenario.model import slug
from balloonsim.scenario.yamldoc import MAX_BYTES, load_yaml
from balloonsim.textfile import TextError, read_text

#: settings that are not scenario paths but change the scenario as a whole (``derived``)
GUESTS, OVERCOMMIT = "guests", "overcommit"
DERIVED = (GUESTS, OVERCOMMIT)
#: the table's own columns (table.py), which no setting may be named
TABLE_COLUMNS = ("point", "seed_index", "seed", "domain", "failed", "error")
RESERVED = {"seed": "the runs' seeds come from the spec's own seed: and seeds: (a SeedSequence), not a setting"}
MAX_SEEDS = 100_000


def quantity(value: Any) -> tuple[str, int] | None:
    """``("size", bytes)`` or ``("time", ns)`` for a value written with a unit (``512MiB``, ``30s``), else None."""
    if not isinstance(value, str):
        return None
    for kind, parse in (("size", units.parse_bytes), ("time", units.parse_time_ns)):
        try:
            return kind, parse(value)
        except ValueError:
            continue
    return None


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Distribution(Model):
    """How a random setting is drawn: ``uniform: [lo, hi]`` (integers: each integer from lo to hi;
    sizes and times: whole pages and nanoseconds), ``loguniform: [lo, hi]`` (lo > 0), or
    ``choice: [a, b, ...]`` (each equally likely)."""

    uniform: list[Any] | None = Field(None, min_length=2, max_length=2)
    loguniform: list[Any] | None = Field(None, min_length=2, max_length=2)
    choice: list[Any] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _one_range(self) -> Distribution:
        kind = the_one_set(self, ("uniform", "loguniform", "choice"), "a random setting", "distribution")
        if kind == "choice":
            return self
        lo, hi = getattr(self, kind)
        kinds = {_range_kind(lo), _range_kind(hi)}
        if None in kinds or len(kinds) > 1:
            raise ValueError(
                f"{kind}: [lo, hi] are two numbers, two sizes (512MiB) or two times (30s), not {lo!r}, {hi!r}"
            )
        low, high = range_bounds(lo, hi)
        if not low < high:
            raise ValueError(f"{kind}: lo must be below hi ({lo!r}, {hi!r})")
        if kind == "loguniform" and low <= 0:
            raise ValueError(f"loguniform: lo must be above 0 ({lo!r})")
        return self

    @property
    def kind(self) -> str:
        return next(k for k in ("uniform", "loguniform", "choice") if getattr(self, k) is not None)


def _range_kind(value: Any) -> str | None:
    if is_number(value):
        return "number"
    found = quantity(value)
    return found[0] if found else None


def range_bounds(lo: Any, hi: Any) -> tuple[float, float]:
    """The bounds as numbers: sizes in pages, times in nanoseconds."""

    def value(v: Any) -> float:
        found = quantity(v)
        if found is None:
            return v
        kind, amount = found
        return amount / units.PAGE_SIZE if kind == "size" else amount

    return value(lo), value(hi)


class RandomSamples(Model):
    """``samples`` points, each setting drawn from its distribution (a Generator seeded by the spec's ``seed``)."""

    samples: int = Field(ge=1, le=1_000_000)
    settings: dict[str, Distribution] = Field(min_length=1)


class Figures(Model):
    """What the figures show: ``metric`` (a column of the table: a guest metric or a ``host_`` one),
    against ``x`` with one line per value of ``by`` (both swept settings); a guest metric is
    taken over a run's guests by ``guests``."""

    metric: str | None = Field(
        None, description="default: host_start_success_rate when the runs start VMs, else unmet_demand_mib_s"
    )
    x: str | None = Field(None, description="default: the first setting swept")
    by: str | None = Field(None, description="default: the second setting swept, if any")
    guests: Literal["mean", "sum", "min", "max"] = "mean"


class SweepSpec(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    scenario: str = Field(description="the base scenario, a path relative to the spec file")
    seeds: int = Field(1, ge=1, le=MAX_SEEDS, description="runs per point, each with its own seed")
    seed: int = Field(0, ge=0, le=units.INT64_MAX, description="the entropy of the seeds and random draws")
    grid: dict[str, list[Any]] = Field({}, description="dotted setting -> values: every combination")
    random: RandomSamples | None = None
    scale_host: bool = Field(False, description="guests: N scales host.total (and host.free) by N / the base's guests")
    figures: Figures = Field(default_factory=Figures)

    @property
    def settings(self) -> list[str]:
        """The settings swept, grid first, in the spec's order."""
        return [*self.grid, *(self.random.settings if self.random else [])]


def spec_problems(spec: SweepSpec) -> list[tuple[Loc, str]]:
    """The rules across fields: each setting swept once, with values; derived settings' values; figures' axes."""
    problems: list[tuple[Loc, str]] = []
    drawn = spec.random.settings if spec.random else {}
    for name, values in spec.grid.items():
        if not values:
            problems.append((("grid", name), "give at least one value"))
        if name in drawn:
            problems.append((("grid", name), "swept in grid and drawn at random too; choose one"))
    for loc, name in [(("grid", n), n) for n in spec.grid] + [(("random", "settings", n), n) for n in drawn]:
        if name in TABLE_COLUMNS:
            why = RESERVED.get(name, f"{name!r} names a column of the sweep's table; choose another setting")
            problems.append((loc, why))
    for name in DERIVED:
        for i, value in enumerate(spec.grid.get(name, [])):
            problems += [(("grid", name, i), m) for m in _derived_problem(name, value)]
        if name in drawn:
            d = drawn[name]
            values = d.choice or d.uniform or d.loguniform or []
            problems += [
                (("random", "settings", name, d.kind, i), m)
                for i, v in enumerate(values)
                for m in _derived_problem(name, v)
            ]
    swept = spec.settings
    for axis in ("x", "by"):
        chosen = getattr(spec.figures, axis)
        if chosen is not None and chosen not in swept:
            problems.append(
                (("figures", axis), f"{chosen!r} is not swept; settings swept: {', '.join(swept) or 'none'}")
            )
    return problems


def _derived_problem(name: str, value: Any) -> list[str]:
    if name == GUESTS and not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return [f"a number of guests is a whole number of at least 1, not {value!r}"]
    if name == OVERCOMMIT and not (is_number(value) and value > 0):
        return [f"an overcommit ratio (Σ static-max / host total) is a number above 0, not {value!r}"]
    return []


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec, where it came from (``label``: the file or ``<spec>``) and its folder
    (``base_dir``: where the scenario path starts), and the document for line numbers."""

    spec: SweepSpec
    label: str
    base_dir: Path
    doc: Any = None

    def where(self, loc: Loc) -> str:
        """``file:line: path`` of a place in the spec (``path`` alone for a dict)."""
        if isinstance(self.doc, CommentedMap):
            return f"{self.label}:{line_of(self.doc, loc)}: {dotted(loc)}"
        return dotted(loc)

    def setting_loc(self, setting: str) -> Loc:
        return ("grid", setting) if setting in self.spec.grid else ("random", "settings", setting)

    @property
    def scenario_path(self) -> Path:
        return self.base_dir / self.spec.scenario


def is_sweep_spec(path: str | Path) -> bool:
    """The file is a YAML mapping with a ``scenario`` key and no ``domains``: a sweep's spec, not a
    scenario (a file that cannot be read is for the scenario loader to report)."""
    try:
        doc = load_yaml(read_text(Path(path), MAX_BYTES), str(path))
    except (TextError, ScenarioError):
        return False
    return isinstance(doc, CommentedMap) and "scenario" in doc and "domains" not in doc


def load_spec(source: str | Path | dict[str, Any], base_dir: Path | None = None) -> LoadedSpec:
    """A spec from a file (``scenario`` relative to it) or a dict (relative to ``base_dir``, else the
    current directory); ScenarioError listing every problem."""
    if isinstance(source, dict):
        data = {"name": "sweep", **source}
        return LoadedSpec(
            _validated(data, data, lambda issues: [f"{dotted(loc)}: {m}" for loc, m in issues]),
            "<spec>",
            base_dir or Path.cwd(),
        )
    path = Path(source)
    try:
        text = read_text(path, MAX_BYTES)
    except TextError as err:
        raise ScenarioError([str(err)]) from None
    label = str(path)
    doc = load_yaml(text, label)
    if not isinstance(doc, CommentedMap):
        raise ScenarioError([f"{label}:1: a sweep spec is a YAML mapping (name, scenario, seeds, grid, random)"])
    data = {"name": slug(path.stem), **{str(k): plain(v) for k, v in doc.items()}}

    def located(issues: list[tuple[Loc, str]]) -> list[str]:
        lines = sorted((line_of(doc, loc), dotted(loc), m) for loc, m in issues)
        return list(dict.fromkeys(f"{label}:{line}: {where}: {m}" for line, where, m in lines))

    return LoadedSpec(_validated(data, data, located), label, path.parent, doc)


def _validated(data: dict[str, Any], raw: Any, lines: Any) -> SweepSpec:
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as err:
        raise ScenarioError(lines(issues_of(err, raw, SweepSpec))) from None
    if problems := spec_problems(spec):
        raise ScenarioError(lines(problems))
    return spec
