"""Running a sweep: the same table on every executor and after a resume, the folder's rules, the figures.

The base scenario is tiny (costs off, 20 s): a guest with random bursts (so seeds matter) and a
VM start that fits the host or not by the overcommit ratio.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import pytest

from balloonsim.cli import main
from balloonsim.errors import SimulationError
from balloonsim.sweep import executors
from balloonsim.sweep.run import run_sweep
from balloonsim.sweep.store import LOCK

BASE = """\
name: tiny
duration: 20s
host: {total: 4GiB}
domains:
  - name: a
    memory: 1GiB
    dynamic_min: 512MiB
    costs: none
    kernel: {used_at_boot: 128MiB}
    workloads: [{name: w, bursts: {every: 4s, length: 2s, anon: [64MiB, 512MiB]}}]
  - {name: b, memory: 1GiB, start: 5s, costs: none, kernel: {used_at_boot: 128MiB}}
events:
  - {at: 2s, domain: a, mem_set: 768MiB}
"""

# Σ static-max 2 GiB: ratio 0.9 gives 2.22 GiB, b's 1 GiB fits beside a; 1.5 gives 1.33 GiB, it does not
SPEC = """\
name: tiny
scenario: base.yaml
seeds: 2
grid:
  overcommit: [0.9, 1.5]
  host.manager.kind: [none, squeezed]
"""
RUNS = 8  # 2 x 2 points x 2 seeds


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    (tmp_path / "base.yaml").write_text(BASE)
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC)
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> pd.DataFrame:
    """The table of an uninterrupted serial sweep."""
    folder = tmp_path_factory.mktemp("reference")
    (folder / "base.yaml").write_text(BASE)
    (folder / "spec.yaml").write_text(SPEC)
    return run_sweep(folder / "spec.yaml", out=folder / "out", serial=True, figures=False).table


def test_the_table_has_a_row_per_point_seed_and_guest_with_settings_seeds_and_host_metrics(reference):
    t = reference
    assert len(t) == RUNS * 2  # both guests have a row, also b when its start failed (ran = false)
    assert list(t.columns[:6]) == ["point", "overcommit", "host.manager.kind", "seed_index", "seed", "domain"]
    assert list(t.columns[-2:]) == ["failed", "error"] and not t["failed"].any()
    # common random numbers: seed index j has the same seed at every point
    assert t.groupby("seed_index")["seed"].nunique().eq(1).all() and t["seed"].nunique() == 2
    # the overcommit worked out by hand: b fits at 0.9 (2.22 GiB host), not at 1.5 (1.33 GiB)
    by_ratio = t.groupby("overcommit")["host_start_success_rate"].agg(["min", "max"])
    assert by_ratio.loc[0.9].tolist() == [1.0, 1.0] and by_ratio.loc[1.5].tolist() == [0.0, 0.0]
    assert set(t.loc[t["domain"] == "b", "ran"]) == {True, False}
    # the bursts differ between seeds: a's minimum MemAvailable is not the same for both
    a = t[(t["domain"] == "a") & (t["point"] == "p000")]
    assert a["min_mem_available"].nunique() > 1


def test_the_table_is_the_same_on_a_process_pool_and_on_a_dask_local_cluster(spec, tmp_path, reference):
    pool = run_sweep(spec, out=tmp_path / "pool", workers=2, figures=False).table
    pd.testing.assert_frame_equal(pool, reference)
    pytest.importorskip("distributed")
    dask = run_sweep(spec, out=tmp_path / "dask", dask_local=2, figures=False).table
    pd.testing.assert_frame_equal(dask, reference)


def test_the_seeds_do_not_depend_on_the_order_runs_are_done_in(spec, tmp_path, reference, monkeypatch):
    serial = executors.serial

    def backwards(runs, keys):
        return serial(runs, keys[::-1])

    monkeypatch.setattr(executors, "serial", backwards)
    table = run_sweep(spec, out=tmp_path / "backwards", serial=True, figures=False).table
    pd.testing.assert_frame_equal(table, reference)


def test_an_interrupted_sweep_resumes_with_only_the_missing_runs(spec, tmp_path, reference):
    out = tmp_path / "out"
    written: list[str] = []

    def stop_after_three(name: str) -> None:
        written.append(name)
        if len(written) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out=out, workers=2, figures=False, on_run=stop_after_three)
    on_disk = sorted(os.listdir(out / "runs"))
    assert on_disk == sorted(written) and len(on_disk) == 3  # no temporary file, no half run
    assert not (out / "table.parquet").exists()

    again: list[str] = []
    done = run_sweep(spec, out=out, serial=True, figures=False, on_run=again.append)
    assert len(again) == RUNS - 3 and not set(again) & set(written)
    assert (done.runs, done.skipped) == (RUNS, 3)
    pd.testing.assert_frame_equal(done.table, reference)


def test_sigterm_stops_a_sweep_leaving_complete_runs_and_a_restart_finishes_it(spec, tmp_path, reference):
    # slower runs (a long burst of events), so the signal comes while some are still to do
    (tmp_path / "base.yaml").write_text(BASE.replace("duration: 20s", "duration: 2000s"))
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    command = [sys.executable, "-m", "balloonsim", "sweep", str(spec), "--out", str(out), "--workers", "2"]
    proc = subprocess.Popen([*command, "--no-figures"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list((out / "runs").glob("*.parquet"))) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err
    kept = sorted(os.listdir(out / "runs"))
    assert 2 <= len(kept) < RUNS and all(name.endswith(".parquet") for name in kept)
    for name in kept:  # each complete
        assert len(pd.read_parquet(out / "runs" / name)) == 2
    done = subprocess.run([*command, "--no-figures"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{RUNS} runs ({len(kept)} already on disk)" in done.stdout


def test_a_worker_killed_ends_the_sweep_with_one_line_and_keeps_what_was_written(spec, tmp_path, capsys, monkeypatch):
    real = executors.Runs.run

    def killed_at_the_third_point(self, point, seed_index):
        if point == 2:  # the kernel's OOM killer sends SIGKILL
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, point, seed_index)

    monkeypatch.setattr(executors.Runs, "run", killed_at_the_third_point)  # the forked workers have it too
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--workers", "2", "--no-figures"]) == 1
    err = capsys.readouterr().err
    assert err == (
        "balloonsim: a worker process was killed by signal 9 (the OOM killer's is 9) before its runs were done; "
        "the runs written are kept: start the sweep again to do the others\n"
    )
    kept = os.listdir(tmp_path / "out" / "runs")
    assert all(name.endswith(".parquet") and not name.startswith("p002") for name in kept)


def test_a_failing_run_is_a_row_with_its_error_not_a_failed_sweep(spec, tmp_path, monkeypatch):
    real = executors.Simulation

    class FailsAtSqueezed(real):
        def run(self, progress=None):
            if self.scenario.host.manager is not None and self.scenario.host.manager.kind == "squeezed":
                raise SimulationError("step 7: pages not conserved")
            return super().run(progress=progress)

    monkeypatch.setattr(executors, "Simulation", FailsAtSqueezed)
    done = run_sweep(spec, out=tmp_path / "out", serial=True, figures=False)
    failed = done.table[done.table["failed"]]
    assert sorted(failed["point"].unique()) == ["p001", "p003"] and len(failed) == 4  # one row per failed run
    assert set(failed["error"]) == {"step 7: pages not conserved"} and failed["domain"].isna().all()
    assert done.failed == 4 and len(done.table) == 4 * 2 + 4  # the 4 runs that did not fail: 2 guests each


def test_runs_streamed_to_disk_leave_no_temporary_folder(spec, tmp_path, monkeypatch):
    # a run longer than a row group streams its tables to a temporary folder; the sweep keeps only its
    # summary rows, so each run's folder is removed as soon as they are read (groups of 3 rows here)
    real = executors.Simulation
    monkeypatch.setattr(executors, "Simulation", lambda *a, **kw: real(*a, **kw, row_group=3))
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    done = run_sweep(spec, out=tmp_path / "out", serial=True, figures=False)
    assert done.failed == 0 and len(done.table) == 8 * 2
    assert sorted(p.name for p in temporary.iterdir()) == []


def test_another_spec_in_the_same_folder_is_refused_unless_forced(spec, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures"]) == 0
    (out / "notes.txt").write_text("mine")
    spec.write_text(SPEC.replace("seeds: 2", "seeds: 1"))
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds another sweep" in err and "--force" in err
    assert len(os.listdir(out / "runs")) == RUNS  # untouched
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures", "--force"]) == 0
    assert len(os.listdir(out / "runs")) == 4  # the earlier sweep's 8 removed, 2 x 2 x 1 written
    assert (out / "notes.txt").read_text() == "mine"


def test_a_folder_that_is_not_a_sweeps_is_refused_and_force_never_replaces_a_users_file(spec, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures"]) == 2
    assert "holds files a sweep did not write (notes.txt)" in capsys.readouterr().err
    (out / "table.csv").write_text("my table")
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures", "--force"]) == 2
    assert "holds table.csv, which the sweep would write but did not" in capsys.readouterr().err
    (out / "table.csv").unlink()
    assert main(["sweep", str(spec), "--out", str(out), "--serial", "--no-figures", "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine" and (out / "table.csv").exists()


def test_a_second_sweep_on_a_folder_being_written_is_refused(spec, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # as a running sweep holds it
    try:
        assert main(["sweep", str(spec), "--out", str(out), "--serial"]) == 2
    finally:
        os.close(fd)
    assert "another balloonsim sweep is writing there right now" in capsys.readouterr().err
    assert not (out / "runs").exists()


def test_the_figures_are_written_and_say_what_they_show(spec, tmp_path):
    done = run_sweep(spec, out=tmp_path / "out", serial=True)
    assert done.figures == ["spread.png", "heatmap.png", "cdf.png"]
    for name in done.figures:
        assert (tmp_path / "out" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from balloonsim.sweep.figures import cdf_figure, heatmap_figure, per_run, spread_figure

    runs = per_run(done.table, "host_start_success_rate", "mean")
    spread = spread_figure(done.table, runs, "host_start_success_rate", "overcommit", "host.manager.kind").axes[0]
    title = spread.get_title(loc="left").replace("\n", " ")
    assert "against overcommit" in title and "10-90 %" in title
    assert spread.get_ylabel() == "host_start_success_rate (share, 0-1)"
    assert spread.get_xlabel() == "overcommit (Σ static-max / host total)"
    assert [t.get_text() for t in spread.get_legend().get_texts()] == ["none", "squeezed"]
    # the median of each line: 1 at 0.9, 0 at 1.5 (worked out above)
    assert [list(line.get_ydata()) for line in spread.get_lines()] == [[1.0, 0.0], [1.0, 0.0]]
    heat = heatmap_figure(done.table, runs, "host_start_success_rate", "overcommit", "host.manager.kind").axes[0]
    assert sorted(t.get_text() for t in heat.texts) == ["0", "0", "1", "1"]
    cdf = cdf_figure(done.table, runs, "unmet_demand_mib_s", "overcommit").axes[0]
    assert cdf.get_title(loc="left").startswith("CDF of unmet_demand_mib_s across seeds")


def test_a_metric_the_table_lacks_is_refused_at_its_line_and_the_runs_are_kept(spec, tmp_path, capsys):
    spec.write_text(SPEC + "figures:\n  metric: nonsense\n")
    assert main(["sweep", str(spec), "--out", str(tmp_path / "out"), "--serial"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{spec}:8: figures.metric: 'nonsense' is not a numeric column of the table; ")
    assert err.count("\n") == 1 and len(os.listdir(tmp_path / "out" / "runs")) == RUNS


def test_a_single_setting_gives_no_heat_map(spec, tmp_path):
    spec.write_text("name: one\nscenario: base.yaml\ngrid: {overcommit: [0.9, 1.5]}\nfigures: {metric: oom_kills}\n")
    assert run_sweep(spec, out=tmp_path / "out", serial=True).figures == ["spread.png", "cdf.png"]


def test_sizes_in_the_grid_get_a_mib_column_and_the_api_takes_a_dict(tmp_path):
    (tmp_path / "base.yaml").write_text(BASE)
    spec = {"name": "sizes", "scenario": "base.yaml", "grid": {"host.total": ["3GiB", "4096MiB"]}}
    import balloonsim

    table = balloonsim.sweep(spec, out=tmp_path / "out", serial=True, figures=False, base_dir=tmp_path)
    assert table["host.total"].drop_duplicates().tolist() == ["3GiB", "4096MiB"]
    assert table["host.total_mib"].drop_duplicates().tolist() == [3072.0, 4096.0]
