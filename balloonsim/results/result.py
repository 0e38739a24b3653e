"""A run's results as pandas DataFrames, read from its Parquet files when first asked for.

A run streams its timeline, host and events tables to Parquet as it goes (``recorder``),
then derives the targets and summary tables from the timeline a batch of domains at a
time (``derived``), so neither needs the whole timeline in memory.  A ``Result`` reads a
table only when it is first asked for (``result.timeline``); ``read`` and ``domain`` read
a projection or one domain's rows, ``dataset`` gives a ``pyarrow.dataset`` to scan.  The
files of ``balloonsim.run()`` are in a temporary folder the Result owns: ``close()``, or
the Result's collection, removes it; ``save(folder)`` keeps them.  A Result may also hold
DataFrames given to it (tests, figures of a hand-made result).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from balloonsim.results import derived, planner
from balloonsim.results.recorder import Recorder
from balloonsim.results.spool import Spool, identity_of, read_frame, row_groups, write_frame
from balloonsim.results.tables import HOST

__all__ = ["HOST", "TABLES", "Result", "build_result"]

TABLES = ("timeline", "events", "host", "targets", "summary")


class Result:
    """What a run produced.

    ``timeline``: one row per domain after every external event and every
    ``balloon_process()`` pass (results/README.md lists its columns).
    ``events``: what happened inside (EAGAIN, hotplug, refused allocations...).
    ``host``: the host's free memory, a row at every change (``row``: the timeline row it follows).
    ``targets``: every target a domain was given, and when it was reached.
    ``summary``: one row per domain.
    ``planner`` (derived from those): one row for the run, what a capacity planner reads (VM
    starts, the host manager's goal, stranded memory, overcommit); ``planner_series`` the same
    over time (``results/planner.py`` defines them).
    """

    def __init__(
        self,
        timeline: pd.DataFrame | None = None,
        events: pd.DataFrame | None = None,
        host: pd.DataFrame | None = None,
        targets: pd.DataFrame | None = None,
        summary: pd.DataFrame | None = None,
        metadata: dict[str, Any] | None = None,
        *,
        spool: Spool | None = None,
    ):
        """Either the five tables, or ``spool``: the folder of their Parquet files (any given table
        is kept instead of its file)."""
        given = dict(zip(TABLES, (timeline, events, host, targets, summary), strict=True))
        self._frames = {name: frame for name, frame in given.items() if frame is not None}
        self.spool = spool
        self.metadata: dict[str, Any] = {} if metadata is None else metadata

    @property
    def timeline(self) -> pd.DataFrame:
        return self._table("timeline")

    @property
    def events(self) -> pd.DataFrame:
        return self._table("events")

    @property
    def host(self) -> pd.DataFrame:
        return self._table("host")

    @property
    def targets(self) -> pd.DataFrame:
        return self._table("targets")

    @property
    def summary(self) -> pd.DataFrame:
        return self._table("summary")

    def _table(self, name: str) -> pd.DataFrame:
        frame = self._frames.get(name)
        if frame is None:
            frame = self._frames[name] = read_frame(self._path(name))
        return frame

    def _path(self, name: str) -> Path:
        path = self.file(name)
        if path is None:
            raise ValueError(f"the result has no {name} table: it was closed (save a result to keep it)")
        return path

    def file(self, name: str) -> Path | None:
        """Where table ``name``'s Parquet file is (None: held in memory only, or closed)."""
        return None if self.spool is None else self.spool.path(name)

    def read(self, table: str = "timeline", columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
        """Table ``table``'s ``columns`` (all by default), its rows that pass ``filters`` (pyarrow's
        form, e.g. ``[("domain", "==", "web")]``), without loading or keeping the whole table."""
        frame = self._frames.get(table)
        if frame is None:
            return read_frame(self._path(table), columns, filters)
        if filters is not None:
            frame = self.dataset(table).to_table(filter=pq.filters_to_expression(filters)).to_pandas()
        return frame if columns is None else frame[list(columns)]

    def row_groups(self, table: str = "timeline", columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
        """Table ``table``'s ``columns`` a row group at a time, in order (at once when it is in memory)."""
        if table in self._frames:
            yield self.read(table, columns)
        else:
            yield from row_groups(self._path(table), columns)

    def domain(self, name: str) -> pd.DataFrame:
        """The timeline rows of one domain (read alone from the file when the timeline is not loaded)."""
        if "timeline" in self._frames:
            return self.timeline[self.timeline["domain"] == name].reset_index(drop=True)
        return read_frame(self._path("timeline"), filters=[("domain", "==", name)])

    def dataset(self, table: str = "timeline") -> ds.Dataset:
        """Table ``table`` as a ``pyarrow.dataset`` (scan it by batches, with projections and filters)."""
        if table not in self._frames or self.spool is not None:
            return ds.dataset(self._path(table), format="parquet")
        return ds.dataset(pa.Table.from_pandas(self._frames[table], preserve_index=False))

    @cached_property
    def planner(self) -> pd.DataFrame:
        return planner.planner_table(self)

    @cached_property
    def planner_series(self) -> pd.DataFrame:
        return planner.planner_series(self)

    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table, loaded."""
        return {name: self._table(name) for name in TABLES}

    def save(self, folder: str | Path, **options: Any) -> Path:
        """Save to ``folder`` as ``balloonsim run`` does (``store.save_result``)."""
        from balloonsim.results.store import save_result

        return save_result(self, folder, **options)

    def close(self) -> None:
        """Forget the loaded tables and remove the temporary folder of a run's files (a saved result's stay)."""
        self._frames = {name: self._frames[name] for name in ("targets", "summary") if name in self._frames}
        if self.spool is not None and self.spool.owned:
            self.spool.remove()
            self.spool = None
            self.__dict__.pop("planner_series", None)

    def __enter__(self) -> Result:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def build_result(
    recorder: Recorder, hz: list[int], activity: dict[str, dict[str, int]], metadata: dict[str, Any]
) -> Result:
    """Close the recorder's files, derive targets and summary (written beside them) and return the Result."""
    identity = identity_of(metadata)
    spool, whole = recorder.finish(hz, identity)
    result = Result(**whole, metadata=metadata, spool=spool)
    targets, summary = derived.targets_and_summary(result, recorder.domains, recorder.domain_rows, activity)
    for name, frame in (("targets", targets), ("summary", summary)):
        if spool is not None:
            write_frame(spool.path(name), frame, identity)
        result._frames[name] = frame
    return result
