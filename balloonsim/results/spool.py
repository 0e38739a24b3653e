"""A run's tables as Parquet files in a folder, written a row group at a time and read back in parts.

The recorder hands each table's rows here as they fill a row group (``TableFile.append``),
so a run holds one group per table in memory however long it is.  Category columns
(``domain``, ``cause``, ``kind``, ``state``) are Parquet dictionaries; names a run meets
later (a new cause) grow the dictionary of later groups, so the final names, in order of
first use, are kept in the file's footer (``CATEGORIES_KEY``) and ``read_frame`` gives
every category column those exact categories.  Each file carries the run's identity in
its schema metadata (``METADATA_KEY``), as ``store`` has always written it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

METADATA_KEY = b"balloonsim"
#: footer key: {column: [category names]} of the file's category columns
CATEGORIES_KEY = b"balloonsim_categories"
#: the run's identity (every Parquet file's schema metadata carries it)
IDENTITY = ("scenario", "scenario_sha256", "seed", "balloonsim_version")


def identity_of(metadata: dict[str, Any]) -> bytes:
    return json.dumps({k: metadata.get(k) for k in IDENTITY}, sort_keys=True).encode()


def arrow_table(frame: pd.DataFrame, identity: bytes) -> pa.Table:
    """``frame`` as an Arrow table with pandas' metadata and the run's identity; dictionaries indexed
    by int32 whatever their size, so every row group of a file has one schema."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    fields = [pa.field(f.name, _dictionary(f.type)) if pa.types.is_dictionary(f.type) else f for f in table.schema]
    schema = pa.schema(fields, metadata={**(table.schema.metadata or {}), METADATA_KEY: identity})
    return table.cast(schema)


def _dictionary(kind: pa.DictionaryType) -> pa.DictionaryType:
    """int32 indices; strings even with no categories yet (pandas gives those a null type)."""
    return pa.dictionary(pa.int32(), pa.large_string() if pa.types.is_null(kind.value_type) else kind.value_type)


class TableFile:
    """One table's Parquet file, one row group per ``append``; its writer opens at the first."""

    def __init__(self, path: Path):
        self.path = path
        self.groups = 0
        self._writer: pq.ParquetWriter | None = None

    def append(self, frame: pd.DataFrame, identity: bytes) -> None:
        table = arrow_table(frame, identity)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, table.schema)
        self._writer.write_table(table, row_group_size=max(1, len(frame)))
        self.groups += 1

    def close(self, categories: dict[str, Sequence[str]]) -> None:
        """Close the file, its footer naming each category column's final categories."""
        assert self._writer is not None, "close() after at least one append()"
        self._writer.add_key_value_metadata({CATEGORIES_KEY: json.dumps(categories).encode()})
        self._writer.close()

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def categories_of(file: pq.ParquetFile) -> dict[str, list[str]]:
    footer = file.metadata.metadata or {}
    return json.loads(footer[CATEGORIES_KEY]) if CATEGORIES_KEY in footer else {}


def with_categories(frame: pd.DataFrame, categories: dict[str, list[str]]) -> pd.DataFrame:
    """Each category column with the run's final names, in their order."""
    for name, names in categories.items():
        if name in frame.columns:
            frame[name] = frame[name].astype(pd.CategoricalDtype(names))
    return frame


def read_frame(path: Path, columns: Sequence[str] | None = None, filters: Any = None) -> pd.DataFrame:
    """A table (or its ``columns``, its rows that pass ``filters``), with its category columns restored."""
    file = pq.ParquetFile(path)
    frame = pd.read_parquet(path, columns=list(columns) if columns is not None else None, filters=filters)
    return with_categories(frame, categories_of(file))


def row_groups(path: Path, columns: Sequence[str] | None = None) -> Iterator[pd.DataFrame]:
    """The table's ``columns`` (all by default), one row group at a time, in order."""
    file = pq.ParquetFile(path)
    categories = categories_of(file)
    for i in range(file.num_row_groups):
        group = file.read_row_group(i, columns=None if columns is None else list(columns))
        yield with_categories(group.to_pandas(), categories)


def rewrite_identity(path: Path, identity: bytes) -> None:
    """Give the file another identity (a result whose metadata changed after its run), a row group at a time."""
    file = pq.ParquetFile(path)
    if file.schema_arrow.metadata.get(METADATA_KEY) == identity:
        return
    schema = file.schema_arrow.with_metadata({**file.schema_arrow.metadata, METADATA_KEY: identity})
    footer = (file.metadata.metadata or {}).get(CATEGORIES_KEY)
    tmp = path.with_name(path.name + ".new")
    with pq.ParquetWriter(tmp, schema) as writer:
        for i in range(file.num_row_groups):
            writer.write_table(file.read_row_group(i).cast(schema))
        if footer is not None:
            writer.add_key_value_metadata({CATEGORIES_KEY: footer})
    tmp.replace(path)


class Spool:
    """The folder a run's Parquet files are written to: one given (the store's temporary folder
    beside a destination, which the store removes or swaps in), or a temporary folder of its own,
    removed by ``remove()`` or when the last object holding this one is collected."""

    def __init__(self, folder: Path | None = None):
        self.owned = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="balloonsim-")) if folder is None else folder
        self._remove = weakref.finalize(self, shutil.rmtree, self.folder, True) if self.owned else None

    def path(self, table: str) -> Path:
        return self.folder / f"{table}.parquet"

    def remove(self) -> None:
        """Remove a temporary folder of its own (a given one is the store's to remove)."""
        if self._remove is not None:
            self._remove()


def write_frame(path: Path, frame: pd.DataFrame, identity: bytes) -> None:
    """A whole table (a small one: targets, summary) as one Parquet file of one row group."""
    file = TableFile(path)
    file.append(frame, identity)
    file.close({})  # one group: its dictionaries are the frame's categories
