"""The sweep's tidy table: one row per (point, seed, domain).

A worker turns each run into its rows (``run_rows``: the guest summary and, prefixed ``host_``,
the run's planner row; ``failed_rows`` for a run that failed); the coordinator adds the point's
settings and the seed (``sweep_table``).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from balloonsim.sweep.spec import is_number, quantity
from balloonsim.units import NS_PER_S

if TYPE_CHECKING:
    from balloonsim.results.result import Result
    from balloonsim.sweep.points import Point

#: planner columns the table has already (its own seed) or that name the base scenario
NOT_HOST = ("scenario", "seed")
HOST_PREFIX = "host_"


def run_rows(result: Result) -> pd.DataFrame:
    """A run's rows: its summary (one row per domain), each with the run's planner metrics (``host_...``)."""
    summary = result.summary.copy()
    summary["domain"] = summary["domain"].astype(str)
    planner = result.planner.drop(columns=list(NOT_HOST)).add_prefix(HOST_PREFIX)
    rows = summary.merge(planner, how="cross")
    rows["failed"] = False
    rows["error"] = pd.Series([None] * len(rows), dtype="string")
    return rows


def parquet_bytes(rows: pd.DataFrame) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.Table.from_pandas(rows, preserve_index=False), sink)
    return sink.getvalue().to_pybytes()


def failed_rows(message: str) -> pd.DataFrame:
    """A failed run's one row: no domain, its error."""
    return pd.DataFrame(
        {"domain": pd.Series([None], dtype="string"), "failed": [True], "error": pd.Series([message], dtype="string")}
    )


def setting_columns(points: list[Point], settings: list[str]) -> pd.DataFrame:
    """One row per point: its id, each setting's value as written (numbers stay numbers; text,
    and mappings as JSON, where the values are not all numbers) and, where every value is a size
    or a time, the same in MiB (``SETTING_mib``) or seconds (``SETTING_s``)."""
    columns: dict[str, Any] = {"point": [p.id for p in points]}
    for name in settings:
        values = [p.settings.get(name) for p in points]
        if all(is_number(v) for v in values):
            columns[name] = values
            continue
        columns[name] = pd.array([_text(v) for v in values], dtype="string")
        found = [quantity(v) for v in values]
        kinds = {f[0] if f else None for f in found}
        if kinds == {"size"}:
            columns[f"{name}_mib"] = [f[1] / (1 << 20) for f in found]
        elif kinds == {"time"}:
            columns[f"{name}_s"] = [f[1] / NS_PER_S for f in found]
    return pd.DataFrame(columns)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sweep_table(points: list[Point], settings: list[str], seeds: list[int], runs: list[pa.Table]) -> pd.DataFrame:
    """The table from every run's rows, ``runs`` in point, then seed order: one Arrow concatenation
    (a metric that is whole in one run and NaN in another becomes a float), one conversion."""
    rows = np.array([len(r) for r in runs])
    table = pa.concat_tables(runs, promote_options="permissive").to_pandas()
    point_index = np.repeat(np.arange(len(points)), len(seeds))
    seed_index = np.tile(np.arange(len(seeds)), len(points))
    table.insert(0, "point", np.repeat(np.array([p.id for p in points], dtype=object)[point_index], rows))
    table.insert(1, "seed_index", np.repeat(seed_index, rows))
    table.insert(2, "seed", np.repeat(np.array(seeds, dtype=np.int64)[seed_index], rows))
    values = setting_columns(points, settings)
    table = values.merge(table, on="point", how="right", sort=False)
    first = [*values.columns, "seed_index", "seed", "domain"]
    last = ["failed", "error"]
    return table[first + [c for c in table.columns if c not in first and c not in last] + last]
