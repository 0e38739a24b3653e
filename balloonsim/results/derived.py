"""The targets and summary tables, derived from a streamed timeline a batch of domains at a time.

``summary.target_episodes`` and ``summary.domain_summary`` look at each domain's rows on
their own, so they give the same rows for a batch of domains as for all of them.  A
batch reads only the columns they use, and only its domains' rows (a filter on the
Parquet file, a row group at a time), so at most ``BATCH_ROWS`` timeline rows are in
memory at once however long the run; a run of fewer rows is one batch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from balloonsim.results.summary import domain_summary, target_episodes

if TYPE_CHECKING:
    from balloonsim.results.result import Result

#: timeline rows a batch holds at most (~17 columns: some 140 bytes a row, a few times that while derived)
BATCH_ROWS = 1_000_000
#: the timeline columns the summary and targets read (those a driver version lacks are left out)
SUMMARY_COLUMNS = (
    "time_ns", "jiffies", "domain", "cause", "current_pages", "target_pages", "state", "retry_count",
    "work_pending", "thread_runs_at", "mem_available", "guest_free", "oom_count", "unmet_demand",
    "unmet_anon", "unmet_cache", "swap_pages",
)  # fmt: skip


def domain_batches(rows: np.ndarray, most: int) -> list[slice]:
    """Runs of consecutive domains whose rows add up to at most ``most`` (a larger domain alone)."""
    batches, start, held = [], 0, 0
    for i, n in enumerate(rows.tolist()):
        if held and held + n > most:
            batches.append(slice(start, i))
            start, held = i, 0
        held += n
    batches.append(slice(start, len(rows)))
    return batches


def targets_and_summary(
    result: Result, domains: list[str], rows: np.ndarray, activity: dict[str, dict[str, int]], most: int = BATCH_ROWS
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The targets and summary tables of ``result``'s timeline, whose domain ``i`` has ``rows[i]`` rows."""
    present = set(result.dataset("timeline").schema.names)
    columns = [c for c in SUMMARY_COLUMNS if c in present]
    events = result.events
    batches = domain_batches(rows, most)
    targets, summaries = [], []
    for batch in batches:
        if len(batches) == 1:
            timeline = result.read("timeline", columns)
        else:
            names = domains[batch]
            timeline = result.read("timeline", columns, filters=[("domain", "in", names)])
            timeline["domain"] = timeline["domain"].cat.set_categories(names)
        targets.append(target_episodes(timeline))
        summaries.append(domain_summary(timeline, events, targets[-1], activity))
        del timeline
    if len(batches) == 1:
        return targets[0], summaries[0]
    return _whole(targets, domains), _whole(summaries, domains)


def _whole(parts: list[pd.DataFrame], domains: list[str]) -> pd.DataFrame:
    """The batches' tables as one, its ``domain`` column of every domain."""
    frame = pd.concat(parts, ignore_index=True)
    frame["domain"] = pd.Categorical(frame["domain"].astype(str), categories=domains)
    return frame
