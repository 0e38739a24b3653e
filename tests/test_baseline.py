"""balloonsim baseline save / check: metrics kept, checked again, tolerances, exit statuses.

The scenario is test_compare's RETRY (its docstring derives the numbers): with the v5.12
driver, max_retry_count 4, guest g is asked for 1 GiB at 10 s, fails twice (EAGAIN, back-off
2 s then 4 s) and gets it at 16 s.  The "kernel change" below is a driver whose
update_schedule() always cancels past one failing pass (max_retry_count 1): g cancels at 10 s
and never gets its memory.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from balloonsim.baseline import Tolerance, parse_tolerance
from balloonsim.cli import main
from balloonsim.errors import UsageError
from balloonsim.kernel.balloon import BalloonDriver
from balloonsim.registry import DRIVERS
from conftest import RETRY, GiB, MiB


class OneRetryDriver(BalloonDriver):
    """v5.12 with the retry cap forced to 1: a change someone might make to the driver."""

    def update_schedule(self, state):
        self.balloon_stats.max_retry_count = 1
        return super().update_schedule(state)


@pytest.fixture
def saved(tmp_path: Path, capsys) -> tuple[Path, Path]:
    scenario = tmp_path / "scenarios" / "retry.yaml"
    scenario.parent.mkdir()
    scenario.write_text(RETRY)
    base = tmp_path / "ci" / "baseline"
    assert main(["baseline", "save", str(base), str(scenario)]) == 0
    assert capsys.readouterr().out == f"saved the metrics of 1 scenario(s) to {base}/\n"
    return base, scenario


def test_save_writes_one_small_file_per_scenario(saved):
    base, _ = saved
    assert sorted(p.name for p in base.iterdir()) == ["retry.baseline.json", "run.json"]
    content = json.loads((base / "retry.baseline.json").read_text())
    assert content["path"] == "../../scenarios/retry.yaml"  # relative to the baseline's folder
    assert content["seed"] == 0 and len(content["scenario_sha256"]) == 64
    g = content["metrics"]["g"]
    # derived in test_compare: reached 6 s after the 10 s request, 6 s of back-off, 2 EAGAIN passes
    assert (g["time_to_target"], g["backoff_seconds"], g["eagain_passes"], g["cancellations"]) == (6, 6, 2, 0)
    assert g["final_pages"] == GiB
    assert content["metrics"]["(host)"] == {"host_free_min": 0, "host_free_end": 512 * MiB}


def test_check_passes_when_nothing_moved(saved, capsys, monkeypatch, tmp_path):
    base, _ = saved
    monkeypatch.chdir(tmp_path / "scenarios")  # the scenario is found from the baseline, wherever we are
    assert main(["baseline", "check", str(base)]) == 0
    assert capsys.readouterr().out == "retry (seed 0): all 13 metrics within tolerance\n"


def test_a_driver_change_that_moves_metrics_exits_1_naming_each(saved, capsys, monkeypatch):
    base, _ = saved
    monkeypatch.setitem(DRIVERS._entries, "v5.12", OneRetryDriver)
    assert main(["baseline", "check", str(base)]) == 1
    assert capsys.readouterr().out.splitlines() == [
        "retry (seed 0): 6 of 13 metrics moved",
        "  retry: g: time_to_target: 6 s -> never (tolerance ±5%)",
        "  retry: g: final_pages: 1024 MiB -> 512 MiB (tolerance ±1%)",
        "  retry: g: backoff_seconds: 6 s -> 0 s (tolerance ±5%)",
        "  retry: g: eagain_passes: 2 -> 0 (tolerance exact)",
        "  retry: g: cancellations: 0 -> 1 (tolerance exact)",
        "  retry: (host): host_free_end: 512 MiB -> 1024 MiB (tolerance ±1%)",
        "",
        f"1 of 1 scenario(s) moved beyond tolerance; if intended, save the baseline again "
        f"(balloonsim baseline save {base} SCENARIOS...)",
    ]


def test_a_tolerance_given_lets_a_metric_move_that_far(saved, capsys, monkeypatch):
    base, _ = saved
    monkeypatch.setitem(DRIVERS._entries, "v5.12", OneRetryDriver)
    tolerances = ["cancellations=1", "eagain_passes=2", "backoff_seconds=6s", "final_pages=512MiB"]
    args = ["baseline", "check", str(base), *(f"--tolerance={t}" for t in tolerances)]
    assert main([*args, "--tolerance", "host_free_end=100%"]) == 1  # time_to_target: 6 s -> never, still
    moved = [line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert moved == ["  retry: g: time_to_target: 6 s -> never (tolerance ±5%)"]


def test_tolerances_relative_absolute_and_for_ever():
    five = Tolerance(relative=0.05)
    assert five.allows(6.0, 6.3) and five.allows(6.0, 5.7) and not five.allows(6.0, 6.31)  # 5 % of 6 = 0.3
    assert five.allows(math.inf, math.inf) and not five.allows(6.0, math.inf) and not five.allows(math.inf, 6.0)
    assert not five.allows(0.0, 0.001)  # 5 % of nothing
    exact = Tolerance()
    assert exact.allows(2, 2) and not exact.allows(0, 1)
    assert parse_tolerance("backoff_seconds=10%") == ("backoff_seconds", Tolerance(relative=0.1))
    assert parse_tolerance("time_to_target=1500ms") == ("time_to_target", Tolerance(absolute=1.5))
    assert parse_tolerance("final_pages=64MiB") == ("final_pages", Tolerance(absolute=64 * MiB))
    assert parse_tolerance("oom_kills=1") == ("oom_kills", Tolerance(absolute=1))


@pytest.mark.parametrize(
    ("tolerance", "message"),
    [
        ("oom_kils=1", "--tolerance 'oom_kils=1': write METRIC=N% or METRIC=AMOUNT; metrics: time_to_target,"),
        ("oom_kills=1s", "--tolerance 'oom_kills=1s': '1s': a count metric takes a bare number"),
        ("final_pages=lots", "--tolerance 'final_pages=lots': 'lots' is not a number"),
        ("backoff_seconds=-5%", "--tolerance 'backoff_seconds=-5%': a tolerance is not negative"),
    ],
)
def test_a_bad_tolerance_is_one_line_and_exit_2(saved, tolerance, message, capsys):
    base, _ = saved
    assert main(["baseline", "check", str(base), "--tolerance", tolerance]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(f"balloonsim: {message}")
    with pytest.raises(UsageError):
        parse_tolerance(tolerance)


def test_a_changed_scenario_is_bad_input_saying_how_to_save_again(saved, capsys):
    base, scenario = saved
    scenario.write_text(RETRY.replace("duration: 30s", "duration: 31s"))
    assert main(["baseline", "check", str(base)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1
    assert f"{base}/retry.baseline.json: the scenario {base}/../../scenarios/retry.yaml changed since" in err
    assert f"save the baseline again (balloonsim baseline save {base} SCENARIOS...)" in err


def test_a_missing_or_foreign_folder_is_bad_input(tmp_path, saved, capsys):
    base, scenario = saved
    assert main(["baseline", "check", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err == (
        f"balloonsim: {tmp_path}/nowhere: no such folder; save a baseline first: "
        "balloonsim baseline save DIR SCENARIOS...\n"
    )
    assert main(["baseline", "check", str(scenario.parent)]) == 2
    assert "not a baseline (no *.baseline.json)" in capsys.readouterr().err
    scenario.unlink()
    assert main(["baseline", "check", str(base)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1


def test_a_damaged_baseline_file_is_bad_input(saved, capsys):
    base, _ = saved
    (base / "retry.baseline.json").write_text("{")
    assert main(["baseline", "check", str(base)]) == 2
    assert capsys.readouterr().err.startswith(f"{base}/retry.baseline.json: not a baseline file balloonsim wrote")


def test_two_scenarios_of_one_name_cannot_share_a_baseline(tmp_path, capsys):
    one, two = tmp_path / "a.yaml", tmp_path / "b.yaml"
    one.write_text(RETRY)
    two.write_text(RETRY)
    assert main(["baseline", "save", str(tmp_path / "base"), str(one), str(two)]) == 2
    assert capsys.readouterr().err == f"{two}: named 'retry', as {one} is; a baseline keeps one file per name\n"
    assert not (tmp_path / "base").exists()
