"""The planner's numbers (results/planner.py), its console line and its figure, each derived by hand
from a small scenario.

Guests here boot with ``used_at_boot`` 256 MiB, no reclaimable slab, no reserves and no costs, and no
target at creation, so each holds exactly its memory, of which all but 256 MiB is free, and never
balloons unless told to.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from balloonsim import plots
from balloonsim.cli import main, render_summary
from balloonsim.registry import MANAGERS
from balloonsim.results.metrics import run_metrics
from balloonsim.results.planner import domain_sums, goal_episodes, start_attempts
from balloonsim.results.result import HOST
from balloonsim.results.store import load_result, save_result
from balloonsim.scenario.model import ManagerParams, Scenario
from conftest import GiB, MiB, run

S = 1_000_000_000
KERNEL = {"used_at_boot": "256MiB", "slab_reclaimable": 0, "totalreserve_pages": 0, "floor_balloon": 0, "floor_user": 0}


def host_metrics_of(result) -> pd.Series:
    """The run's host metrics, by name."""
    metrics = run_metrics(result)
    return metrics[metrics["domain"] == HOST].set_index("metric")["value"]


def guest(name: str, memory: str, **fields) -> dict:
    return {"name": name, "memory": memory, "initial_target": "absent", "costs": "none", "kernel": KERNEL, **fields}


def scenario(domains: list[dict], events: list[dict] | None = None, **host) -> Scenario:
    return Scenario.model_validate(
        {"name": "plan", "duration": "10s", "host": host, "domains": domains, "events": events or []}
    )


# A 3 GiB host without a manager ('none': xl with autoballoon off; a start needs its memory free at once).
# a (PV, 1 GiB, static-max 2 GiB) runs from t=0 and stops at 5 s; b (1 GiB) starts at 2 s, c (2 GiB) at
# 3 s and d (1.5 GiB) at 6 s.  Host free: 3 - 1 = 2 GiB at t=0; b fits (2 GiB free), leaving 1 GiB;
# c asks 2 GiB with 1 GiB free: it fails at once; a's stop gives 1 GiB back (2 GiB free); d fits.
STARTS = scenario(
    [
        guest("a", "1GiB", type="pv", static_max="2GiB"),
        guest("b", "1GiB", start="2s"),
        guest("c", "2GiB", start="3s"),
        guest("d", "1536MiB", start="6s"),
    ],
    [{"at": "5s", "domain": "a", "stop": True}],
    total="3GiB",
)


@pytest.fixture(scope="module")
def starts():
    return run(STARTS)


def test_vm_starts_are_counted_with_their_outcome_and_latency(starts):
    attempts = start_attempts(starts.events)
    assert list(attempts["domain"]) == ["b", "c", "d"]
    assert list(attempts["asked_s"]) == [2.0, 3.0, 6.0]
    assert list(attempts["outcome"]) == ["started", "failed", "started"]
    # 'none' asks Xen at once: every start, good or bad, is decided the moment it is asked
    assert list(attempts["latency_s"]) == [0.0, 0.0, 0.0]
    p = starts.planner.iloc[0]
    assert (p["starts"], p["starts_ok"], p["starts_failed"], p["failed_starts"]) == (3, 2, 1, "c")
    assert p["start_success_rate"] == pytest.approx(2 / 3)
    assert (p["start_latency_median_s"], p["start_latency_max_s"]) == (0.0, 0.0)
    assert p["manager"] == "none"


def test_the_overcommit_ratio_steps_as_domains_start_and_stop(starts):
    s = starts.planner_series
    # Σ static-max of the running domains / 3 GiB: a's 2 GiB; + b's 1 GiB at 2 s; a stops at 5 s (b
    # alone); + d's 1.5 GiB at 6 s.  c never ran, so it never counts.
    at = {t: s[s["time_s"] == t].iloc[-1] for t in (0.0, 2.0, 5.0, 6.0, 10.0)}
    assert [at[t]["overcommit"] for t in at] == pytest.approx([2 / 3, 3 / 3, 1 / 3, 2.5 / 3, 2.5 / 3])
    assert [at[t]["running"] for t in at] == [1, 2, 1, 2, 2]
    assert set(s["host_total"]) == {3 * GiB}
    p = starts.planner.iloc[0]
    assert (p["overcommit_max"], p["overcommit_end"]) == (1.0, pytest.approx(2.5 / 3))


def test_a_stop_gives_its_memory_back_and_its_idle_memory_goes(starts):
    s = starts.planner_series
    # host free: 2 GiB, 1 GiB after b's start, 2 GiB after a's stop, 0.5 GiB after d's start
    at = {t: s[s["time_s"] == t].iloc[-1] for t in (0.0, 2.0, 5.0, 6.0)}
    assert [at[t]["host_free"] for t in at] == [2 * GiB, 1 * GiB, 2 * GiB, 512 * MiB]
    # idle held = Σ free pages of the running guests (no caches, no swap; tot_pages = MemTotal):
    # 768 MiB each for a and b, 1280 MiB for d; a's counts no more once it stopped
    assert [at[t]["idle_held"] for t in at] == [768 * MiB, 1536 * MiB, 768 * MiB, 2048 * MiB]
    # its time mean over 10 s: (768·2 + 1536·3 + 768·1 + 2048·4) / 10 = 1510.4 MiB
    assert starts.planner.iloc[0]["idle_held_mean_pages"] == pytest.approx(1510.4 * MiB)
    # nobody lacks memory (no workloads): nothing is stranded however much is free
    assert not s["stranded_free"].any() and starts.planner.iloc[0]["stranded_free_mean_pages"] == 0


def test_a_run_without_starts_or_manager_has_no_planner_metrics_and_one_with_has_them(starts):
    plain = run(scenario([guest("a", "1GiB")], total="2GiB"))
    assert list(host_metrics_of(plain).index) == ["host_free_min", "host_free_end"]
    host = host_metrics_of(starts)
    # no goal was reported ('none' reports none): no time_to_goal
    assert list(host.index) == [
        "host_free_min", "host_free_end", "starts_failed", "start_success_rate", "start_latency_max",
        "stranded_free_mean", "idle_held_mean", "overcommit_max", "guests_stuck",
    ]  # fmt: skip
    assert (host["starts_failed"], host["start_success_rate"], host["overcommit_max"]) == (1, pytest.approx(2 / 3), 1)
    assert host["host_free_min"] == 512 * MiB


def test_the_console_prints_the_planner_line(starts):
    text = render_summary(starts)
    assert "planner (manager none): starts 2/3 ok (latency median 0s, max 0s; failed: c)" in text
    planner = text.splitlines()[-1]
    assert "idle in guests 1510 MiB mean" in planner and planner.endswith("overcommit (Σ static-max / host) max 1")
    never_ran = next(line for line in text.splitlines() if line.startswith("c "))  # its start failed
    assert never_ran.split() == ["c", "-", "-", "-", "no", "(never", "ran)", *["-"] * 7]
    assert "planner" not in render_summary(run(scenario([guest("a", "1GiB")], total="2GiB")))


def test_the_planner_reads_the_same_from_a_saved_result(starts, tmp_path):
    save_result(starts, tmp_path / "r")
    again = load_result(tmp_path / "r")
    assert again.planner.equals(starts.planner)


def test_domain_sums_adds_each_domains_latest_value():
    tl = pd.DataFrame({"domain": pd.Categorical(["x", "y", "x", "y", "x"])})
    # x: 5, then 7, then 0; y: 3, then 4 -> sums 5, 8, 10, 11, 4
    assert list(domain_sums(tl, np.array([5, 3, 7, 4, 0]))) == [5, 8, 10, 11, 4]


# -- a manager that reports goals ---------------------------------------------------------------


class GoalReporter:
    """A toy manager: aims at 256 MiB free from t=0, at 1.5 GiB from 10 s, and declares g stuck then."""

    Params = ManagerParams

    def __init__(self, params):
        pass

    def daemon(self, io):
        io.report("goal", None, 256 * MiB)
        yield io.sleep(10 * S)
        io.report("goal", None, 1536 * MiB)
        io.report("declared_stuck", "g", -1, -1, "no progress")

    def make_room(self, io, pages):
        return io.free_pages >= pages
        yield


@pytest.fixture(scope="module")
def goals():
    # 3 GiB host, 1 GiB free at t=0 (1 GiB for other consumers), g (1 GiB) whose workload reads a
    # 1 GiB file: its cache can never hold it all (768 MiB free at most), so g lacks memory from the
    # start; at 15 s the other consumers give their 1 GiB back: 2 GiB free.
    with MANAGERS.registered("goal-toy", GoalReporter):  # a manager kind the scenario may name
        s = Scenario.model_validate(
            {
                "name": "goals",
                "duration": "20s",
                "host": {"total": "3GiB", "free": "1GiB", "manager": {"kind": "goal-toy"}},
                "domains": [guest("g", "1GiB", workloads=[{"name": "reader", "constant": {"cache": "1GiB"}}])],
                "events": [{"at": "15s", "host_free": "2GiB"}],
            }
        )
        return run(s)


def test_time_to_goal_after_each_change(goals):
    g = goal_episodes(goals)
    assert list(g["set_s"]) == [0.0, 10.0] and list(g["goal_pages"]) == [256 * MiB, 1536 * MiB]
    # 1 GiB free >= 256 MiB at once; 1.5 GiB only when the host gets 2 GiB free at 15 s: 5 s later
    assert list(g["reached"]) == [True, True] and list(g["time_to_goal_s"]) == [0.0, 5.0]
    p = goals.planner.iloc[0]
    assert (p["goals"], p["goals_reached"], p["time_to_goal_max_s"], p["below_goal_s"]) == (2, 2, 5.0, 5.0)


def test_stranded_free_memory_is_free_above_the_goal_while_a_guest_lacks_memory(goals):
    s = goals.planner_series
    assert (s.loc[s["time_s"] > 0, "guests_lacking"] == 1).all()
    # free - goal - claimed (no target claims anything): 1024 - 256 = 768 MiB until 10 s; below the
    # new goal until 15 s: 0; then 2048 - 1536 = 512 MiB.  A goal change is a point of the series.
    at = {t: s[s["time_s"] == t].iloc[-1]["stranded_free"] for t in (0.0, 10.0, 15.0, 20.0)}
    assert at == {0.0: 768 * MiB, 10.0: 0, 15.0: 512 * MiB, 20.0: 512 * MiB}
    p = goals.planner.iloc[0]
    # mean over 20 s: (768·10 + 0·5 + 512·5) / 20 = 512 MiB
    assert p["stranded_free_mean_pages"] == pytest.approx(512 * MiB)
    assert p["stranded_free_max_pages"] == 768 * MiB


def test_guests_declared_stuck_are_named(goals):
    p = goals.planner.iloc[0]
    assert (p["guests_stuck"], p["stuck_guests"], p["manager"]) == (1, "g", "goal-toy")
    host = host_metrics_of(goals)
    # no starts: no start metrics; a goal was reported: time_to_goal, the longest wait
    assert "starts_failed" not in host.index and host["time_to_goal"] == 5.0 and host["guests_stuck"] == 1
    assert "stuck: g" in render_summary(goals) and "goal reached 2/2 (longest 5s)" in render_summary(goals)


def run_goal_toy(free: str):
    """The goal toy for 12 s on a 3 GiB host with ``free`` free and g (1 GiB) running."""
    with MANAGERS.registered("goal-toy", GoalReporter):
        short = Scenario.model_validate(
            {
                "name": "short",
                "duration": "12s",
                "host": {"total": "3GiB", "free": free, "manager": {"kind": "goal-toy"}},
                "domains": [guest("g", "1GiB")],
            }
        )
        return run(short)


def test_a_goal_never_reached_takes_for_ever():
    # a host that never gets 1.5 GiB free (1 GiB): at 12 s, 2 s below it
    r = run_goal_toy("1GiB")
    p = r.planner.iloc[0]
    assert (p["goals_reached"], p["time_to_goal_max_s"], p["below_goal_s"]) == (1, math.inf, 2.0)
    assert run_metrics(r).set_index("metric").loc["time_to_goal", "value"] == math.inf
    assert "goal reached 1/2 (1 never reached)," in render_summary(r)
    # 128 MiB free: below 256 MiB from t=0, below 1.5 GiB after: neither goal is ever reached
    assert "goal reached 0/2 (never reached)," in render_summary(run_goal_toy("128MiB"))


class LateGoal:
    """A toy manager that says nothing for 5 s (as autoballoon's first pass), then aims at 512 MiB free."""

    Params = ManagerParams

    def __init__(self, params):
        pass

    def daemon(self, io):
        yield io.sleep(5 * S)
        io.report("goal", None, 512 * MiB)

    def make_room(self, io, pages):
        return io.free_pages >= pages
        yield


@pytest.fixture(scope="module")
def late_goal():
    # 3 GiB host, 1 GiB free all along, g (1 GiB) lacking memory all along (its reader's 1 GiB file
    # never fits in its cache), for 10 s
    with MANAGERS.registered("late-goal", LateGoal):
        s = Scenario.model_validate(
            {
                "name": "late",
                "duration": "10s",
                "host": {"total": "3GiB", "free": "1GiB", "manager": {"kind": "late-goal"}},
                "domains": [guest("g", "1GiB", workloads=[{"name": "reader", "constant": {"cache": "1GiB"}}])],
            }
        )
        return run(s)


def test_before_the_first_goal_there_is_none_and_nothing_is_stranded(late_goal):
    s = late_goal.planner_series
    before, after = s[s["time_s"] < 5], s[s["time_s"] >= 5]
    assert len(before) and before["goal"].isna().all() and (after["goal"] == 512 * MiB).all()
    # stranded: 0 until the goal is known (not 1024 MiB free against a goal of 0), then
    # 1024 - 512 = 512 MiB; over 10 s: (0·5 + 512·5) / 10 = 256 MiB on average
    assert not before["stranded_free"].any() and (after["stranded_free"] == 512 * MiB).all()
    p = late_goal.planner.iloc[0]
    assert p["stranded_free_mean_pages"] == pytest.approx(256 * MiB)
    # free (1 GiB) was never below a goal: none before 5 s, 512 MiB after
    assert p["below_goal_s"] == 0
    # the figure's goal line has a gap until 5 s: no dashed goal at 0
    bottom = plots.host_memory_figure(late_goal).axes[1]
    goal = next(line for line in bottom.get_lines() if line.get_label() == "goal")
    x, y = np.asarray(goal.get_xdata(), float), np.asarray(goal.get_ydata(), float)
    assert np.isnan(y[x < 5]).all() and set(y[x >= 5]) == {512.0}  # MiB


def test_without_any_goal_the_manager_keeps_nothing_back(starts):
    # 'none' reports no goal: it is 0 all along, so free memory counts as stranded when a guest lacks some
    assert (starts.planner_series["goal"] == 0).all()


# -- the figure -----------------------------------------------------------------------------------


def legend_texts(ax) -> list[str]:
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_the_host_memory_figure_says_what_it_shows(starts):
    fig = plots.host_memory_figure(starts)
    top, bottom = fig.axes
    assert "plan, seed 0" in fig._suptitle.get_text()
    assert top.get_ylabel() == "MiB" and bottom.get_xlabel() == "time (s)"
    # the three guests that ran, bottom to top in the order they started (a at 0 s, b at 2 s, d at 6
    # s): each start adds a band on top, the bands below stay put
    assert legend_texts(top)[:3] == ["a", "b", "d"]
    assert [band.get_label() for band in top.collections[:3]] == ["a", "b", "d"]
    labels = legend_texts(bottom)
    assert any(t.startswith("VM started") for t in labels) and any(t.startswith("VM start failed") for t in labels)
    assert any(t.startswith("VM stopped") for t in labels)
    marks = {line.get_label(): line.get_xdata() for line in bottom.get_lines()}
    # starts at the time asked (b 2 s, d 6 s; c failed at 3 s), a's stop at 5 s
    assert list(marks["VM started"]) == [2.0, 6.0] and list(marks["VM start failed"]) == [3.0]
    assert list(marks["VM stopped"]) == [5.0]


def test_every_figure_is_drawn_when_a_start_failed(starts, tmp_path):
    # c never ran: the timeline panel says so, the summary figure leaves it out and says so
    names = plots.write_figures(starts, tmp_path)
    assert names[:5] == ["timeline.png", "host.png", "gap_heatmap.png", "summary.png", "host_memory.png"]
    assert plots.target_note(starts, "c") == "never ran: its start failed"
    heading = plots.summary_figure(starts)._suptitle.get_text()
    assert "never ran (their start failed), not shown: c" in heading.replace("\n", " ")


def test_the_goal_is_drawn_stepwise(goals):
    bottom = plots.host_memory_figure(goals).axes[1]
    goal = next(line for line in bottom.get_lines() if line.get_label() == "goal")
    assert {float(y) for y in goal.get_ydata()} == {256.0, 1536.0}  # MiB


def test_many_guests_are_drawn_as_the_largest_and_the_others(tmp_path):
    # 14 guests of 300..430 MiB (+10 MiB each), all running from t=0 but the last, started at 1 s
    doms = [guest(f"g{i:02d}", f"{300 + 10 * i}MiB") for i in range(14)]
    doms[-1]["start"] = "1s"
    r = run(scenario(doms, total="8GiB"))
    top = plots.host_memory_figure(r).axes[0]
    texts = legend_texts(top)
    # the ten largest (g04..g13): those that ran from t=0 in scenario order, g13 (started at 1 s)
    # on top of them, then one band for the 4 others (g00..g03)
    assert texts[:11] == [*(f"g{i:02d}" for i in range(4, 14)), "the other 4 guests"]
    # the top of the stack (its last band) is Σ of every guest's pages once all run:
    # Σ (300 + 10 i) MiB for i < 14 = 5110 MiB, on an axis in GiB (an 8 GiB host)
    assert top.get_ylabel() == "GiB"
    assert top.collections[10].get_paths()[0].vertices[:, 1].max() == pytest.approx(5110 / 1024)
    assert "host_memory.png" in plots.write_figures(r, tmp_path)


def test_run_set_changes_the_scenario_before_running(tmp_path, capsys):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nduration: 1s\nhost: {total: 2GiB, manager: {kind: none}}\n"
        "domains:\n  - {name: a, memory: 1GiB, costs: none, start: 0s}\n"
    )
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "--no-plot", "--set", "domains.a.memory=512MiB"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("a "))
    assert row.split()[1:3] == ["512", "MiB"] and "planner (manager none): starts 1/1 ok" in out
    assert main(["run", str(path), "-o", str(tmp_path / "o"), "--set", "host.manager.kind=nosuch"]) == 2
    err = capsys.readouterr().err.strip()  # one line, naming the registered kinds
    assert err.startswith("--set host.manager: manager kind must be one of: none") and "\n" not in err
