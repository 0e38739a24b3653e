"""The recorder's int64 rows, decoded into the tables' DataFrames, one row group at a time.

A row group is decoded on its own: every column is a function of its row (and of the
run's fixed facts: each domain's HZ, the category names), so decoding groups one after
another gives the same table as decoding all rows at once.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from balloonsim.columns import Column
from balloonsim.units import NS_PER_S, ns_to_s, pages_to_mib

#: the domain of an event of the host's own (no guest)
HOST = "(host)"
#: the raw host row: the timeline row it follows, the host's memory then (pages)
HOST_FIELDS = ("time_ns", "row", "host_free", "domain_pages", "other_pages")
EVENT_FIELDS = ("time_ns", "domain", "kind", "pages", "value")


def matrix(values: np.ndarray | Any, width: int) -> np.ndarray:
    """A flat buffer of int64 as rows of ``width``."""
    flat = np.frombuffer(values, dtype=np.int64) if len(values) else np.zeros(0, np.int64)
    return flat.reshape(-1, width)


def timeline_frame(
    m: np.ndarray, columns: list[Column], domains: list[str], causes: list[str], hz: np.ndarray
) -> pd.DataFrame:
    """Timeline rows (``m``: one row per timeline row, ``columns`` in order) as the table's columns."""
    cols = {c.name: m[:, i] for i, c in enumerate(columns)}
    time_ns = cols["time_ns"]
    hz_of_row = hz[cols["domain"]]

    def decoded(column: Column) -> Any:
        values = cols[column.name]
        if column.name == "domain":
            return pd.Categorical.from_codes(values, categories=domains)
        if column.name == "cause":
            return pd.Categorical.from_codes(values, categories=causes)
        if column.kind == "category":
            return pd.Categorical.from_codes(values, categories=column.categories)
        if column.kind == "bool":
            return values.astype(bool)
        return values

    return pd.DataFrame(
        {
            "time_ns": time_ns,
            "time_s": ns_to_s(time_ns),
            # jiffies in each domain's HZ, without overflowing int64 on long runs
            "jiffies": time_ns // NS_PER_S * hz_of_row + time_ns % NS_PER_S * hz_of_row // NS_PER_S,
            **{c.name: decoded(c) for c in columns[1:]},
            "current_mib": pages_to_mib(cols["current_pages"]),
            "target_mib": pages_to_mib(cols["target_pages"]),
        }
    )


def host_frame(h: np.ndarray) -> pd.DataFrame:
    """Host rows (``HOST_FIELDS``) as the host table."""
    return pd.DataFrame(
        {
            "time_ns": h[:, 0],
            "time_s": ns_to_s(h[:, 0]),
            "row": h[:, 1],
            "host_free": h[:, 2],
            "domain_pages": h[:, 3],
            "other_pages": h[:, 4],
            "host_free_mib": pages_to_mib(h[:, 2]),
        }
    )


def events_frame(e: np.ndarray, messages: list[str], domains: list[str], kinds: list[str]) -> pd.DataFrame:
    """Event rows (``EVENT_FIELDS``; domain -1: the host's) and their messages as the events table."""
    ev_dom = np.where(e[:, 1] < 0, len(domains), e[:, 1])
    return pd.DataFrame(
        {
            "time_ns": e[:, 0],
            "time_s": ns_to_s(e[:, 0]),
            "domain": pd.Categorical.from_codes(ev_dom, categories=[*domains, HOST]),
            "kind": pd.Categorical.from_codes(e[:, 2], categories=kinds),
            "pages": e[:, 3],
            "value": e[:, 4],
            "message": pd.Series(messages, dtype="string"),
        }
    )
