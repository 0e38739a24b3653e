"""The numbers a comparison and a baseline look at: a few per guest and a few for the host.

``run_metrics(result)`` gives them as a tidy table, one row per (domain, metric),
the host's under ``HOST``.  Every value is a float: counts and pages are whole
numbers, times are seconds, and a time that never came (a target not reached,
host free memory that never reached ``host.needed``) is +inf, so that "longer
than 30 s" holds for it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from balloonsim.results.planner import planner_applies
from balloonsim.results.result import HOST, Result
from balloonsim.results.summary import host_needed_reached_s
from balloonsim.units import NS_PER_S, pages_to_mib, parse_pages, parse_time_ns

#: what a metric counts, for reading a threshold ("30s", "512MiB") and printing a value
COUNT, SECONDS, PAGES, MIB_S, RATIO = "count", "s", "pages", "MiB·s", "ratio"


@dataclass(frozen=True)
class Metric:
    name: str
    unit: str  # COUNT, SECONDS, PAGES, MIB_S or RATIO
    meaning: str
    column: str = ""  # the summary column it is read from (guest metrics)


GUEST_METRICS = (
    Metric("time_to_target", SECONDS, "seconds from the last target to reaching it (inf: not reached)",
           "time_to_final_target_s"),
    Metric("final_pages", PAGES, "current_pages at the end", "final_current_pages"),
    Metric("final_target_pages", PAGES, "target_pages at the end", "final_target_pages"),
    Metric("backoff_seconds", SECONDS, "seconds with a worker pass waiting after EAGAIN", "backoff_s"),
    Metric("eagain_passes", COUNT, "worker passes that ended EAGAIN", "eagain_passes"),
    Metric("cancellations", COUNT, "worker passes that ended ECANCELED", "cancellations"),
    Metric("oom_kills", COUNT, "tasks the OOM killer killed", "oom_kills"),
    Metric("crashed", COUNT, "1 if the guest crashed (kernel panic, out of PoD memory) and was destroyed", "crashed"),
    Metric("min_mem_available", PAGES, "the lowest MemAvailable", "min_mem_available"),
    Metric("max_unmet_demand", PAGES, "the most demand not held at once", "max_unmet_demand"),
    Metric("unmet_demand_mib_s", MIB_S, "unmet demand over time", "unmet_demand_mib_s"),
)  # fmt: skip

#: the planner's (results/planner.py), host metrics of a run with VM starts or a host manager;
#: the start metrics only with starts, time_to_goal only when the manager reported a goal
PLANNER_METRICS = (
    Metric("starts_failed", COUNT, "VM starts that failed", "starts_failed"),
    Metric("start_success_rate", RATIO, "the share of VM starts that succeeded", "start_success_rate"),
    Metric("start_latency_max", SECONDS, "the longest successful VM start (inf: none started)", "start_latency_max_s"),
    Metric("time_to_goal", SECONDS, "the longest wait for the manager's free-memory goal (inf: one never reached)",
           "time_to_goal_max_s"),
    Metric("stranded_free_mean", PAGES, "host memory free but promised to nobody while a guest lacked memory, mean",
           "stranded_free_mean_pages"),
    Metric("idle_held_mean", PAGES, "memory guests held and did not use, mean", "idle_held_mean_pages"),
    Metric("overcommit_max", RATIO, "the largest Σ static-max of running domains / host memory", "overcommit_max"),
    Metric("guests_stuck", COUNT, "guests the manager declared stuck", "guests_stuck"),
)  # fmt: skip

HOST_METRICS = (
    Metric("host_free_min", PAGES, "the host's lowest free memory"),
    Metric("host_free_end", PAGES, "the host's free memory at the end"),
    Metric("host_needed_time", SECONDS, "when host free memory first reached host.needed (inf: never; only if set)"),
    *PLANNER_METRICS,
)

METRICS = {m.name: m for m in (*GUEST_METRICS, *HOST_METRICS)}


def metric_names() -> str:
    """Every metric's name, for messages that list what is allowed."""
    return ", ".join(METRICS)


def run_metrics(result: Result) -> pd.DataFrame:
    """One row per (domain, metric), domain by domain in the scenario's order, the host's last:
    columns ``domain``, ``metric``, ``value``."""
    summary = result.summary
    values = np.column_stack([summary[m.column].to_numpy(dtype=float) for m in GUEST_METRICS])
    seconds = np.array([m.unit == SECONDS for m in GUEST_METRICS])
    values = np.where(seconds & np.isnan(values), math.inf, values)  # not reached: for ever
    host = host_metrics(result)
    return pd.DataFrame(
        {
            "domain": np.r_[
                np.repeat(summary["domain"].astype(str).to_numpy(), len(GUEST_METRICS)), [HOST] * len(host)
            ],
            "metric": [m.name for m in GUEST_METRICS] * len(summary) + list(host),
            "value": np.r_[values.ravel(), list(host.values())],
        }
    )


def host_metrics(result: Result) -> dict[str, float]:
    """The host's free memory at its lowest and at the end, and when it reached ``host.needed`` (if set);
    the planner's metrics when the run had VM starts or a host manager."""
    free = result.host["host_free"].to_numpy()
    values = {"host_free_min": float(free.min()), "host_free_end": float(free[-1])}
    needed = result.metadata.get("host_needed_pages")
    if needed:
        when = host_needed_reached_s(result.host, needed)
        values["host_needed_time"] = math.inf if when is None else when
    if planner_applies(result):
        row = result.planner.iloc[0]
        skip = {"starts_failed", "start_success_rate", "start_latency_max"} if not row["starts"] else set()
        if not row["goals"]:
            skip.add("time_to_goal")
        for m in PLANNER_METRICS:
            if m.name not in skip:
                value = float(row[m.column])
                values[m.name] = math.inf if math.isnan(value) and m.unit == SECONDS else value
    return values


def format_value(unit: str, value: float, *, signed: bool = False) -> str:
    """A metric's value for people: '3', '12.5 s', '512 MiB'; 'never' for a time that never came,
    '-' for none; ``signed``: a change, '+3', '-4 s'."""
    if math.isnan(value):
        return "-"
    sign = "+" if signed and value > 0 else ""
    if math.isinf(value):  # only times are infinite: never reached, or a change to or from that
        return ("now never" if value > 0 else "now reached") if signed else "never"
    if unit == PAGES:
        mib = pages_to_mib(value)
        return f"{sign}{mib:.0f} MiB" if mib == round(mib) or abs(mib) >= 100 else f"{sign}{mib:.2f} MiB"
    if unit == SECONDS:
        return f"{sign}{value:.4g} s"
    if unit == MIB_S:
        return f"{sign}{value:.4g} MiB·s"
    if unit == RATIO:
        return f"{sign}{value:.3g}"
    return f"{sign}{value:.0f}" if value == round(value) else f"{sign}{value:.4g}"


def read_quantity(text: str, unit: str) -> float:
    """A number written for a metric of ``unit``: a time for seconds ('30s'; bare: seconds), a size
    for pages ('512MiB'; bare: pages), a bare number otherwise.  ValueError says what is allowed."""
    number = re.fullmatch(r"\s*(-?)\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", text)
    if number is None:
        raise ValueError(f"{text!r} is not a number (with a unit for a time or a size)")
    sign, digits, suffix = -1 if number.group(1) else 1, number.group(2), number.group(3)
    if not suffix:
        return sign * float(digits)
    if unit == SECONDS:
        return sign * parse_time_ns(digits + suffix) / NS_PER_S
    if unit == PAGES:
        return float(sign * parse_pages(digits + suffix))
    raise ValueError(f"{text!r}: a {unit} metric takes a bare number")
