"""A sweep from start to end: read the spec, build and check every point's scenario before anything
runs, do the runs not yet on disk on an executor, write each as it comes, then the table and the
figures.  SIGTERM and SIGHUP end it as Ctrl-C does (``results.store.Interrupted``): the run files
written stay, each complete, and starting the sweep again does only the others."""

from __future__ import annotations

import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from balloonsim import __version__
from balloonsim.errors import ScenarioError, ScenarioWarning
from balloonsim.results.store import Interrupted
from balloonsim.scenario import load_scenario
from balloonsim.scenario.model import Scenario
from balloonsim.sweep import executors
from balloonsim.sweep.derived import point_scenario
from balloonsim.sweep.points import Point, expand, run_seeds
from balloonsim.sweep.spec import LoadedSpec, load_spec
from balloonsim.sweep.store import SweepFolder, run_file
from balloonsim.sweep.table import sweep_table

DEFAULT_ROOT = Path("results") / "sweeps"


@dataclass
class Plan:
    """A checked sweep: its spec, base scenario, points (with their scenarios' hashes) and seeds."""

    loaded: LoadedSpec
    base: Scenario
    points: list[Point]
    digests: list[str]
    seeds: list[int]

    @property
    def name(self) -> str:
        return self.loaded.spec.name

    def record(self) -> dict[str, Any]:
        """What sweep.json keeps: the spec, the points, the seeds, the version."""
        spec = self.loaded.spec
        return {
            "name": spec.name,
            "spec": spec.model_dump(mode="json"),
            "spec_file": self.loaded.label,
            "scenario_sha256": self.base.digest(),
            "balloonsim_version": __version__,
            "seeds": self.seeds,
            "points": [
                {"id": p.id, "settings": p.settings, "scenario_sha256": d}
                for p, d in zip(self.points, self.digests, strict=True)
            ],
        }


def plan(source: str | Path | dict[str, Any], base_dir: Path | None = None) -> Plan:
    """Read the spec and check every point's scenario: ScenarioError with every bad point, one line each."""
    loaded = load_spec(source, base_dir)
    spec = loaded.spec
    base = load_scenario(loaded.scenario_path)
    points = expand(spec)
    problems: list[str] = []
    digests: list[str] = []
    seen: dict[str, None] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScenarioWarning)
        for p in points:
            try:
                scenario = point_scenario(base, p.settings, "", scale_host=spec.scale_host)
            except ScenarioError as err:
                problems += [_point_problem(loaded, p, line.strip()) for line in err.problems]
                continue
            digests.append(scenario.digest())
    for w in caught:  # each warning once, not once per point
        if str(w.message) not in seen:
            seen[str(w.message)] = None
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if problems:
        raise ScenarioError(problems)
    return Plan(loaded, base, points, digests, run_seeds(spec.seed, spec.seeds))


def _point_problem(loaded: LoadedSpec, point: Point, problem: str) -> str:
    """``spec:line: grid.SETTING: point p003 (settings): problem``, at the setting the problem is about."""
    path = problem.split(":", 1)[0]
    settings = loaded.spec.settings
    about = next((s for s in settings if path == s or path.startswith(s + ".") or s.startswith(path + ".")), None)
    about = about or next((s for s in settings if s in point.settings), None)
    where = loaded.where(loaded.setting_loc(about)) if about else loaded.where(("scenario",))
    values = ", ".join(f"{k}={v}" for k, v in point.settings.items())
    return f"{where}: point {point.id} ({values}): {problem}"


@dataclass
class SweepOutcome:
    """What a sweep did: its table, folder, runs (``skipped``: already on disk), failures, wall time, figures."""

    table: pd.DataFrame
    folder: Path
    runs: int
    skipped: int
    failed: int
    wall_s: float
    figures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def run_sweep(
    source: str | Path | dict[str, Any],
    *,
    out: str | Path | None = None,
    workers: int | None = None,
    serial: bool = False,
    cluster: str | None = None,
    dask_local: int | None = None,
    force: bool = False,
    figures: bool = True,
    progress: bool | None = None,
    base_dir: str | Path | None = None,
    on_run: Callable[[str], None] | None = None,
) -> SweepOutcome:
    """Run a sweep (``balloonsim sweep``); ``on_run(file)`` is told after each run file is written."""
    started = time.perf_counter()
    checked = plan(source, Path(base_dir) if base_dir is not None else None)
    if cluster is not None:
        executors.check_address(cluster)  # before the sweep's folder is made
    folder = SweepFolder(Path(out) if out is not None else DEFAULT_ROOT / checked.name, checked.record(), force=force)
    try:
        keys = [(i, j) for i in range(len(checked.points)) for j in range(len(checked.seeds))]
        on_disk = folder.done()
        todo = [(i, j) for i, j in keys if run_file(checked.points[i].id, j) not in on_disk]
        runs = executors.Runs(
            checked.base, [p.settings for p in checked.points], checked.seeds, checked.loaded.spec.scale_host
        )
        with _signals_interrupt():
            batches = _executor(runs, todo, workers, serial, cluster, dask_local)
            shown = sys.stderr.isatty() if progress is None else progress
            bar = tqdm(total=len(keys), initial=len(keys) - len(todo), unit="run", desc=checked.name, disable=not shown)
            with closing(batches), bar:
                for outcomes in batches:
                    for i, j, rows in outcomes:
                        name = run_file(checked.points[i].id, j)
                        folder.write_run(name, rows)
                        bar.update(1)
                        if on_run is not None:
                            on_run(name)
            table = _table(checked, folder)
            drawn = folder.write_outputs(table, _drawer(checked, table) if figures else None)
    finally:
        folder.close()
    failed = table.drop_duplicates(["point", "seed_index"])
    failed = failed[failed["failed"].astype(bool)]
    return SweepOutcome(
        table,
        folder.path,
        len(keys),
        len(keys) - len(todo),
        len(failed),
        time.perf_counter() - started,
        [n for n in drawn if n.endswith(".png")],
        [f"{r.point} seed {r.seed_index}: {r.error}" for r in failed.itertuples()],
    )


def _executor(
    runs: executors.Runs,
    todo: list[tuple[int, int]],
    workers: int | None,
    serial: bool,
    cluster: str | None,
    dask_local: int | None,
) -> Iterator[list[executors.Outcome]]:
    if not todo:  # every run on disk: no pool or cluster to start
        return executors.serial(runs, todo)
    if cluster is not None or dask_local is not None:
        return executors.dask(runs, todo, address=cluster, local=dask_local)
    workers = workers or executors.all_cores()
    if serial or workers == 1 or len(todo) <= 1:
        return executors.serial(runs, todo)
    return executors.process_pool(runs, todo, min(workers, len(todo)))


def _table(checked: Plan, folder: SweepFolder) -> pd.DataFrame:
    runs = [folder.read_run(run_file(p.id, j)) for p in checked.points for j in range(len(checked.seeds))]
    return sweep_table(checked.points, checked.loaded.spec.settings, checked.seeds, runs)


def _drawer(checked: Plan, table: pd.DataFrame) -> Callable[[Path], list[str]]:
    def draw(where: Path) -> list[str]:
        from balloonsim.sweep.figures import write_figures

        try:
            return write_figures(table, checked.loaded.spec, where)
        except ScenarioError as err:  # a metric the table lacks: say where the spec names it
            at = checked.loaded.where(("figures", "metric"))
            raise ScenarioError([at + p.removeprefix("figures.metric") for p in err.problems]) from None

    return draw


@contextmanager
def _signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Interrupted (as Ctrl-C raises KeyboardInterrupt), so the sweep stops
    between two writes: in the main thread, where their handlers are still the defaults."""
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGHUP):
            if signal.getsignal(s) == signal.SIG_DFL:
                previous[s] = signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _raise(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)
