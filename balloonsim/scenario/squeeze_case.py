"""The schema of a squeeze_test case: squeezed's own test, run by ``managers.squeeze_test``.

A case file has one top-level key, ``squeeze_test:``, and holds what
upstream's ``scenario`` record holds (xen-api ``ocaml/squeezed/test/squeeze_test.ml``):
the domains in update order, each with its simulated driver and its numbers in
KiB, the host's free memory, the memory to free, the fistpoints, and the
outcome the case expects.  Problems are reported as for a scenario, one
``file:line: path: message`` each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from ruamel.yaml.comments import CommentedMap

from balloonsim.errors import ScenarioError
from balloonsim.kernel.fault_rules import FaultRule, HiddenCeiling, HiddenFloor, Ideal, IntermittentlyStuck, Stuck
from balloonsim.managers.squeeze import Domain, Fistpoint
from balloonsim.scenario.base import NAME_PATTERN, Model
from balloonsim.scenario.loader import in_line_order, plain
from balloonsim.scenario.messages import issues_of
from balloonsim.scenario.model import slug
from balloonsim.scenario.types import KiB, KiBPerSecond, Nanoseconds
from balloonsim.scenario.yamldoc import MAX_BYTES, load_yaml
from balloonsim.textfile import TextError, read_text
from balloonsim.units import NS_PER_S

#: the document's top-level key
KEY = "squeeze_test"

#: each simulated driver (squeeze_test.ml's classes) and the parameters it takes
DRIVERS: dict[str, tuple[str, ...]] = {
    "idealised_vm": ("rate",),
    "idealised_vm_with_limit": ("rate", "floor"),
    "idealised_vm_with_upper_limit": ("rate", "ceiling"),
    "stuck_vm": (),
    "intermittently_stuck_vm": ("rate", "interval"),
}
DRIVER_PARAMETERS = ("rate", "floor", "ceiling", "interval")
Driver = Literal[
    "idealised_vm",
    "idealised_vm_with_limit",
    "idealised_vm_with_upper_limit",
    "stuck_vm",
    "intermittently_stuck_vm",
]

#: how a case ends: squeezed's failures, our loop's guard, the harness's own failures
Outcome = Literal[
    "success",
    "cannot_free_this_much_memory",
    "domains_refused_to_cooperate",
    "iteration_limit",
    "target_set_above_max_mem",
    "mem_max_set_below_target",
    "attempted_to_allocate_more_than_host_free_mem",
    "memory_not_guaranteed_free",
]


class SqueezeTestDomain(Model):
    """One simulated VM: its squeezed record (KiB) and its driver."""

    domid: int = Field(ge=0, description="domain 0 alone to blame reads as 'cannot free' (CA-75568)")
    driver: Literal[
        "idealised_vm",
        "idealised_vm_with_limit",
        "idealised_vm_with_upper_limit",
        "stuck_vm",
        "intermittently_stuck_vm",
    ]
    can_balloon: bool = True
    dynamic_min: KiB
    target: KiB
    dynamic_max: KiB
    actual: KiB = Field(description="memory_actual: what the guest holds")
    maxmem: KiB
    inaccuracy: KiB = Field(description="the driver stops this far short of its target")
    rate: KiBPerSecond | None = Field(None, description="how fast the driver moves (every driver but stuck_vm)")
    floor: KiB | None = Field(None, description="idealised_vm_with_limit: the hidden floor it cannot go under")
    ceiling: KiB | None = Field(None, description="idealised_vm_with_upper_limit: the hidden ceiling")
    interval: Nanoseconds | None = Field(
        None, gt=0, description="intermittently_stuck_vm: it moves this long, then stalls this long, from t=0"
    )

    @model_validator(mode="after")
    def _parameters_of_driver(self) -> SqueezeTestDomain:
        wanted = DRIVERS[self.driver]
        missing = [p for p in wanted if getattr(self, p) is None]
        extra = [p for p in DRIVER_PARAMETERS if p not in wanted and getattr(self, p) is not None]
        if missing or extra:
            takes = ", ".join(wanted) or "no parameters"
            raise ValueError(f"driver {self.driver} takes {takes}; " + _listed(missing, extra))
        if self.dynamic_min > self.dynamic_max:
            raise ValueError(f"dynamic_min {self.dynamic_min}KiB is above dynamic_max {self.dynamic_max}KiB")
        return self

    def record(self) -> Domain:
        return Domain(
            self.domid,
            self.can_balloon,
            self.dynamic_min,
            self.target,
            self.dynamic_max,
            self.actual,
            self.maxmem,
            self.inaccuracy,
        )

    def rule(self) -> FaultRule:
        rate = float(self.rate or 0)
        if self.driver == "idealised_vm":
            return Ideal(rate)
        if self.driver == "idealised_vm_with_limit":
            return HiddenFloor(rate, self.floor or 0)
        if self.driver == "idealised_vm_with_upper_limit":
            return HiddenCeiling(rate, self.ceiling or 0)
        if self.driver == "intermittently_stuck_vm":
            return IntermittentlyStuck(rate, (self.interval or 0) / NS_PER_S)
        return Stuck()


def _listed(missing: list[str], extra: list[str]) -> str:
    parts = ([f"missing {', '.join(missing)}"] if missing else []) + ([f"remove {', '.join(extra)}"] if extra else [])
    return "; ".join(parts)


class Expect(Model):
    """The outcome upstream's code reaches on the case (its suite states only success or not)."""

    outcome: Outcome
    domains: list[int] | None = Field(None, description="domains_refused_to_cooperate: the domids blamed")

    @model_validator(mode="after")
    def _blame_only_for_refusal(self) -> Expect:
        if self.domains is not None and self.outcome != "domains_refused_to_cooperate":
            raise ValueError("domains (the domids blamed) go only with outcome domains_refused_to_cooperate")
        return self


class SqueezeTestCase(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    free: KiB = Field(description="the host's free memory at the start")
    required: KiB = Field(description="the memory to free (phase 1), and the loop's host free target")
    fistpoints: list[Fistpoint] = Field([], description="squeezed's test switches that break a safeguard")
    max_iterations: int = Field(
        1000, ge=1, description="our guard: a loop that neither succeeds nor fails in this many iterations gives up"
    )
    domains: list[SqueezeTestDomain] = Field(min_length=1, description="in update order (upstream's list order)")
    expect: Expect

    @model_validator(mode="after")
    def _unique_domids(self) -> SqueezeTestCase:
        ids = [d.domid for d in self.domains]
        doubled = sorted({i for i in ids if ids.count(i) > 1})
        if doubled:
            raise ValueError(f"domids must differ: {', '.join(map(str, doubled))}")
        return self


class SqueezeTestDocument(Model):
    squeeze_test: SqueezeTestCase


def is_squeeze_test(path: str | Path) -> bool:
    """The file is a YAML mapping whose top-level key is ``squeeze_test`` (anything else, or a file
    that cannot be read, is for the scenario loader to take or report)."""
    try:
        doc = load_yaml(read_text(Path(path), MAX_BYTES), str(path))
    except (TextError, ScenarioError):
        return False
    return isinstance(doc, CommentedMap) and KEY in doc


def load_squeeze_test(path: str | Path) -> SqueezeTestCase:
    """Read and validate a case file; raise ScenarioError listing every problem, one line each."""
    path = Path(path)
    filename = str(path)
    try:
        doc = load_yaml(read_text(path, MAX_BYTES), filename)
    except TextError as err:
        raise ScenarioError([str(err)]) from None
    data: Any = plain(doc)
    if isinstance(data, dict) and isinstance(data.get(KEY), dict):
        data[KEY].setdefault("name", slug(path.stem))
    try:
        return SqueezeTestDocument.model_validate(data).squeeze_test
    except ValidationError as err:
        raise ScenarioError(in_line_order(doc, filename, issues_of(err, data, SqueezeTestDocument))) from None
