"""A spec's points (each a setting -> value mapping, with an id) and its runs' seeds.

Points: the grid's cartesian product (its first setting outermost, in the spec's order), each
combined with every random sample (drawn once, so every grid point sees the same samples).
Seeds: run ``j`` of every point gets ``SeedSequence(seed).spawn(seeds)[j]``, so the j-th runs of
all points share their workloads' random numbers (common random numbers: settings are compared
on the same workloads), and a run's seed depends on nothing but the spec: not on the order runs
are done in, nor on which are already done.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from balloonsim import units
from balloonsim.sweep.spec import Distribution, SweepSpec, quantity, range_bounds


@dataclass(frozen=True)
class Point:
    id: str
    settings: dict[str, Any]  # as the scenario takes them (a drawn size as "N pages", a drawn time as "N ns")


def run_seeds(entropy: int, count: int) -> list[int]:
    """Each seed index's run seed: 63 bits of ``SeedSequence(entropy).spawn(count)[j]`` (a seed is an int64)."""
    return [
        int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))
        for child in np.random.SeedSequence(entropy).spawn(count)
    ]


def expand(spec: SweepSpec) -> list[Point]:
    """Every point of the spec, ids ``p000``, ``p001``, ... in order (wider when there are more)."""
    combos = [dict(zip(spec.grid, values, strict=True)) for values in itertools.product(*spec.grid.values())]
    samples = draw_samples(spec)
    settings = [{**combo, **sample} for combo in combos for sample in samples]
    width = max(3, len(str(len(settings) - 1)))
    return [Point(f"p{i:0{width}d}", s) for i, s in enumerate(settings)]


def draw_samples(spec: SweepSpec) -> list[dict[str, Any]]:
    """The random samples (one empty sample without ``random``): a Generator on the spec's root
    SeedSequence (its runs' seeds are the root's children, a stream apart), each setting drawn
    ``samples`` times in the spec's order."""
    if spec.random is None:
        return [{}]
    rng = np.random.default_rng(np.random.SeedSequence(spec.seed))
    columns = {name: draw(d, rng, spec.random.samples) for name, d in spec.random.settings.items()}
    return [{name: values[i] for name, values in columns.items()} for i in range(spec.random.samples)]


def draw(d: Distribution, rng: np.random.Generator, n: int) -> list[Any]:
    """``n`` values of a distribution, as the scenario takes them."""
    if d.choice is not None:
        return [d.choice[i] for i in rng.integers(len(d.choice), size=n)]
    lo, hi = d.uniform or d.loguniform
    low, high = range_bounds(lo, hi)
    found = quantity(lo)
    integers = found is None and isinstance(lo, int) and isinstance(hi, int)
    if d.uniform is not None and integers:
        values = rng.integers(int(low), int(high), size=n, endpoint=True)  # each integer equally likely
    elif d.uniform is not None:
        values = rng.uniform(low, high, size=n)
    else:
        values = np.exp(rng.uniform(math.log(low), math.log(high), size=n))
    whole = integers or found is not None  # whole numbers, pages or nanoseconds
    if whole:
        values = np.clip(np.rint(values), low, high)
    if found is None:
        return [int(v) if whole else float(v) for v in values]
    if found[0] == "size":
        return [f"{int(v)} pages" for v in values]
    return [units.format_ns(int(v)) for v in values]
