"""Named timeline columns, as the model's components declare them.

Each component that has state worth a timeline column (a driver version,
the guest's memory, its tasks, memory hotplug, the Xen domain) declares its
``COLUMNS`` and gives their values, in that order, from ``row_values()``.
The recorder asks every component instead of knowing their insides, so a
new driver version adds its own state columns without touching it.
Values are ints (int64 in the tables); a column may say how to read them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol


@dataclass(frozen=True)
class Column:
    name: str
    kind: Literal["int", "bool", "category"] = "int"
    #: for ``category``: the names the recorded codes stand for
    categories: tuple[str, ...] = ()
    #: the value a domain whose components lack this column records
    fill: int = -1


class HasColumns(Protocol):
    COLUMNS: tuple[Column, ...]

    def row_values(self) -> tuple[int, ...]: ...
