"""balloonsim compare: two settings (or two files), one seed, what changed, --fail-if.

The scenario RETRY: guest g (1 GiB, costs none, no reserves) gives 512 MiB back at 1 s;
at 2 s other consumers take all the host's free memory; at 10 s g is asked for 1 GiB again,
which Xen cannot give; at 15 s the host gets 1 GiB free.  update_schedule() (balloon.c) on
each failing pass: retry_count += 1; past max_retry_count -> ECANCELED; else the delay doubles.

A, max_retry_count 4: pass at 10 s EAGAIN (retry 2, delay 2 s), 12 s EAGAIN (retry 3, delay
4 s), 16 s: the host has memory, 512 MiB populated, DONE.  Time to target 16 - 10 = 6 s; in
back-off 10 s -> 16 s = 6 s; 2 EAGAIN passes; no cancellation; ends at 1 GiB; the host keeps
1 GiB - 512 MiB = 512 MiB free.
B, max_retry_count 1: pass at 10 s: retry 2 > 1 -> ECANCELED, no delayed work; the memory
coming at 15 s finds no worker.  Never reached; no back-off; 0 EAGAIN; 1 cancellation; ends
at 512 MiB; the host keeps its 1 GiB free.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

import balloonsim
from balloonsim.cli import main
from balloonsim.conditions import ConditionError, parse_condition
from balloonsim.errors import ScenarioError
from balloonsim.plots import runs_figure
from balloonsim.results.result import HOST
from balloonsim.scenario.overrides import with_settings
from conftest import RETRY, GiB, MiB

FOUR, ONE = {"balloon.max_retry_count": 4}, {"balloon.max_retry_count": 1}


@pytest.fixture
def retry(tmp_path: Path) -> Path:
    path = tmp_path / "retry.yaml"
    path.write_text(RETRY)
    return path


@pytest.fixture
def comparison(retry: Path) -> balloonsim.Comparison:
    return balloonsim.compare(retry, a=FOUR, b=ONE)


def test_cutting_retries_to_one_cancels_where_four_succeed(comparison):
    t = comparison.table.set_index(["domain", "metric"])
    expected = {  # (a, b), derived in the module's docstring
        ("g", "time_to_target"): (6.0, math.inf),
        ("g", "final_pages"): (GiB, 512 * MiB),
        ("g", "backoff_seconds"): (6.0, 0.0),
        ("g", "eagain_passes"): (2, 0),
        ("g", "cancellations"): (0, 1),
        (HOST, "host_free_end"): (512 * MiB, GiB),
    }
    for key, (a, b) in expected.items():
        assert (t.loc[key, "a"], t.loc[key, "b"]) == pytest.approx((a, b), abs=1e-6), key
    assert t.loc[("g", "final_pages"), "change"] == -512 * MiB
    assert t.loc[("g", "cancellations"), "change"] == 1
    assert t.loc[("g", "time_to_target"), "change"] == math.inf
    # nothing else moved: the same OOM kills (none), MemAvailable low point, host minimum (0)
    changed = set(zip(comparison.changed["domain"], comparison.changed["metric"], strict=True))
    assert changed == set(expected)
    assert t.loc[(HOST, "host_free_min"), "a"] == t.loc[(HOST, "host_free_min"), "b"] == 0


def test_two_retries_cancel_at_the_second_failing_pass(retry):
    # max_retry_count 2: 10 s EAGAIN (retry 2, delay 2 s), 12 s retry 3 > 2 -> ECANCELED
    c = balloonsim.compare(retry, a=FOUR, b={"balloon.max_retry_count": 2})
    t = c.table.set_index(["domain", "metric"])
    assert t.loc[("g", "eagain_passes"), "b"] == 1
    assert t.loc[("g", "cancellations"), "b"] == 1
    assert t.loc[("g", "backoff_seconds"), "b"] == pytest.approx(2.0)


def test_the_cli_prints_what_changed_and_writes_the_tables(retry, tmp_path, capsys):
    out = tmp_path / "cmp"
    args = ["compare", str(retry), "--a", "balloon.max_retry_count=4", "--b", "balloon.max_retry_count=1"]
    assert main([*args, "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "A: balloon.max_retry_count=4\n  B: balloon.max_retry_count=1" in printed
    lines = printed.splitlines()
    assert any(line.split() == ["g", "time_to_target", "6", "s", "never", "now", "never"] for line in lines)
    assert any(line.split() == ["cancellations", "0", "1", "+1"] for line in lines)
    assert "6 of 13 metrics changed (--all shows every one)" in printed
    assert "oom_kills" not in printed  # unchanged rows only with --all
    assert sorted(p.name for p in out.iterdir()) == ["compare.png", "comparison.csv", "comparison.parquet", "run.json"]
    csv = pd.read_csv(out / "comparison.csv")
    assert list(csv.columns) == ["domain", "metric", "unit", "a", "b", "change"]
    assert len(csv) == 11 + 2  # 11 guest metrics, 2 host metrics (host.needed not set)
    assert main([*args, "-o", str(out), "--all", "--no-plot"]) == 0  # an earlier comparison is replaced
    assert "oom_kills" in capsys.readouterr().out
    assert not (out / "compare.png").exists()


def test_the_default_folder_is_named_after_the_scenario(retry, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(retry), "--b", "balloon.max_retry_count=1", "--no-plot"]) == 0
    assert (tmp_path / "results" / "retry-compare" / "comparison.parquet").exists()


@pytest.mark.parametrize(
    ("condition", "holds"),
    [
        ("cancellations > 0", True),  # B: 1
        ("a.cancellations > 0", False),  # A: 0
        ("time_to_target > 30s", True),  # B never reached: for ever
        ("a.time_to_target > 6s", False),  # A: 6 s exactly
        ("a.time_to_target >= 6000ms", True),
        ("change.backoff_seconds < -5s", True),  # 0 - 6 = -6
        ("change.backoff_seconds < -6s", False),
        ("b.backoff_seconds > a.backoff_seconds * 1.1", False),  # 0 > 6.6
        ("a.backoff_seconds > b.backoff_seconds + 5s", True),  # 6 > 5
        ("host_free_end > 1GiB", False),  # B: exactly 1 GiB
        ("host_free_end >= 262144", True),  # a bare number of pages
        ("final_pages < a.final_pages", True),
        ("oom_kills != 0", False),
    ],
)
def test_fail_if_exits_1_exactly_when_its_condition_holds(retry, condition, holds, capsys):
    out = str(retry.parent / "out")
    args = ["compare", str(retry), "--b", "balloon.max_retry_count=1", "-o", out, "--fail-if", condition]
    assert main([*args, "--no-plot"]) == (1 if holds else 0)
    printed = capsys.readouterr().out
    assert (f"fail-if {condition!r} holds for " in printed) == holds


def test_fail_if_names_the_guest_and_the_values(retry, capsys):
    out = str(retry.parent / "out")
    condition = "b.backoff_seconds < a.backoff_seconds"
    assert main(["compare", str(retry), "--b", "balloon.max_retry_count=1", "-o", out, "--fail-if", condition]) == 1
    assert (
        f"fail-if {condition!r} holds for g: b.backoff_seconds = 0 s, a.backoff_seconds = 6 s"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ("oom_kils > 0", "unknown metric 'oom_kils'; metrics: time_to_target, final_pages"),
        ("oom_kills > 1s", "'1s': a count metric takes a bare number"),
        ("time_to_target > 30 parsecs", "unknown time unit 'parsecs'"),
        ("oom_kills", "no comparison"),
        ("3 > 2", "names no metric"),
        ("x.oom_kills > 0", "'x': a metric's prefix is one of a., b., change."),
        ("oom_kills > final_pages", "compares metrics of different kinds"),
        ("oom_kills > 0; rm -rf /", "cannot read"),
        ("__import__('os') > 0", "cannot read"),
    ],
)
def test_a_bad_condition_is_bad_input_before_anything_runs(retry, condition, message, capsys, tmp_path):
    out = tmp_path / "never"
    assert main(["compare", str(retry), "-o", str(out), "--fail-if", condition]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and message in err and err.startswith("balloonsim: --fail-if ")
    assert not out.exists()
    with pytest.raises(ConditionError):
        parse_condition(condition)


TWO = RETRY.replace("events:", "  - {name: h, memory: 256MiB, initial_target: absent, costs: none}\nevents:")


@pytest.mark.parametrize(
    ("setting", "line"),
    [
        # set in both domains, reported once, as written
        ("--b=balloon.max_retry_count=-1", "--b balloon.max_retry_count: Input should be greater than or equal to 0"),
        ("--a=balloon.driver=v9", "--a balloon.driver: unknown driver 'v9'; drivers: v5.2, v5.12, v5.15, v5.16"),
        ("--b=nosuch.key=1", "--b nosuch.key: no such setting; a scenario field (name, description, duration"),
        ("--b=domains.nope.memory=1GiB", "--b domains.nope.memory: no item 'nope' in domains (items 0-1; names: g, h)"),
        ("--b=balloon.max_retry_count", "--b balloon.max_retry_count: write KEY=VALUE"),
        ("--b=balloon.colour=red", "--b balloon.colour: unknown key 'colour'; allowed: driver, max_retry_count"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path, setting, line, capsys):
    path = tmp_path / "two.yaml"
    path.write_text(TWO)
    out = tmp_path / "never"
    assert main(["compare", str(path), setting, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith(line)
    assert not out.exists()


def test_a_domain_field_applies_to_every_domain_unless_one_is_named(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(TWO)
    scenario = balloonsim.load_scenario(path)
    every = with_settings(scenario, {"balloon.max_retry_count": 1, "costs": {"xen_page": "1us"}}, "--b")
    assert [d.balloon.max_retry_count for d in every.domains] == [1, 1]
    assert [(d.costs.xen_page_out, d.costs.xen_page_in) for d in every.domains] == [(1000, 1000), (1000, 1000)]
    one = with_settings(scenario, {"domains.h.balloon.max_retry_count": 1, "duration": "1min"}, "--b")
    assert [d.balloon.max_retry_count for d in one.domains] == [4, 1]
    assert one.duration == 60 * 10**9


def test_a_new_driver_brings_its_own_retry_default_unless_the_scenario_set_one(tmp_path):
    # balloon_init() sets max_retry_count: RETRY_UNLIMITED (0) before XSA-300 (v5.2), 4 from v5.3 on
    path = tmp_path / "two.yaml"
    path.write_text(TWO)
    scenario = balloonsim.load_scenario(path)
    old = with_settings(scenario, {"balloon.driver": "v5.2"}, "--b")
    assert [d.balloon.max_retry_count for d in old.domains] == [0, 0]
    back = with_settings(old, {"balloon.driver": "v5.15"}, "--b")
    assert [d.balloon.max_retry_count for d in back.domains] == [4, 4]
    # a count the scenario gives is the user's, whatever the driver
    kept = scenario.replace({"domains.h.balloon.max_retry_count": 4}).replace({"domains.h.balloon.driver": "v5.2"})
    assert kept.domains[1].balloon.max_retry_count == 4


def test_two_scenario_files_compare_as_settings_do(retry, tmp_path, capsys):
    b = tmp_path / "one.yaml"
    b.write_text(RETRY.replace("    costs: none", "    costs: none\n    balloon: {max_retry_count: 1}"))
    assert main(["compare", str(retry), str(b), "-o", str(tmp_path / "o"), "--no-plot"]) == 0
    printed = capsys.readouterr().out
    assert f"A: {retry}\n  B: {b}\n" in printed and "6 of 13 metrics changed" in printed


def test_two_scenario_files_need_the_same_domains(retry, tmp_path, capsys):
    b = tmp_path / "other.yaml"
    b.write_text(RETRY.replace("name: g", "name: x").replace("domain: g", "domain: x"))
    assert main(["compare", str(retry), str(b), "-o", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == (
        f"{b}: its domains differ from {retry}'s (only in A: g; only in B: x); compare needs the same\n"
    )


def test_the_output_folder_follows_the_stores_rules(retry, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes.txt").write_text("mine")
    assert main(["compare", str(retry), "-o", str(taken)]) == 2
    assert "holds files balloonsim did not write (notes.txt)" in capsys.readouterr().err
    assert main(["compare", str(retry), "-o", str(taken), "--force", "--no-plot"]) == 0
    assert sorted(p.name for p in taken.iterdir()) == ["comparison.csv", "comparison.parquet", "notes.txt", "run.json"]


def test_the_same_seed_drives_both_runs(retry):
    c = balloonsim.compare(retry, b={"duration": "30s"}, seed=7)  # B: the scenario as it is
    assert c.a.metadata["seed"] == c.b.metadata["seed"] == 7
    assert c.changed.empty


def test_the_figure_draws_both_runs_of_every_domain_and_the_host(comparison):
    fig = comparison.figure()
    *domains, host = fig.axes
    assert [ax.get_title(loc="left") for ax in domains] == ["g"]
    labels = [line.get_label() for line in domains[0].get_lines()]
    assert labels == ["A: current", "A: target", "B: current", "B: target"]
    ends = {line.get_label(): line.get_ydata()[-1] for line in host.get_lines()}
    assert ends == {"A: host free": 512, "B: host free": 1024}  # MiB, as derived above
    assert runs_figure({"A": comparison.a}, []).axes[-1].get_title(loc="left") == "host free memory"


def test_bad_settings_from_python_are_scenario_errors(retry):
    with pytest.raises(ScenarioError, match=r"^b balloon.max_retry_count: Input should be a valid integer"):
        balloonsim.compare(retry, b={"balloon.max_retry_count": "many"})


def test_the_host_needed_time_is_when_free_memory_first_reached_it(tmp_path):
    # host.needed 768 MiB: at 1 s the guest gives back only 512 MiB, at 2 s others take it all;
    # at 15 s the host gets 1 GiB free: reached at 15 s in both runs (A's guest takes 512 MiB at 16 s)
    path = tmp_path / "needed.yaml"
    path.write_text(RETRY.replace("host: {free: 0}", "host: {free: 0, needed: 768MiB}"))
    t = balloonsim.compare(path, b=ONE).table.set_index(["domain", "metric"])
    assert (t.loc[(HOST, "host_needed_time"), "a"], t.loc[(HOST, "host_needed_time"), "b"]) == (15.0, 15.0)
    never = tmp_path / "never.yaml"
    never.write_text(RETRY.replace("host: {free: 0}", "host: {free: 0, needed: 2GiB}"))
    assert balloonsim.compare(never).table.set_index(["domain", "metric"]).loc[(HOST, "host_needed_time"), "b"] == (
        math.inf
    )
