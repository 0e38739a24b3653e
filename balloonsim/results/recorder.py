"""Column buffers for the timeline, host and events tables.

The timeline's columns are whatever the model's components declare
(``columns.Column``): each guest gives its components in column order
(``GuestKernel.row_sources``), and a row is their ``row_values()`` one
after another, appended to one flat ``array('q')``, so recording costs no
Python object per row.  Guests whose components declare different columns
(another driver version) share one table: a column a guest lacks gets the
column's fill value.  The DataFrames are built once, at the end.
"""

from __future__ import annotations

import warnings
from array import array
from collections.abc import Sequence

import numpy as np

from balloonsim.columns import Column, HasColumns
from balloonsim.errors import RunWarning
from balloonsim.xen.hypervisor import Host

#: the columns every timeline row starts with (``domain`` and ``cause`` as codes)
KEY_COLUMNS = (
    Column("time_ns"),
    Column("domain", "category"),
    Column("cause", "category"),
)
HOST_FIELDS = ("time_ns", "domain", "cause", "host_free", "domain_pages", "other_pages")
EVENT_FIELDS = ("time_ns", "domain", "kind", "pages", "value")


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


class Recorder:
    #: rows after which a run says how large its tables have grown (then at every doubling)
    WARN_ROWS = 2_000_000  # some 0.6 GiB of buffers

    def __init__(self, domain_names: list[str], row_sources: list[Sequence[HasColumns]], host: Host):
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
        self._layouts: list[tuple[Sequence[HasColumns], list[int] | None]] = []
        for sources in row_sources:
            slots = [position[c.name] for source in sources for c in source.COLUMNS]
            whole = slots == list(range(len(KEY_COLUMNS), len(self.columns)))
            self._layouts.append((tuple(sources), None if whole else slots))
        self.timeline = array("q")
        self.host = array("q")
        self.events = array("q")
        self.messages: list[str] = []
        self.rows = 0
        self._warn_at = self.WARN_ROWS
        self._unchecked = set(range(len(self.domains)))  # domains whose first row is still to come

    def attach(self, index: int, sources: Sequence[HasColumns]) -> None:
        """Domain ``index`` is built (a VM start): its rows come from these components, which declare
        the columns its classes declared at the start of the run."""
        old, slots = self._layouts[index]
        if [c for s in old for c in s.COLUMNS] != [c for s in sources for c in s.COLUMNS]:
            raise TypeError(f"domain {self.domains[index]}: its components declare other columns than announced")
        self._layouts[index] = (tuple(sources), slots)
        self._unchecked.add(index)

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def row(self, now: int, index: int, cause: int) -> None:
        """One timeline row (and one host row) for domain ``index``, its values asked of its components."""
        sources, slots = self._layouts[index]
        if index in self._unchecked:
            self._check_values(index)
        timeline = self.timeline
        if slots is None:
            timeline.extend((now, index, cause))
            for source in sources:
                timeline.extend(source.row_values())
        else:
            values = [c.fill for c in self.columns]
            values[:3] = (now, index, cause)
            for slot, value in zip(slots, (v for s in sources for v in s.row_values()), strict=True):
                values[slot] = value
            timeline.extend(values)
        self.host.extend((now, index, cause, *self.host_model.snapshot()))
        self.rows += 1
        if self.rows >= self._warn_at:
            self._warn_size()

    def _check_values(self, index: int) -> None:
        """A component gives as many values as it declares columns (else the table would be garbled)."""
        for source in self._layouts[index][0]:
            values = source.row_values()
            if len(values) != len(source.COLUMNS):
                raise TypeError(
                    f"{type(source).__name__}.row_values() gives {len(values)} values for its "
                    f"{len(source.COLUMNS)} COLUMNS"
                )
        self._unchecked.discard(index)

    def _warn_size(self) -> None:
        """Say so when the tables grow large: a run's memory grows with its rows."""
        size = (len(self.timeline) + len(self.host)) * self.timeline.itemsize
        warnings.warn(
            RunWarning(
                f"the timeline has {self.rows:,} rows ({size / 2**30:.1f} GiB in memory so far, about twice that "
                "once the tables are built); fewer rows: a larger progress_every, fewer events, a shorter duration"
            ),
            stacklevel=3,
        )
        self._warn_at *= 2

    def event(self, now: int, index: int, kind: str, pages: int, value: int, message: str) -> None:
        self.events.extend((now, index, self.kinds(kind), pages, value))
        self.messages.append(message)

    @staticmethod
    def matrix(buffer: array, width: int) -> np.ndarray:
        return (
            np.frombuffer(buffer, dtype=np.int64).reshape(-1, width) if len(buffer) else np.zeros((0, width), np.int64)
        )
