"""What the guest's programs demand over time.

Each workload kind becomes an iterator of ``(time_ns, anon_pages,
cache_pages)``: the task's demand from that time on, in time order.  Kinds
that never end (periodic, bursts, a looping replay) are read lazily; the run
stops reading at its end.  Random choices come only from the Generator
passed in (one per workload, see ``workload_rng``).
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Callable, Iterator

import numpy as np
import simpy

from balloonsim.scenario.workloads import Bursts, Constant, Periodic, Ramp, Replay, Step, Workload
from balloonsim.sim import EVENT, Process, Timer

Demand = tuple[int, int, int]  # (time_ns, anon pages, cache pages)


def workload_rng(seed: int, domain_index: int, workload_index: int) -> np.random.Generator:
    """The workload's own random stream: the run's seed, spawned by position (pydesrap's scheme)."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(domain_index, workload_index)))


def demand_points(workload: Workload, rng: np.random.Generator) -> Iterator[Demand]:
    spec = workload.spec
    if isinstance(spec, Constant):
        return iter([(0, spec.anon, spec.cache)])
    if isinstance(spec, list):
        return _steps(spec)
    if isinstance(spec, Ramp):
        return _ramp(spec)
    if isinstance(spec, Periodic):
        return _square(spec) if spec.shape == "square" else _sine(spec)
    if isinstance(spec, Bursts):
        return _bursts(spec, rng)
    assert isinstance(spec, Replay)
    return _replay(spec)


def _steps(steps: list[Step]) -> Iterator[Demand]:
    anon = cache = 0
    for step in steps:
        anon = anon if step.anon is None else step.anon
        cache = cache if step.cache is None else step.cache
        yield step.at, anon, cache


def _between(span: tuple[int, int], num: int, den: int) -> int:
    """The point num/den of the way along span, in whole pages."""
    start, end = span
    return start + (end - start) * num // den


def _ramp(spec: Ramp) -> Iterator[Demand]:
    if spec.start:
        yield 0, spec.anon[0], spec.cache[0]
    for k in itertools.count():
        into = min(k * spec.step, spec.duration)
        yield spec.start + into, _between(spec.anon, into, spec.duration), _between(spec.cache, into, spec.duration)
        if into == spec.duration:
            return


def _square(spec: Periodic) -> Iterator[Demand]:
    high_ns = max(1, min(spec.period - 1, round(spec.period * spec.duty)))
    if spec.start:
        yield 0, spec.anon[0], spec.cache[0]
    for i in itertools.count():
        begin = spec.start + i * spec.period
        yield begin, spec.anon[1], spec.cache[1]
        yield begin + high_ns, spec.anon[0], spec.cache[0]


def _sine(spec: Periodic) -> Iterator[Demand]:
    """From the low level up to the high one at half a period and back: (1 - cos) / 2."""
    step = spec.step or max(1, spec.period // 16)
    scale = 1 << 20
    if spec.start:
        yield 0, spec.anon[0], spec.cache[0]
    for k in itertools.count():
        t = k * step
        f = round((1 - math.cos(2 * math.pi * (t % spec.period) / spec.period)) / 2 * scale)
        yield spec.start + t, _between(spec.anon, f, scale), _between(spec.cache, f, scale)


def _bursts(spec: Bursts, rng: np.random.Generator) -> Iterator[Demand]:
    """Bursts start with exponential gaps; each has a uniform size and an exponential length."""

    def gap(mean: int) -> int:
        return max(1, round(rng.exponential(mean)))

    anon = cache = 0
    ends: list[tuple[int, int, int, int]] = []  # (end time, sequence, anon, cache) of running bursts
    start = spec.start + gap(spec.every)
    for seq in itertools.count():
        while ends and ends[0][0] <= start:
            end, _, a, c = heapq.heappop(ends)
            anon, cache = anon - a, cache - c
            yield end, anon, cache
        a = int(rng.integers(spec.anon[0], spec.anon[1], endpoint=True))
        c = int(rng.integers(spec.cache[0], spec.cache[1], endpoint=True))
        heapq.heappush(ends, (start + gap(spec.length), seq, a, c))
        anon, cache = anon + a, cache + c
        yield start, anon, cache
        start += gap(spec.every)


def _replay(spec: Replay) -> Iterator[Demand]:
    trace = spec.trace
    period = spec.loop_period
    for lap in itertools.count():
        for t, anon, cache in zip(trace.time_ns, trace.anon, trace.cache, strict=True):
            yield lap * period + t, int(anon * spec.scale), int(cache * spec.scale)
        if not spec.loop:
            return


def drive(
    env: simpy.Environment, points: Iterator[Demand], until: int, apply: Callable[[int, int], None], offset: int = 0
) -> Process:
    """A SimPy process: apply each demand at its time plus ``offset`` (the last of those at one
    instant), up to ``until``."""
    point = next(points, None)
    while point is not None:
        t, anon, cache = point
        point = next(points, None)
        while point is not None and point[0] == t:  # a later demand of the same instant wins
            _, anon, cache = point
            point = next(points, None)
        t += offset
        if t > until:
            return
        if t > env.now:
            yield Timer(env, t - env.now, EVENT)
        apply(anon, cache)
