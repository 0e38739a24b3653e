"""The settings a run used, grouped, for ``run.json`` and for labelling tables and figures.

``run_settings(scenario)`` gives one entry per distinct combination of driver
version, tunables, kernel build and costs, with how many domains (and which
first) use it, so that even a 100,000-guest run is described in a few lines.
``run_label(metadata)`` turns a result's metadata into the one line every
figure carries: scenario, seed, driver settings, costs, host manager.
"""

from __future__ import annotations

from typing import Any

from balloonsim.scenario.model import Costs, Domain, Scenario


def costs_profile(costs: Costs) -> str | dict[str, str]:
    """'none' (no cost at all), the profile's name, or the profile and the fields that override it."""
    if costs.timeless:
        return "none"
    dumped = costs.model_dump(mode="json")
    return dumped if len(dumped) > 1 else costs.profile


def domain_settings(d: Domain) -> dict[str, Any]:
    """A domain's driver version, tunables, kernel build and costs."""
    return {
        "driver": d.balloon.driver,
        "max_retry_count": d.balloon.max_retry_count,
        "max_schedule_delay": d.balloon.max_schedule_delay,
        "scrub_pages": d.balloon.scrub_pages,
        "hotplug_unpopulated": d.balloon.hotplug_unpopulated,
        "memory_hotplug": d.kernel.hotplug.enabled,
        "hz": d.kernel.hz,
        "arch": d.kernel.arch,
        "type": d.type,
        "costs": costs_profile(d.costs),
    }


def run_settings(scenario: Scenario) -> dict[str, Any]:
    """The run's settings: the host manager, and the domains grouped by identical settings."""
    groups: dict[str, dict[str, Any]] = {}
    for spec in scenario.domains:
        settings = domain_settings(spec)
        key = repr(sorted(settings.items()))
        group = groups.setdefault(key, {**settings, "domains": 0, "first_domain": spec.name})
        group["domains"] += 1
    manager = scenario.host.manager
    return {
        "manager": None if manager is None else manager.model_dump(mode="json"),
        "domain_groups": list(groups.values()),
    }


#: the settings every group's text names; the others only where groups differ in them
NAMED = ("driver", "max_retry_count", "max_schedule_delay", "costs")
_COUNTS = ("domains", "first_domain")


def _group_text(group: dict[str, Any], varying: list[str]) -> str:
    retries = group["max_retry_count"] or "unlimited"
    costs = group["costs"]
    if isinstance(costs, dict):  # the profile, then its overrides
        costs = ", ".join(v if k == "profile" else f"{k} {v}" for k, v in costs.items())
    costs_text = f"costs {costs}"
    others = "".join(f", {key} {group.get(key)}" for key in varying)
    return (
        f"driver {group['driver']} (max_retry_count {retries}, max_schedule_delay {group['max_schedule_delay']} s), "
        f"{costs_text}{others}"
    )


def run_label(metadata: dict[str, Any], most: int = 2) -> str:
    """'quickstart, seed 1: driver v5.12 (max_retry_count 4, max_schedule_delay 32 s), costs runtime'."""
    head = f"{metadata.get('scenario', '?')}, seed {metadata.get('seed', '?')}"
    settings = metadata.get("settings") or {}
    groups = settings.get("domain_groups") or []
    parts = []
    # what tells the groups apart besides the named settings (hz, type, arch, ...)
    varying = [k for k in (groups[0] if groups else ()) if k not in (*NAMED, *_COUNTS)]
    varying = [k for k in varying if len({repr(g.get(k)) for g in groups}) > 1]
    for group in groups[:most]:
        text = _group_text(group, varying)
        parts.append(text if len(groups) == 1 else f"{group['domains']}× {text}")
    if len(groups) > most:
        parts.append(f"and {len(groups) - most} more setting groups")
    manager = settings.get("manager")
    if manager:
        parts.append(f"manager {manager.get('kind')}")
    return head + (": " + "; ".join(parts) if parts else "")
