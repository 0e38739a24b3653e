"""The workload schema: what a guest's programs demand over time, one kind per workload.

Each workload is one task in the guest (one OOM-killer candidate) demanding
anonymous memory and page cache.  A domain may list several; their demands
add up.  Sizes are memory sizes ("512MiB"), times durations from the start
of the run.
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from balloonsim import units
from balloonsim.scenario.base import NAME_PATTERN, Model, the_one_set
from balloonsim.scenario.types import Nanoseconds, Pages
from balloonsim.traces import Trace, TraceError, read_trace


def _two_sizes(value: Any) -> Any:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ValueError("give two sizes, [from, to] or [low, high], e.g. [0, 1GiB]")
    return value


#: [from, to] or [low, high]
Span = Annotated[tuple[Pages, Pages], BeforeValidator(_two_sizes)]


class Constant(Model):
    """The same demand from the start."""

    anon: Pages = 0
    cache: Pages = 0

    def changes_until(self, end: int) -> int:
        """How many times the demand changes by ``end`` (ns): the timeline rows it causes."""
        return 1


class Step(Model):
    """The demand from ``at`` on; a size left out keeps its previous value."""

    at: Nanoseconds
    anon: Pages | None = None
    cache: Pages | None = None


class Ramp(Model):
    """A linear change from one demand to another, in steps; before it the first, after it the second."""

    start: Nanoseconds = 0
    duration: Nanoseconds = Field(gt=0)
    anon: Span = (0, 0)
    cache: Span = (0, 0)
    step: Nanoseconds = Field("1s", gt=0, description="how often the demand changes during the ramp")

    def changes_until(self, end: int) -> int:
        return 1 + max(0, min(self.duration, end - self.start)) // self.step + 1


class Periodic(Model):
    """A demand swinging between two levels, as a square wave (``duty`` of the period high) or a sine."""

    period: Nanoseconds = Field(gt=0)
    anon: Span = (0, 0)
    cache: Span = (0, 0)
    shape: Literal["square", "sine"] = "square"
    duty: float = Field(0.5, gt=0, lt=1, description="square: the fraction of each period at the high level")
    step: Nanoseconds | None = Field(None, gt=0, description="sine: sampling interval; default period/16")
    start: Nanoseconds = 0

    def changes_until(self, end: int) -> int:
        span = max(0, end - self.start)
        if self.shape == "square":
            return 1 + 2 * (span // self.period + 1)
        return 1 + span // (self.step or max(1, self.period // 16)) + 1


class Bursts(Model):
    """Random bursts: arrivals with exponential gaps, uniform sizes, exponential lengths; overlaps add up.

    Every random choice comes from this workload's own numpy Generator,
    spawned from the run's seed, so a different seed changes random
    workloads only.
    """

    every: Nanoseconds = Field(gt=0, description="mean time between burst starts")
    length: Nanoseconds = Field(gt=0, description="mean burst length")
    anon: Span = (0, 0)
    cache: Span = (0, 0)
    start: Nanoseconds = 0

    def changes_until(self, end: int) -> int:
        """Expected: a start and an end per burst."""
        return 2 * (max(0, end - self.start) // self.every + 1)

    @model_validator(mode="after")
    def _ranges(self) -> Bursts:
        for name in ("anon", "cache"):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: the smallest burst comes first, [min, max]")
        return self


class Replay(Model):
    """A recorded trace (CSV): a time column in seconds and size columns, held between samples.

    A relative ``file`` is found next to the scenario file (and stored as an
    absolute path, so a changed copy of the scenario finds it too).
    """

    file: str
    time: str = Field("time_s", description="column of times in seconds")
    anon: str | None = Field("anon_kb", description="column of anonymous memory (/proc/meminfo AnonPages)")
    cache: str | None = Field("cache_kb", description="column of page cache (/proc/meminfo Cached)")
    unit: Literal["KiB", "bytes", "pages"] = "KiB"
    scale: float = Field(1.0, ge=0, allow_inf_nan=False, description="multiply every size")
    loop: bool = Field(False, description="start over one sample interval after the last sample")
    _trace: Trace | None = PrivateAttr(None)

    @field_validator("file")
    @classmethod
    def _resolve(cls, file: str, info: ValidationInfo) -> str:
        base = Path((info.context or {}).get("base_dir", "."))
        return str((base / file).resolve())

    @model_validator(mode="after")
    def _read(self) -> Replay:
        try:
            self._trace = read_trace(Path(self.file), time=self.time, anon=self.anon, cache=self.cache, unit=self.unit)
        except TraceError as err:
            raise ValueError(" / ".join(err.problems)) from None
        largest = max(max(self._trace.anon), max(self._trace.cache))
        if largest * self.scale > units.MAX_PAGES:
            raise ValueError(f"scale {self.scale:g} makes the largest sample too large: {units.SIZE_LIMIT}")
        return self

    @property
    def loop_period(self) -> int:
        """Time from the first sample to the same sample's next lap: the last time plus the last interval."""
        times = self.trace.time_ns
        return times[-1] + (times[-1] - times[-2] if len(times) > 1 else units.NS_PER_S)

    def changes_until(self, end: int) -> int:
        if not self.loop:
            return bisect.bisect_right(self.trace.time_ns, end)
        return (end // self.loop_period + 1) * len(self.trace.time_ns)

    @property
    def trace(self) -> Trace:
        assert self._trace is not None
        return self._trace


KINDS = ("constant", "steps", "ramp", "periodic", "bursts", "replay")


class Workload(Model):
    """One task and its demand: a name and exactly one of the kinds."""

    name: str = Field(pattern=NAME_PATTERN)
    oom_score_adj: int = Field(
        0, ge=-1000, le=1000, description="the OOM killer's bias: 1000 makes it the first victim, -1000 never"
    )
    restart_after: Nanoseconds | None = Field(
        None, description="after an OOM kill, the task starts again after this long; default: never"
    )
    constant: Constant | None = None
    steps: list[Step] | None = None
    ramp: Ramp | None = None
    periodic: Periodic | None = None
    bursts: Bursts | None = None
    replay: Replay | None = None

    @model_validator(mode="after")
    def _one_kind(self) -> Workload:
        the_one_set(self, KINDS, "a workload", "kind")
        return self

    @field_validator("steps")
    @classmethod
    def _steps_in_order(cls, steps: list[Step] | None) -> list[Step] | None:
        for before, after in zip(steps or [], (steps or [])[1:], strict=False):
            if after.at < before.at:
                raise ValueError("list steps in time order")
        return steps

    @property
    def kind(self) -> str:
        return the_one_set(self, KINDS, "a workload", "kind")

    def changes_until(self, end: int) -> int:
        """How many times this task's demand changes by ``end`` (ns): the timeline rows it causes;
        with ``restart_after``, as many again as it could be killed and started again."""
        restarts = end // self.restart_after if self.restart_after else 0
        if self.steps is not None:
            return len(self.steps) + restarts
        return self.spec.changes_until(end) + restarts

    @property
    def spec(self) -> Any:
        return getattr(self, self.kind)
