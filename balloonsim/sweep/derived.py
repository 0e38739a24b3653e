"""A point's scenario: the base with the point's dotted settings (``scenario/overrides``), then the
two settings planners sweep that change the scenario as a whole.

``guests: N``: the run has N guests, the base's domains repeated in order (with k domains,
guest i is a copy of domain i mod k, named ``NAME-c`` for its copy c = i div k + 1; only the
first copy of an ``initial_domain`` stays dom0).  An event addressed to a domain is given to
each of its copies (in copy order, at the same time); an event for a domain without copies
(N < k) is dropped; host events stay as they are.  The host is unchanged unless the spec has
``scale_host: true``: then ``host.total`` and ``host.free`` (those given) are multiplied by
N / k, rounded down to a whole page.

``overcommit: R``: ``host.total`` is set so that Σ static-max of all domains (those started
later included; a domain without static-max counts its memory) over the total is R, rounded
up to a whole page (so the ratio is at most R).  Memory the base gives to other consumers
(its total less its domains at boot less its free memory) stays theirs: ``host.free``, if the
base gives it, is the new total less both.  Applied after ``guests``, so it counts every copy.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import Any

from balloonsim.engine import host_size
from balloonsim.errors import InvalidScenario, ScenarioError
from balloonsim.scenario.model import Scenario
from balloonsim.scenario.overrides import with_settings
from balloonsim.sweep.spec import DERIVED, GUESTS, OVERCOMMIT


def point_scenario(base: Scenario, settings: dict[str, Any], origin: str, *, scale_host: bool = False) -> Scenario:
    """``base`` with a point's settings; ScenarioError lines start with ``origin``."""
    scenario = with_settings(base, {k: v for k, v in settings.items() if k not in DERIVED}, origin)
    try:
        if GUESTS in settings:
            scenario = with_guests(scenario, settings[GUESTS], scale_host=scale_host)
        if OVERCOMMIT in settings:
            scenario = with_overcommit(scenario, settings[OVERCOMMIT])
    except InvalidScenario as err:
        raise ScenarioError([f"{origin} {line}" for line in err.problems]) from None
    return scenario


def copy_name(name: str, copy: int) -> str:
    return f"{name}-{copy}"


def with_guests(scenario: Scenario, n: int, *, scale_host: bool = False) -> Scenario:
    """The scenario with ``n`` guests, as the module's docstring says."""
    data = scenario.as_data()
    base = data["domains"]
    k = len(base)
    copies: dict[str, list[str]] = {d["name"]: [] for d in base}
    domains = []
    for i in range(n):
        original, copy = base[i % k], i // k + 1
        domain = {**original, "name": copy_name(original["name"], copy)}
        domain["initial_domain"] = original.get("initial_domain", False) and copy == 1
        copies[original["name"]].append(domain["name"])
        domains.append(domain)
    events = []
    for event in data["events"]:
        name = event.get("domain")
        events += [event] if name is None else [{**event, "domain": c} for c in copies.get(name, [])]
    changes: dict[str, Any] = {"domains": domains, "events": events}
    if scale_host:
        for field in ("total", "free"):
            pages = getattr(scenario.host, field)
            if pages is not None:
                changes[f"host.{field}"] = f"{pages * n // k} pages"
    return scenario.replace(changes)


def static_max_sum(scenario: Scenario) -> int:
    """Σ static-max of all domains, pages (memory where static-max is absent), as the planner counts it."""
    return sum(d.memory if d.static_max_pages is None else d.static_max_pages for d in scenario.domains)


def with_overcommit(scenario: Scenario, ratio: float) -> Scenario:
    """The scenario with ``host.total`` for the overcommit ``ratio``, as the module's docstring says."""
    total = math.ceil(Fraction(static_max_sum(scenario)) / Fraction(str(ratio)))  # the ratio as written
    old_total, old_free = host_size(scenario)
    booted = sum(d.memory for d in scenario.domains if d.start is None)
    others = old_total - booted - old_free
    changes: dict[str, Any] = {"host.total": f"{total} pages"}
    if scenario.host.free is not None:
        changes["host.free"] = f"{max(0, total - booted - others)} pages"
    return scenario.replace(changes)
