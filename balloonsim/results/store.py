"""Results on disk: one Parquet file per table, plus ``run.json``; written atomically.

Layout of ``results/<scenario>/``::

    timeline.parquet  events.parquet  host.parquet  targets.parquet  summary.parquet
    run.json          scenario name and sha256, seed, version, row counts, wall time,
                      and the validated scenario itself
    timeline.png      (written by the command line)

Each Parquet file carries the run's identity (scenario hash, seed, version)
in its schema metadata under the key ``balloonsim``.  The directory is built
under a temporary name and renamed into place, so an interrupted run leaves
no half-written result.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from balloonsim.results.result import Result

TABLES = ("timeline", "events", "host", "targets", "summary")
METADATA_KEY = b"balloonsim"
#: metadata that identifies a run (kept in every Parquet file; wall time is not)
IDENTITY = ("scenario", "scenario_sha256", "seed", "balloonsim_version")


def save_result(
    result: Result,
    directory: str | Path,
    *,
    scenario: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Write ``result`` to ``directory`` (replacing it), atomically.

    ``extra(tmpdir)`` may add files (figures) before the directory goes live.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        identity = json.dumps({k: result.metadata.get(k) for k in IDENTITY}, sort_keys=True).encode()
        for name, frame in result.tables.items():
            table = pa.Table.from_pandas(frame, preserve_index=False)
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), METADATA_KEY: identity})
            pq.write_table(table, tmp / f"{name}.parquet")
        run = dict(result.metadata)
        if scenario is not None:
            run["scenario_definition"] = scenario
        (tmp / "run.json").write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")
        if extra is not None:
            extra(tmp)
        old = None
        if directory.exists():
            old = directory.parent / f".{directory.name}.old-{os.getpid()}"
            directory.rename(old)
        tmp.rename(directory)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def load_result(directory: str | Path) -> Result:
    """Read a result directory written by ``save_result``."""
    directory = Path(directory)
    missing = [t for t in TABLES if not (directory / f"{t}.parquet").exists()]
    if missing:
        raise FileNotFoundError(f"{directory}: not a balloonsim result (missing {', '.join(missing)}.parquet)")
    frames = {t: pd.read_parquet(directory / f"{t}.parquet") for t in TABLES}
    metadata = json.loads((directory / "run.json").read_text()) if (directory / "run.json").exists() else {}
    return Result(**frames, metadata=metadata)
