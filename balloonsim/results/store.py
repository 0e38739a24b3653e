"""Results on disk: one Parquet file per table, plus ``run.json``; written atomically.

Layout of ``results/<scenario>/``::

    timeline.parquet  events.parquet  host.parquet  targets.parquet  summary.parquet
    run.json          scenario name and sha256, seed, version, row counts, wall time,
                      the validated scenario itself, and the files balloonsim wrote
    *.png             the figures (written by the command line)

Each Parquet file carries the run's identity (scenario hash, seed, version)
in its schema metadata under the key ``balloonsim``.

A folder is a result when its ``run.json`` carries the key ``balloonsim_result``;
``result_files`` there lists the files balloonsim wrote, the only ones it ever
replaces or removes.  (A result of balloonsim 0.1.0, before the key, is known by
its scenario hash and version; it held only tables, run.json and figures.)  A
result is saved only into a folder that is absent, empty or an earlier result
(``force``: any folder, touching only balloonsim's files).  It is built in a
temporary folder beside the destination, with one writer at a time (a lock
file beside it), and swapped in when complete; SIGTERM while saving removes
what was begun.  ``balloonsim run`` opens that window (``saving``) before it
simulates and streams the tables into its folder, so saving them is the swap.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import signal
import stat
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from balloonsim.errors import BalloonsimError, UsageError
from balloonsim.filelock import try_lock
from balloonsim.results.result import TABLES, Result
from balloonsim.results.spool import METADATA_KEY as METADATA_KEY  # read by users of the store
from balloonsim.results.spool import Spool, identity_of, rewrite_identity, write_frame

TABLE_FILES = frozenset(f"{t}.parquet" for t in TABLES)
#: the tables of ``balloonsim compare`` (and its figure, compare.png)
COMPARISON_FILES = frozenset({"comparison.parquet", "comparison.csv", "compare.png"})
#: ``balloonsim baseline save`` writes one ``<scenario>.baseline.json`` per scenario
BASELINE_SUFFIX = ".baseline.json"
#: the figures a run draws, besides ``memory-<domain>.png`` (``plots.write_figures``)
FIGURES = ("timeline.png", "host.png", "gap_heatmap.png", "summary.png")
#: drawn besides those for a run with VM starts or a host manager (``plots.host_memory_figure``)
PLANNER_FIGURE = "host_memory.png"
#: run.json keys: the marker of a result folder (its format version) and the files balloonsim wrote
FORMAT_KEY = "balloonsim_result"
FORMAT_VERSION = 1
FILES_KEY = "result_files"
RUN_JSON = "run.json"
#: run.json keys of results written before the marker (balloonsim 0.1.0): all its files are balloonsim's kinds
EARLIER_RUN_KEYS = frozenset({"scenario_sha256", "balloonsim_version"})
#: signals that end a save early: they raise Interrupted, so its temporary files are removed
CAUGHT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class ResultError(UsageError):
    """A folder that cannot be read as a result, or cannot take one: the user's to fix."""


class NotAResult(ResultError, FileNotFoundError):
    """A folder without a balloonsim ``run.json`` or one of its tables."""


class ResultBusy(BalloonsimError):
    """Another writer holds the destination's lock."""


class SaveError(BalloonsimError):
    """Writing a result or its figures failed (disk full, permission): nothing was half-written."""


class Interrupted(KeyboardInterrupt):
    """A signal ended a save; what it had begun is removed.  Exit status 128 + ``signum``."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass(frozen=True)
class Destination:
    """Where a result goes, checked: its resolved ``path``; ``merge``: a forced write into a folder
    with files balloonsim did not write, so balloonsim's files are replaced one by one there;
    ``own``: balloonsim's files already in it."""

    path: Path
    merge: bool
    own: frozenset[str]


def check_destination(directory: str | Path, *, force: bool = False) -> Destination:
    """Refuse (ResultError, one line) a folder a result must not or cannot be written to."""
    shown = Path(directory)
    path = shown.resolve()
    cwd = Path.cwd().resolve()
    if path == cwd or path in cwd.parents:
        raise ResultError(
            f"{shown}: is the current directory or holds it, which cannot be replaced; "
            f"write into a folder of its own, e.g. {shown / 'results'}"
        )
    _check_writable(shown, path)
    if not path.exists():
        return Destination(path, merge=False, own=frozenset())
    try:
        entries = set(os.listdir(path))
    except OSError as err:
        raise ResultError(f"{shown}: cannot be read ({err.strerror}); choose another folder") from None
    own = frozenset(_own_files(path) & entries)
    others = entries - own
    if others and not force:
        raise ResultError(
            f"{shown}: holds files balloonsim did not write ({_some(others)}); write to a new folder, "
            "or use --force to replace only balloonsim's own files there"
        )
    if clash := {name for name in others if _may_write(name)}:  # even --force keeps a user's files
        raise ResultError(
            f"{shown}: holds {_some(clash)}, which balloonsim did not write but would write now; "
            "move them, or write to a new folder"
        )
    return Destination(path, merge=bool(others), own=own)


def _check_writable(shown: Path, path: Path) -> None:
    """``path`` is a folder or can be made one, and its parent (for the temporary folder) and itself can be written."""
    if path.exists() and not path.is_dir():
        raise ResultError(f"{shown}: is a file, not a folder; choose a folder for the results")
    if path.exists() and os.path.ismount(path):  # a mount point cannot be renamed, nor files moved onto it
        raise ResultError(f"{shown}: is a mount point; write into a folder inside it, e.g. {shown / 'results'}")
    place = path.parent
    while not place.exists():
        place = place.parent
    if not place.is_dir():
        raise ResultError(f"{shown}: {place} is a file, so no folder can be made under it; choose another folder")
    for folder in (place, path) if path.exists() else (place,):
        if not os.access(folder, os.W_OK | os.X_OK):
            why = "; a result is built beside its folder and swapped in" if folder != path else ""
            raise ResultError(
                f"{shown}: cannot write in {folder} (no permission, or read-only{why}); choose another folder"
            )


def _some(names: set[str], shown: int = 3) -> str:
    first = sorted(names)[:shown]
    more = len(names) - len(first)
    return ", ".join(first) + (f" and {more} more" if more else "")


def _own_files(directory: Path) -> set[str]:
    """The files run.json says balloonsim wrote, of the kinds it writes (never anything else)."""
    try:
        run = read_run_json(directory)
    except ResultError:
        return set()
    if FORMAT_KEY not in run:  # an earlier version's result: it wrote only files of its own kinds
        return {RUN_JSON} | {name for name in os.listdir(directory) if _is_own_kind(name)}
    listed = run.get(FILES_KEY)
    if not isinstance(listed, list):
        return {RUN_JSON}
    return {RUN_JSON} | {name for name in listed if isinstance(name, str) and _is_own_kind(name)}


def _is_own_kind(name: str) -> bool:
    own = name in TABLE_FILES or name in COMPARISON_FILES or name.endswith(BASELINE_SUFFIX)
    return "/" not in name and (own or name.endswith(".png"))


def _may_write(name: str) -> bool:
    """A name a save may write: a run's tables, run.json, its figures (``plots.write_figures``);
    a comparison's files; a baseline's."""
    figure = name in (*FIGURES, PLANNER_FIGURE) or name.startswith("memory-") and name.endswith(".png")
    others = name in COMPARISON_FILES or name.endswith(BASELINE_SUFFIX)
    return name == RUN_JSON or name in TABLE_FILES or figure or others


def save_result(
    result: Result,
    directory: str | Path,
    *,
    scenario: dict[str, Any] | None = None,
    extra: Callable[[Path], None] | None = None,
    force: bool = False,
    on_table: Callable[[str], None] | None = None,
) -> Path:
    """Write ``result`` to ``directory``, atomically: a reader sees the earlier result or this one.

    ``extra(tmpdir)`` may add files (figures) before the directory goes live; ``on_table(name)``
    is told after each table is written.  Raises ResultError if ``directory`` may not be written
    (see ``check_destination``), ResultBusy if another save holds it, SaveError if writing fails.
    """
    with saving(directory, force=force) as window:
        return window.save_result(result, scenario=scenario, extra=extra, on_table=on_table)


def save_folder(
    directory: str | Path, write: Callable[[Path], None], run: dict[str, Any], *, force: bool = False
) -> Path:
    """Save what ``write(tmpdir)`` writes, with ``run`` as its run.json, as ``save_result`` saves a
    result: the same refusals, one writer, swapped in whole (a comparison and a baseline use it)."""
    with saving(directory, force=force) as window:
        return window.save(write, run)


@contextmanager
def saving(directory: str | Path, *, force: bool = False) -> Iterator[Saving]:
    """Open a save into ``directory``: its lock, a temporary folder beside it (``Saving.folder``, where
    a run may stream its tables, so that saving them is a rename) and the signals that end a save.
    Whatever is not swapped in by ``Saving.save`` is removed however the block ends."""
    directory = Path(directory)
    check_destination(directory, force=force)
    try:
        directory.resolve().parent.mkdir(parents=True, exist_ok=True)
        with _saving(directory.resolve()) as (tmp, held):
            yield Saving(directory, tmp, held, force)
    except OSError as err:
        raise SaveError(f"cannot save the result to {directory}: {_reason(err)}") from err


@dataclass
class Saving:
    """An open save: the destination, its temporary folder, and ``held()`` for the swap."""

    directory: Path
    folder: Path
    held: Callable[[], AbstractContextManager[None]]
    force: bool

    def save(self, write: Callable[[Path], None], run: dict[str, Any]) -> Path:
        """``write(folder)``, run.json, then the swap (or the merge of a forced save)."""
        write(self.folder)
        _write_run_json(self.folder, run, os.listdir(self.folder))
        destination = check_destination(self.directory, force=self.force)  # again: it may have changed meanwhile
        with self.held():
            if destination.merge:
                _merge(self.folder, destination)
            else:
                _swap(self.folder, destination.path)
        return self.directory

    def save_result(
        self,
        result: Result,
        *,
        scenario: dict[str, Any] | None = None,
        extra: Callable[[Path], None] | None = None,
        on_table: Callable[[str], None] | None = None,
    ) -> Path:
        """Save ``result`` (``save_result``); a result streamed into this folder is then read from the
        destination."""
        run = dict(result.metadata)
        if scenario is not None:
            run["scenario_definition"] = scenario

        def write(tmp: Path) -> None:
            _write_tables(result, tmp, on_table)
            if extra is not None:
                extra(tmp)

        streamed_here = result.spool is not None and result.spool.folder == self.folder
        self.save(write, run)
        if streamed_here:
            result.spool = Spool(self.directory.resolve())
        return self.directory


def _write_tables(result: Result, tmp: Path, on_table: Callable[[str], None] | None) -> None:
    """Each table into ``tmp``: a file of the result's already there (a run streamed into it) is kept,
    one elsewhere is copied (a link would let a later change to the saved file reach the result),
    one held in memory only is written; each with the run's identity."""
    identity = identity_of(result.metadata)
    for name in TABLES:
        source, target = result.file(name), tmp / f"{name}.parquet"
        if source is None:
            write_frame(target, result.tables[name], identity)
        elif source != target:
            shutil.copyfile(source, target)
        rewrite_identity(target, identity)
        if on_table is not None:
            on_table(name)


def _write_run_json(tmp: Path, run: dict[str, Any], files: list[str]) -> None:
    """``tmp/run.json``: ``run`` with the marker of a result and the files balloonsim wrote."""
    run = {**run, FORMAT_KEY: FORMAT_VERSION, FILES_KEY: sorted({*files, RUN_JSON})}
    (tmp / RUN_JSON).write_text(json.dumps(run, indent=2, sort_keys=True) + "\n")


def _swap(tmp: Path, directory: Path) -> None:
    """Put ``tmp`` in the place of ``directory`` (absent, empty or an earlier result)."""
    old = None
    if directory.exists():
        old = _beside(directory, "old")
        os.rename(directory, old)
    try:
        os.rename(tmp, directory)
    except OSError:
        if old is not None:
            os.rename(old, directory)
        raise
    if old is not None:
        shutil.rmtree(old)


def _merge(tmp: Path, destination: Destination) -> None:
    """Replace balloonsim's files in a folder that has others, one by one, run.json last; remove
    the earlier run's files this one did not write.  The rest of the folder is not touched."""
    directory = destination.path
    if os.stat(tmp).st_dev != os.stat(directory).st_dev:  # before anything changes: files cannot move across
        raise OSError(errno.EXDEV, "the folder is on another file system than its parent", str(directory))
    (directory / RUN_JSON).unlink(missing_ok=True)  # not a result while its files change
    new = set(os.listdir(tmp))
    for name in sorted(new - {RUN_JSON}):
        os.replace(tmp / name, directory / name)
    for name in sorted(destination.own - new):
        (directory / name).unlink(missing_ok=True)
    os.replace(tmp / RUN_JSON, directory / RUN_JSON)


def save_figures(directory: str | Path, draw: Callable[[Path], list[str]]) -> list[str]:
    """Draw figures into ``directory``, each file replaced whole; a result's run.json then lists them
    (so a later run knows they are balloonsim's).  ``draw(tmpdir)`` returns the file names."""
    shown = Path(directory)
    path = shown.resolve()
    _check_writable(shown, path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with _saving(path) as (tmp, held):
            names = draw(tmp)
            run = result_run_json(path)
            if run is not None:
                _write_run_json(tmp, run, [*_own_files(path), *names])
            with held():
                for name in os.listdir(tmp):
                    os.replace(tmp / name, path / name)
    except OSError as err:
        raise SaveError(f"cannot write the figures to {shown}: {_reason(err)}") from err
    return names


def result_run_json(directory: Path) -> dict[str, Any] | None:
    """A result's run.json, or None where there is no result (or a damaged one)."""
    try:
        return read_run_json(directory)
    except ResultError:
        return None


def _reason(err: OSError) -> str:
    if err.strerror and err.filename:
        return f"{err.strerror} ({err.filename})"
    return err.strerror or str(err)


# -- the saving window: one writer, a temporary folder, signals -------------------------


@contextmanager
def _saving(directory: Path) -> Iterator[tuple[Path, Callable[[], AbstractContextManager[None]]]]:
    """Hold the folder's lock and a temporary folder beside it, and remove both however the block
    ends; yield the folder and ``held()``, for a swap that a signal must not cut short."""
    lock = tmp = None
    with _SavingSignals() as signals:
        try:
            with signals.held():
                lock = _lock(directory)
                tmp = _beside(directory, "tmp")
                os.mkdir(tmp)  # 0o777 less the umask, as any folder
                _keep_attributes(directory, tmp)
            yield tmp, signals.held
        finally:
            with signals.held():
                if tmp is not None:
                    shutil.rmtree(tmp, ignore_errors=True)
                if lock is not None:
                    _unlock(*lock)


class _SavingSignals:
    """While saving, SIGINT, SIGTERM and SIGHUP raise Interrupted, where their default handler would
    otherwise run (it kills the process, leaving its temporary files); inside ``held()`` they wait
    for its end.  Handlers run in the main thread only, so another thread's save keeps the defaults."""

    def __init__(self) -> None:
        self._previous: dict[int, Any] = {}
        self._holding = False
        self._pending: int | None = None

    def __enter__(self) -> _SavingSignals:
        if threading.current_thread() is threading.main_thread():
            for s in CAUGHT_SIGNALS:
                if signal.getsignal(s) in (signal.SIG_DFL, signal.default_int_handler):
                    self._previous[s] = signal.signal(s, self._caught)
        return self

    def __exit__(self, *_exc: object) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)

    def _caught(self, signum: int, _frame: Any) -> None:
        if not self._holding:
            raise Interrupted(signum)
        self._pending = self._pending or signum

    @contextmanager
    def held(self) -> Iterator[None]:
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
        if self._pending:
            signum, self._pending = self._pending, None
            raise Interrupted(signum)


def _keep_attributes(directory: Path, tmp: Path) -> None:
    """A folder that ``tmp`` will replace keeps its group and mode (a setgid project folder, say);
    set before any file is made in ``tmp``, so the files take the group too."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return
    with suppress(PermissionError):  # only its owner or root may give a folder another group
        os.chown(tmp, -1, st.st_gid)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))


def _beside(directory: Path, kind: str) -> Path:
    return directory.parent / f".{directory.name}.{kind}-{secrets.token_hex(4)}"


def _lock(directory: Path) -> tuple[int, Path]:
    """flock ``.NAME.lock`` beside the folder, or raise ResultBusy at once."""
    path = directory.parent / f".{directory.name}.lock"
    fd = try_lock(path)
    if fd is None:
        raise ResultBusy(
            f"{directory}: another balloonsim is writing there right now; this result was not saved "
            "(run again when it has finished, or choose another folder)"
        )
    return fd, path


def _unlock(fd: int, path: Path) -> None:
    path.unlink(missing_ok=True)  # before closing: whoever locks this file next sees it is gone
    os.close(fd)


# -- reading ----------------------------------------------------------------------------


def read_run_json(directory: str | Path) -> dict[str, Any]:
    """A result's run.json; NotAResult if there is none or balloonsim did not write it."""
    path = Path(directory) / RUN_JSON
    try:
        run = json.loads(path.read_text())
    except FileNotFoundError:
        raise NotAResult(f"{directory}: not a balloonsim result (no {RUN_JSON})") from None
    except NotADirectoryError:
        raise NotAResult(f"{directory}: not a balloonsim result (not a folder)") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultError(f"{path}: cannot be read ({getattr(err, 'strerror', None) or err})") from None
    except json.JSONDecodeError as err:
        raise ResultError(f"{path}: not valid JSON (line {err.lineno}: {err.msg}); the result is damaged") from None
    if not isinstance(run, dict) or not (FORMAT_KEY in run or EARLIER_RUN_KEYS <= run.keys()):
        raise NotAResult(f"{directory}: not a balloonsim result ({RUN_JSON} was not written by balloonsim)")
    return run


def load_result(directory: str | Path) -> Result:
    """Open a result directory written by ``save_result``: its tables are read when first asked for
    (``Result``); ResultError (NotAResult) names the file at fault."""
    directory = Path(directory)
    metadata = read_run_json(directory)
    for table in TABLES:
        _check_table(directory / f"{table}.parquet")
    return LoadedResult(metadata=metadata, spool=Spool(directory.resolve()))


def _check_table(path: Path) -> None:
    if not path.exists():
        raise NotAResult(f"{path.parent}: not a balloonsim result (missing {path.name})")
    try:
        pq.ParquetFile(path).close()
    except (OSError, ValueError, pa.ArrowException) as err:
        _damaged(path, err)


def _damaged(path: Path, err: Exception) -> NoReturn:
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    raise ResultError(f"{path}: not a readable Parquet file ({detail}); the result is damaged") from None


class LoadedResult(Result):
    """A saved result: a table that cannot be read when first asked for is a ResultError naming its file."""

    def _table(self, name: str) -> pd.DataFrame:
        try:
            return super()._table(name)
        except (OSError, ValueError, pa.ArrowException) as err:
            if isinstance(err, ResultError):
                raise
            _damaged(self._path(name), err)
