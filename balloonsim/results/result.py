"""A run's results as pandas DataFrames, built once from the recorder's buffers."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from balloonsim.columns import Column
from balloonsim.results import planner
from balloonsim.results.recorder import EVENT_FIELDS, HOST_FIELDS, Recorder
from balloonsim.results.summary import domain_summary, target_episodes
from balloonsim.units import NS_PER_S, ns_to_s, pages_to_mib

HOST = "(host)"


@dataclass
class Result:
    """What a run produced.

    ``timeline``: one row per domain after every external event and every
    ``balloon_process()`` pass (results/README.md lists its columns).
    ``events``: what happened inside (EAGAIN, hotplug, refused allocations...).
    ``host``: the host's free memory after every timeline row.
    ``targets``: every target a domain was given, and when it was reached.
    ``summary``: one row per domain.
    ``planner`` (derived from those): one row for the run, what a capacity planner reads (VM
    starts, the host manager's goal, stranded memory, overcommit); ``planner_series`` the same
    over time (``results/planner.py`` defines them).
    """

    timeline: pd.DataFrame
    events: pd.DataFrame
    host: pd.DataFrame
    targets: pd.DataFrame
    summary: pd.DataFrame
    metadata: dict[str, Any] = field(default_factory=dict)

    def domain(self, name: str) -> pd.DataFrame:
        """The timeline rows of one domain."""
        return self.timeline[self.timeline["domain"] == name].reset_index(drop=True)

    @cached_property
    def planner(self) -> pd.DataFrame:
        return planner.planner_table(self)

    @cached_property
    def planner_series(self) -> pd.DataFrame:
        return planner.planner_series(self)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        return {
            "timeline": self.timeline,
            "events": self.events,
            "host": self.host,
            "targets": self.targets,
            "summary": self.summary,
        }


def build_result(
    recorder: Recorder, hz: list[int], activity: dict[str, dict[str, int]], metadata: dict[str, Any]
) -> Result:
    domains = pd.CategoricalDtype(recorder.domains)
    causes = pd.CategoricalDtype(recorder.causes.names)

    m = Recorder.matrix(recorder.timeline, len(recorder.columns))
    cols = {c.name: m[:, i] for i, c in enumerate(recorder.columns)}
    time_ns = cols["time_ns"]
    hz_of_row = np.asarray(hz, dtype=np.int64)[cols["domain"]]

    def decoded(column: Column) -> Any:
        values = cols[column.name]
        if column.name == "domain":
            return pd.Categorical.from_codes(values, dtype=domains)
        if column.name == "cause":
            return pd.Categorical.from_codes(values, dtype=causes)
        if column.kind == "category":
            return pd.Categorical.from_codes(values, categories=column.categories)
        if column.kind == "bool":
            return values.astype(bool)
        return values

    timeline = pd.DataFrame(
        {
            "time_ns": time_ns,
            "time_s": ns_to_s(time_ns),
            # jiffies in each domain's HZ, without overflowing int64 on long runs
            "jiffies": time_ns // NS_PER_S * hz_of_row + time_ns % NS_PER_S * hz_of_row // NS_PER_S,
            **{c.name: decoded(c) for c in recorder.columns[1:]},
            "current_mib": pages_to_mib(cols["current_pages"]),
            "target_mib": pages_to_mib(cols["target_pages"]),
        }
    )

    h = Recorder.matrix(recorder.host, len(HOST_FIELDS))
    host = pd.DataFrame(
        {
            "time_ns": h[:, 0],
            "time_s": ns_to_s(h[:, 0]),
            "domain": pd.Categorical.from_codes(h[:, 1], dtype=domains),
            "cause": pd.Categorical.from_codes(h[:, 2], dtype=causes),
            "host_free": h[:, 3],
            "domain_pages": h[:, 4],
            "other_pages": h[:, 5],
            "host_free_mib": pages_to_mib(h[:, 3]),
        }
    )

    e = Recorder.matrix(recorder.events, len(EVENT_FIELDS))
    event_domains = pd.CategoricalDtype([*recorder.domains, HOST])
    ev_dom = np.where(e[:, 1] < 0, len(recorder.domains), e[:, 1])
    events = pd.DataFrame(
        {
            "time_ns": e[:, 0],
            "time_s": ns_to_s(e[:, 0]),
            "domain": pd.Categorical.from_codes(ev_dom, dtype=event_domains),
            "kind": pd.Categorical.from_codes(e[:, 2], categories=recorder.kinds.names),
            "pages": e[:, 3],
            "value": e[:, 4],
            "message": pd.Series(recorder.messages, dtype="string"),
        }
    )

    targets = target_episodes(timeline)
    summary = domain_summary(timeline, events, targets, activity)
    return Result(timeline, events, host, targets, summary, metadata)
