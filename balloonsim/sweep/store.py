"""A sweep's folder (``results/sweeps/<name>/`` or ``--out``), written so it can be resumed::

    sweep.json                 the spec, its points (ids, settings, scenario sha256), the seeds,
                               balloonsim's version, and the files the sweep wrote
    runs/<point>-s<j>.parquet  one run's rows, each written whole (a temporary file, then a rename)
    table.parquet, table.csv   the tidy table, when every run is done
    spread.png, heatmap.png, cdf.png   the figures
    .sweep.lock                held while a sweep writes here: a second one is refused

A folder is a sweep's when its ``sweep.json`` carries the key ``balloonsim_sweep``.  Started
again with the same points and seeds it resumes (runs already on disk are kept); another spec
is refused unless ``force``, which removes only the sweep's own files.  A folder that is not a
sweep's is used only if empty, or with ``force`` when none of its files has a name the sweep
writes: a user's file is never replaced or removed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from balloonsim.errors import UsageError
from balloonsim.filelock import try_lock

SWEEP_JSON = "sweep.json"
MARKER = "balloonsim_sweep"
FORMAT_VERSION = 1
RUNS = "runs"
LOCK = ".sweep.lock"
TABLES = ("table.parquet", "table.csv")
FIGURES = ("spread.png", "heatmap.png", "cdf.png")
FILES_KEY = "files"
#: what identifies a sweep's runs: a folder with another value is another sweep
IDENTITY_KEYS = ("balloonsim_version", "points", "seeds")
_RUN_FILE = re.compile(r"^p[0-9]+-s[0-9]+\.parquet$")
_TEMPORARY = re.compile(r"^\.p[0-9]+-s[0-9]+\.[0-9a-f]+\.tmp$")


class SweepFolderError(UsageError):
    """A folder a sweep must not or cannot write to: one line, what to do."""


def run_file(point_id: str, seed_index: int) -> str:
    return f"{point_id}-s{seed_index}.parquet"


class SweepFolder:
    """An open sweep folder: locked (``close`` releases it), its record written."""

    def __init__(self, path: Path, record: dict[str, Any], *, force: bool = False):
        self.path = path
        self.runs = path / RUNS
        made = not path.exists()
        _check_place(path)
        try:
            path.mkdir(parents=True, exist_ok=True)
            self._lock = _lock(path)
        except OSError as err:
            raise SweepFolderError(f"{path}: cannot write there ({err.strerror}); choose another folder") from None
        try:
            self._prepare(record, force)
        except BaseException:
            self.close()
            if made:
                _remove_empty(path)
            raise

    def _prepare(self, record: dict[str, Any], force: bool) -> None:
        earlier = read_record(self.path)
        if earlier is None:
            _check_foreign(self.path, force)
        elif _identity(earlier) != _identity(record):
            if not force:
                raise SweepFolderError(
                    f"{self.path}: holds another sweep (other points, seeds, base scenario or balloonsim version); "
                    "choose another --out, or --force to replace that sweep's files"
                )
            self._remove_own(earlier)
        self.runs.mkdir(exist_ok=True)
        for name in os.listdir(self.runs):
            if _TEMPORARY.match(name):  # a run a killed sweep was writing: never complete
                (self.runs / name).unlink(missing_ok=True)
        same = earlier is not None and _identity(earlier) == _identity(record)
        self.record = {**record, MARKER: FORMAT_VERSION, FILES_KEY: earlier.get(FILES_KEY, []) if same else []}
        self._write_record()

    def _remove_own(self, earlier: dict[str, Any]) -> None:
        """Remove what the earlier sweep wrote: its run files, table, figures and record."""
        if self.runs.is_dir():
            for name in os.listdir(self.runs):
                if _RUN_FILE.match(name):
                    (self.runs / name).unlink()
        for name in earlier.get(FILES_KEY, []):
            if isinstance(name, str) and _is_own_name(name):
                (self.path / name).unlink(missing_ok=True)
        (self.path / SWEEP_JSON).unlink()

    def done(self) -> set[str]:
        """The run files on disk."""
        return {name for name in os.listdir(self.runs) if _RUN_FILE.match(name)}

    def write_run(self, name: str, parquet: bytes) -> None:
        """One run's rows (a Parquet file's bytes), whole or not at all."""
        atomic_write(self.runs / name, lambda tmp: tmp.write_bytes(parquet))

    def read_run(self, name: str) -> pa.Table:
        path = self.runs / name
        try:
            return pq.read_table(path)
        except (OSError, ValueError, pa.ArrowException) as err:
            raise SweepFolderError(
                f"{path}: not a readable run ({str(err).splitlines()[0] if str(err) else type(err).__name__}); "
                "remove it and start the sweep again to run it again"
            ) from None

    def write_outputs(self, table: pd.DataFrame, figures: Callable[[Path], list[str]] | None) -> list[str]:
        """The table (Parquet and CSV) and the figures (``figures(folder)`` draws them, each file whole)."""
        atomic_write(self.path / TABLES[0], lambda tmp: table.to_parquet(tmp, index=False))
        atomic_write(self.path / TABLES[1], lambda tmp: table.to_csv(tmp, index=False))
        names = list(TABLES)
        if figures is not None:
            names += figures(self.path)
        for name in set(self.record[FILES_KEY]) - set(names):  # an earlier figure not drawn this time
            if name in FIGURES:
                (self.path / name).unlink(missing_ok=True)
        self.record[FILES_KEY] = sorted(names)
        self._write_record()
        return names

    def _write_record(self) -> None:
        text = json.dumps(self.record, indent=2, sort_keys=True) + "\n"
        atomic_write(self.path / SWEEP_JSON, lambda tmp: Path(tmp).write_text(text))

    def close(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def atomic_write(path: Path, write: Callable[[Path], Any]) -> None:
    """``write(tmp)`` beside ``path``, then rename it into place: ``path`` is the old file or the new one."""
    tmp = path.parent / f".{path.stem}.{secrets.token_hex(4)}.tmp"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_record(path: Path) -> dict[str, Any] | None:
    """The folder's sweep record; None when it has none; SweepFolderError when it is damaged."""
    file = path / SWEEP_JSON
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise SweepFolderError(
            f"{file}: cannot be read as a sweep's record ({err}); move it, or choose another --out"
        ) from None
    if not isinstance(record, dict) or MARKER not in record:
        raise SweepFolderError(f"{file}: was not written by balloonsim sweep; move it, or choose another --out")
    return record


def _identity(record: dict[str, Any]) -> list[Any]:
    return [record.get(k) for k in IDENTITY_KEYS]


def _check_place(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise SweepFolderError(f"{path}: is a file, not a folder; choose a folder for the sweep")
    cwd = Path.cwd().resolve()
    if path.resolve() == cwd or path.resolve() in cwd.parents:
        raise SweepFolderError(f"{path}: is the current directory or holds it; write into a folder of its own")


def _check_foreign(path: Path, force: bool) -> None:
    """A folder without a sweep record: empty, or (``force``) without anything of the sweep's names."""
    others = sorted(set(os.listdir(path)) - {LOCK})
    if not others:
        return
    if not force:
        raise SweepFolderError(
            f"{path}: holds files a sweep did not write ({', '.join(others[:3])}{' ...' if len(others) > 3 else ''}); "
            "choose a new folder, or --force to add the sweep's files beside them"
        )
    if clash := [name for name in others if name in (RUNS, SWEEP_JSON, *TABLES, *FIGURES)]:
        raise SweepFolderError(
            f"{path}: holds {', '.join(clash[:3])}, which the sweep would write but did not; "
            "move them, or choose a new folder"
        )


def _is_own_name(name: str) -> bool:
    return name in TABLES or name in FIGURES


def _lock(path: Path) -> int:
    fd = try_lock(path / LOCK)
    if fd is None:
        raise SweepFolderError(
            f"{path}: another balloonsim sweep is writing there right now; "
            "wait for it to finish, or choose another --out"
        )
    return fd


def _remove_empty(path: Path) -> None:
    (path / LOCK).unlink(missing_ok=True)
    try:
        path.rmdir()
    except OSError:
        pass
