"""Column buffers for the timeline, host and events tables, streamed to Parquet a row group at a time.

The timeline's columns are whatever the model's components declare
(``columns.Column``): each guest gives its components in column order
(``GuestKernel.row_sources``), and a row is their ``row_values()`` one
after another, appended to one flat ``array('q')``, so recording costs no
Python object per row.  Guests whose components declare different columns
(another driver version) share one table: a column a guest lacks gets the
column's fill value.

Every ``row_group`` rows a buffer is decoded (``tables``) and written as one
row group of its Parquet file in the spool folder (``spool``), then emptied:
the recorder holds at most one group of each table, however long the run.

The host table has a row only when the host's memory (free, Σ domain pages,
other consumers) differs from its previous row, and at the run's last row, so
that it spans the run.  A timeline row already says when and for which domain
and cause; the host row keeps the timeline row it follows (``row``) to join the
two exactly, and its time, which every reader of the host alone needs.  Most
timeline rows of a busy host change one guest and leave the host as it was
(a workload step, a pass that moved nothing), and none repeats time, domain
and cause any more.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from balloonsim.columns import Column, HasColumns
from balloonsim.errors import RunWarning
from balloonsim.results import tables
from balloonsim.results.spool import Spool, TableFile, identity_of, rewrite_identity
from balloonsim.xen.hypervisor import Host

#: the columns every timeline row starts with (``domain`` and ``cause`` as codes)
KEY_COLUMNS = (
    Column("time_ns"),
    Column("domain", "category"),
    Column("cause", "category"),
)
#: rows per row group: 64 Ki rows of ~40 int64 columns is ~20 MiB of buffer, a few times that while
#: a group is decoded and written; small against the model's own memory, large enough that a
#: group's fixed cost (a DataFrame, an Arrow table, a Parquet row group) is spread over many rows
ROW_GROUP = 65_536


class Codes:
    """Strings interned as small ints, in order of first use."""

    def __init__(self, initial: tuple[str, ...] = ()):
        self.names: list[str] = list(initial)
        self._index = {name: i for i, name in enumerate(initial)}

    def __call__(self, name: str) -> int:
        code = self._index.get(name)
        if code is None:
            code = self._index[name] = len(self.names)
            self.names.append(name)
        return code


def _getters(sources: Sequence[HasColumns]) -> tuple[Callable[[], tuple[int, ...]], ...]:
    """The components' bound ``row_values``, looked up once: a row asks ~6 of them."""
    return tuple(source.row_values for source in sources)


class Recorder:
    #: rows after which a run says how large its timeline has grown (then at every doubling)
    WARN_ROWS = 2_000_000

    def __init__(
        self,
        domain_names: list[str],
        row_sources: list[Sequence[HasColumns]],
        host: Host,
        *,
        hz: Sequence[int] | None = None,
        spool: Path | None = None,
        identity: bytes | None = None,
        row_group: int = ROW_GROUP,
    ):
        """``hz``: each domain's HZ (for ``jiffies``; needed by the first row group written);
        ``spool``: the folder for the Parquet files (default: a temporary one, see ``Spool``);
        ``identity``: the run's, for each file's metadata (``finish`` may give another)."""
        self.domains = list(domain_names)
        self.host_model = host
        self.causes = Codes(("init", "work", "end"))
        self.kinds = Codes()
        self.columns: list[Column] = list(KEY_COLUMNS)
        declared = {c.name: (c, "the recorder") for c in KEY_COLUMNS}
        for sources in row_sources:
            for source in sources:
                for column in source.COLUMNS:
                    if column.name not in declared:
                        declared[column.name] = (column, type(source).__name__)
                        self.columns.append(column)
                    first, by = declared[column.name]
                    if first != column:  # one name, two meanings: one table cannot hold both
                        raise TypeError(f"{type(source).__name__} declares {column}, {by} {first}")
        position = {c.name: i for i, c in enumerate(self.columns)}
        # per domain: its components' row_values methods, and where their values go (None: in order)
        self._layouts: list[tuple[tuple[Callable[[], tuple[int, ...]], ...], list[int] | None]] = []
        for sources in row_sources:
            slots = [position[c.name] for source in sources for c in source.COLUMNS]
            whole = slots == list(range(len(KEY_COLUMNS), len(self.columns)))
            self._layouts.append((_getters(sources), None if whole else slots))
        self._sources = [tuple(sources) for sources in row_sources]
        self.hz = None if hz is None else np.asarray(hz, dtype=np.int64)
        self.identity = identity or identity_of({})
        self.row_group = row_group
        self._given_folder = spool
        self.spool: Spool | None = None  # made at the first write
        self.files: dict[str, TableFile] = {}
        self.timeline = array("q")
        self.host = array("q")
        self.events = array("q")
        self.messages: list[str] = []
        self.rows = 0
        #: rows per domain written so far (the derived tables read the timeline in batches of domains)
        self.domain_rows = np.zeros(len(self.domains), dtype=np.int64)
        self._timeline_full = row_group * len(self.columns)
        self._host_state: tuple[int, int, int] | None = None
        self._host_row = -1  # the timeline row of the last host row
        self._last_ns = 0
        self._warn_at = self.WARN_ROWS
        self._unchecked = set(range(len(self.domains)))  # domains whose first row is still to come

    def attach(self, index: int, sources: Sequence[HasColumns]) -> None:
        """Domain ``index`` is built (a VM start): its rows come from these components, which declare
        the columns its classes declared at the start of the run."""
        old, slots = self._sources[index], self._layouts[index][1]
        if [c for s in old for c in s.COLUMNS] != [c for s in sources for c in s.COLUMNS]:
            raise TypeError(f"domain {self.domains[index]}: its components declare other columns than announced")
        self._sources[index] = tuple(sources)
        self._layouts[index] = (_getters(sources), slots)
        self._unchecked.add(index)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def row(self, now: int, index: int, cause: int) -> None:
        """One timeline row for domain ``index``, its values asked of its components (and a host row
        if the host's memory changed since the last)."""
        getters, slots = self._layouts[index]
        if index in self._unchecked:
            self._check_values(index)
        timeline = self.timeline
        if slots is None:
            values = [now, index, cause]
            for get in getters:
                values += get()
            timeline.extend(values)  # one extend: a row is ~50 values from ~6 components
        else:
            values = [c.fill for c in self.columns]
            values[:3] = (now, index, cause)
            for slot, value in zip(slots, (v for get in getters for v in get()), strict=True):
                values[slot] = value
            timeline.extend(values)
        state = self.host_model.snapshot()  # planned loop turns due by now included, not applied
        if state != self._host_state:
            self._host_state, self._host_row = state, self.rows
            self.host.extend((now, self.rows, *state))
            if len(self.host) >= self.row_group * len(tables.HOST_FIELDS):
                self._flush_host()
        self._last_ns = now
        self.rows += 1
        if len(timeline) >= self._timeline_full:
            self._flush_timeline()
        if self.rows >= self._warn_at:
            self._warn_size()

    def _check_values(self, index: int) -> None:
        """A component gives as many values as it declares columns (else the table would be garbled)."""
        for source in self._sources[index]:
            values = source.row_values()
            if len(values) != len(source.COLUMNS):
                raise TypeError(
                    f"{type(source).__name__}.row_values() gives {len(values)} values for its "
                    f"{len(source.COLUMNS)} COLUMNS"
                )
        self._unchecked.discard(index)

    def _warn_size(self) -> None:
        """Say so when the timeline grows large: its files grow with its rows, and so does loading it whole."""
        size = self.rows * (len(self.columns) + 4) * 8  # int64 columns, and the four derived ones
        warnings.warn(
            RunWarning(
                f"the timeline has {self.rows:,} rows ({size / 2**30:.1f} GiB to load it whole; streamed to "
                "disk meanwhile); fewer rows: a larger progress_every, fewer events, a shorter duration"
            ),
            stacklevel=3,
        )
        self._warn_at *= 2

    def event(self, now: int, index: int, kind: str, pages: int, value: int, message: str) -> None:
        self.events.extend((now, index, self.kinds(kind), pages, value))
        self.messages.append(message)
        if len(self.messages) >= self.row_group:
            self._flush_events()

    # -- row groups to Parquet -----------------------------------------------------------

    def _file(self, table: str) -> TableFile:
        if self.spool is None:
            self.spool = Spool(self._given_folder)
        if table not in self.files:
            self.files[table] = TableFile(self.spool.path(table))
        return self.files[table]

    def _timeline_group(self) -> pd.DataFrame:
        m = tables.matrix(self.timeline, len(self.columns))
        if self.hz is None:
            raise TypeError("the recorder needs each domain's HZ before it writes a row group")
        self.domain_rows += np.bincount(m[:, 1], minlength=len(self.domains))
        return tables.timeline_frame(m, self.columns, self.domains, self.causes.names, self.hz)

    def _host_group(self) -> pd.DataFrame:
        return tables.host_frame(tables.matrix(self.host, len(tables.HOST_FIELDS)))

    def _events_group(self) -> pd.DataFrame:
        e = tables.matrix(self.events, len(tables.EVENT_FIELDS))
        return tables.events_frame(e, self.messages, self.domains, self.kinds.names)

    def _flush_timeline(self) -> None:
        self._file("timeline").append(self._timeline_group(), self.identity)
        self.timeline = array("q")

    def _flush_host(self) -> None:
        self._file("host").append(self._host_group(), self.identity)
        self.host = array("q")

    def _flush_events(self) -> None:
        self._file("events").append(self._events_group(), self.identity)
        self.events, self.messages = array("q"), []

    def finish(
        self, hz: Sequence[int] | None = None, identity: bytes | None = None
    ) -> tuple[Spool | None, dict[str, pd.DataFrame]]:
        """Write what is left and close the files, each with its final category names.  Returns the
        folder (None when nothing was written: a run of less than a row group, with no folder given,
        keeps its tables in memory) and the tables whose rows were all in this last group."""
        if hz is not None:
            self.hz = np.asarray(hz, dtype=np.int64)
        renamed = identity is not None and identity != self.identity and bool(self.files)
        self.identity = identity or self.identity
        if self._host_state is not None and self._host_row != self.rows - 1:  # so the host table spans the run
            self.host.extend((self._last_ns, self.rows - 1, *self._host_state))
        last = {"timeline": self._timeline_group(), "host": self._host_group(), "events": self._events_group()}
        whole = {name: frame for name, frame in last.items() if name not in self.files}
        if not self.files and self._given_folder is None:
            return None, whole
        categories = {
            "timeline": {
                "domain": self.domains,
                "cause": self.causes.names,
                **{c.name: list(c.categories) for c in self.columns[3:] if c.kind == "category"},
            },
            "host": {},
            "events": {"domain": [*self.domains, tables.HOST], "kind": self.kinds.names},
        }
        for name, frame in last.items():
            file = self._file(name)
            if len(frame) or not file.groups:  # an empty group only for a table without rows
                file.append(frame, self.identity)
            file.close(categories[name])
            if renamed:  # rows written before the run's identity was known
                rewrite_identity(file.path, self.identity)
        spool, self.spool = self.spool, None  # handed over: the Result alone owns it (and removes it)
        assert spool is not None
        return spool, whole

    def abort(self) -> None:
        """The run failed: close the files and remove a temporary folder."""
        for file in self.files.values():
            file.abort()
        if self.spool is not None:
            self.spool.remove()
