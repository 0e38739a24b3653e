"""Workload demand over time, and the guest running it: reclaim, kswapd, OOM, seeds."""

import itertools
import textwrap

import numpy as np
import pandas as pd
import pytest
import simpy

from balloonsim.arch import ARCHES, zone_layout
from balloonsim.errors import ScenarioError
from balloonsim.kernel.watermarks import compute_reserves
from balloonsim.scenario import parse_scenario
from balloonsim.scenario.workloads import Workload
from balloonsim.workload import demand_points, drive, workload_rng
from conftest import GiB, MiB, make_scenario, run

S = 1_000_000_000


def points(spec, n=50, seed=0):
    w = Workload.model_validate({"name": "w", **spec})
    return list(itertools.islice(demand_points(w, workload_rng(seed, 0, 0)), n))


def test_drive_applies_the_last_demand_of_each_instant_at_its_time_plus_the_offset():
    """Two demands at one instant are one change (the later wins); times count from ``offset``;
    nothing after ``until`` is applied, and an instant already reached applies at once."""
    env = simpy.Environment(initial_time=5)
    applied = []
    demands = iter([(0, 1, 10), (0, 2, 20), (3, 3, 30), (3, 4, 40), (3, 5, 50), (7, 6, 60), (9, 7, 70)])
    env.process(drive(env, demands, until=12, apply=lambda a, c: applied.append((env.now, a, c)), offset=5))
    env.run()
    # at 0+5 the second of two wins; at 3+5 the third of three; 7+5 = 12 is still in; 9+5 = 14 is not
    assert applied == [(5, 2, 20), (8, 5, 50), (12, 6, 60)]


def test_constant_and_steps_hold_their_values():
    assert points({"constant": {"anon": "1GiB", "cache": "4MiB"}}) == [(0, GiB, 1024)]
    steps = [{"at": "1s", "anon": "8MiB"}, {"at": "2s", "cache": "4MiB"}, {"at": "3s", "anon": 0}]
    assert points({"steps": steps}) == [(S, 2048, 0), (2 * S, 2048, 1024), (3 * S, 0, 1024)]


def test_ramp_moves_linearly_in_steps():
    ramp = {"start": "10s", "duration": "4s", "step": "1s", "anon": ["0", "4MiB"], "cache": ["4MiB", "0"]}
    assert points({"ramp": ramp}) == [
        (0, 0, 1024),
        *[(10 * S + k * S, 1024 * k // 4, 1024 - 1024 * k // 4) for k in range(5)],
    ]


def test_square_wave_is_high_for_its_duty_of_each_period():
    square = {"period": "10s", "duty": 0.3, "anon": ["1MiB", "2MiB"]}
    assert points({"periodic": square}, 4) == [(0, 512, 0), (3 * S, 256, 0), (10 * S, 512, 0), (13 * S, 256, 0)]


def test_sine_goes_from_low_to_high_at_half_a_period():
    sine = {"period": "8s", "shape": "sine", "step": "2s", "anon": ["0", "4MiB"]}
    assert [p[1] for p in points({"periodic": sine}, 5)] == [0, 512, 1024, 512, 0]


def test_bursts_overlap_add_up_and_end():
    burst = {"every": "10s", "length": "30s", "anon": ["1MiB", "2MiB"]}
    pts = points({"bursts": burst}, 200)
    times = [t for t, _, _ in pts]
    assert times == sorted(times)
    anon = np.array([a for _, a, _ in pts])
    assert anon.min() >= 0 and anon.max() > 512  # overlapping bursts add up
    assert (anon == 0).any()  # and all end now and then
    steps = np.abs(np.diff(np.r_[0, anon]))
    assert ((steps >= 256) & (steps <= 512)).all()  # each change is one burst's size


def test_bursts_come_from_their_own_seeded_stream():
    burst = {"bursts": {"every": "10s", "length": "5s", "anon": ["1MiB", "100MiB"]}}
    assert points(burst, seed=1) == points(burst, seed=1)
    assert points(burst, seed=1) != points(burst, seed=2)
    w = Workload.model_validate({"name": "w", **burst})
    other = list(itertools.islice(demand_points(w, workload_rng(1, 0, 1)), 50))
    assert other != points(burst, seed=1)  # another workload position: another stream


def write_trace(tmp_path, text):
    (tmp_path / "trace.csv").write_text(textwrap.dedent(text))


def scenario_text(workload):
    return textwrap.dedent(
        f"""\
        duration: 60s
        host: {{total: 2GiB}}
        domains:
          - name: g
            memory: 1GiB
            workloads:
              - {{name: w, {workload}}}
        """
    )


def test_replay_reads_meminfo_kib_and_loops(tmp_path):
    write_trace(tmp_path, "time_s,anon_kb,cache_kb\n0,4096,8\n1.5,8192,12\n")
    s = parse_scenario(scenario_text("replay: {file: trace.csv, loop: true}"), "s.yaml", base_dir=tmp_path)
    w = s.domains[0].workloads[0]
    pts = list(itertools.islice(demand_points(w, workload_rng(0, 0, 0)), 4))
    # KiB to whole pages; the loop starts again one sample interval (1.5 s) after the last sample
    assert pts == [(0, 1024, 2), (1_500_000_000, 2048, 3), (3 * S, 1024, 2), (4_500_000_000, 2048, 3)]


def test_a_bad_trace_is_reported_with_its_lines(tmp_path):
    write_trace(tmp_path, "time_s,anon_kb,cache_kb\n0,1,2\n2,x,1\n3,1,1\n1,1,1\n")
    with pytest.raises(ScenarioError) as err:
        parse_scenario(scenario_text("replay: {file: trace.csv}"), "s.yaml", base_dir=tmp_path)
    (problem,) = err.value.problems
    assert problem.startswith("s.yaml:7: domains.0.workloads.0.replay: ")
    assert "trace.csv:3: expected numbers in columns time_s, anon_kb, cache_kb" in problem
    assert "trace.csv:5: time 1 is not after the previous row's" in problem


def test_a_workload_has_exactly_one_kind():
    with pytest.raises(ScenarioError) as err:
        parse_scenario(scenario_text("constant: {anon: 1MiB}, ramp: {duration: 1s}"), "s.yaml")
    assert "a workload has exactly one kind (found constant, ramp)" in err.value.problems[0]


def guest(workloads, events=(), memory="1GiB", duration="100s", **kernel):
    return make_scenario(
        list(events),
        domain={
            "memory": memory,
            "workloads": workloads,
            "kernel": {"totalreserve_pages": "auto", "floor_balloon": "auto", "floor_user": "auto", **kernel},
        },
        duration=duration,
    )


def test_demand_is_faulted_in_and_shows_in_the_timeline():
    r = run(guest([{"name": "db", "constant": {"anon": "256MiB", "cache": "128MiB"}}]))
    last = r.domain("g").iloc[-1]
    assert last["anon_pages"] == 256 * MiB and last["page_cache"] == 128 * MiB
    assert last["demand_pages"] == 384 * MiB and last["unmet_demand"] == 0
    assert last["guest_free"] == GiB - 384 * MiB


def test_a_cache_heavy_guest_shrinks_by_dropping_cache():
    r = run(guest([{"name": "files", "constant": {"cache": "768MiB"}}], [{"at": "10s", "target": "384MiB"}]))
    s = r.summary.iloc[0]
    assert s["target_reached"] and s["oom_kills"] == 0
    last = r.domain("g").iloc[-1]
    assert last["page_cache"] < 384 * MiB  # the cache made room
    assert last["unmet_demand"] == 768 * MiB - last["page_cache"]
    assert s["kswapd_reclaimed"] + s["balloon_reclaimed"] >= 768 * MiB - last["page_cache"]


def test_a_spike_after_ballooning_kills_the_biggest_task():
    workloads = [
        {"name": "db", "constant": {"anon": "300MiB"}},
        {"name": "spike", "steps": [{"at": "50s", "anon": "400MiB"}]},
    ]
    r = run(guest(workloads, [{"at": "10s", "target": "512MiB"}]))
    kills = r.events[r.events["kind"] == "oom_kill"]
    # the spike faults in what is free (under 300 MiB), then reclaim finds nothing: the OOM
    # killer takes the task with the most memory at that moment, db, and the spike gets its 400
    assert len(kills) == 1 and "killed db" in kills["message"].iloc[0]
    s = r.summary.iloc[0]
    assert s["oom_kills"] == 1 and s["max_unmet_demand"] == 300 * MiB
    assert r.domain("g").iloc[-1]["anon_pages"] == 400 * MiB


def test_oom_score_adj_and_restart():
    workloads = [
        {"name": "db", "constant": {"anon": "300MiB"}, "oom_score_adj": 1000, "restart_after": "20s"},
        {"name": "spike", "steps": [{"at": "50s", "anon": "400MiB"}, {"at": "60s", "anon": 0}]},
    ]
    r = run(guest(workloads, [{"at": "10s", "target": "512MiB"}]))
    ev = r.events[r.events["kind"].isin(["oom_kill", "restart"])]
    assert list(ev["kind"].astype(str)) == ["oom_kill", "restart"]
    assert "killed db" in ev["message"].iloc[0] and ev["time_s"].iloc[1] == 70.0
    last = r.domain("g").iloc[-1]
    assert last["anon_pages"] == 300 * MiB and last["unmet_demand"] == 0


def test_kswapd_reclaims_from_the_min_to_the_high_floor_at_its_rate():
    rate = 256 * MiB  # pages per second (256 MiB/s)
    workloads = [
        {"name": "files", "constant": {"cache": "1000MiB"}},
        {"name": "app", "steps": [{"at": "5s", "anon": "100MiB"}]},
    ]
    r = run(guest(workloads, kswapd_rate="256MiB/s", duration="10s").replace(progress_every="0s"))
    reserves = compute_reserves(zone_layout(ARCHES["x86_64"], "hvm", GiB), thp=True)  # the default
    low, high = (reserves.alloc_floor(True, m) for m in ("low", "high"))
    tl = r.domain("g").set_index("cause")
    # at 5 s the app's faults take free memory to the min floor (reclaiming cache directly),
    # which is under the low floor: kswapd wakes and frees up to the high floor
    assert tl.loc["workload", "guest_free"].iloc[-1] == reserves.alloc_floor(True, "min") < low
    freed = high - reserves.alloc_floor(True, "min")
    assert r.summary.iloc[0]["kswapd_reclaimed"] == freed
    assert tl.loc["kswapd", "guest_free"] == high
    assert tl.loc["kswapd", "time_ns"] == 5 * S + -(-freed * S // rate)


def test_same_seed_same_tables_and_another_seed_changes_random_workloads_only():
    s = make_scenario(
        [],
        domains=[
            {
                "name": "steady",
                "memory": "1GiB",
                "costs": "none",
                "workloads": [{"name": "w", "ramp": {"duration": "50s", "anon": ["0", "512MiB"]}}],
            },
            {
                "name": "random",
                "memory": "1GiB",
                "costs": "none",
                "workloads": [{"name": "w", "bursts": {"every": "5s", "length": "5s", "anon": ["10MiB", "200MiB"]}}],
            },
        ],
        host={"total": "4GiB"},
    )
    a, b, c = run(s, seed=1), run(s, seed=1), run(s, seed=2)
    for name, frame in a.tables.items():
        pd.testing.assert_frame_equal(frame, b.tables[name])
    pd.testing.assert_frame_equal(a.domain("steady"), c.domain("steady"))
    assert not a.domain("random")["anon_pages"].equals(c.domain("random")["anon_pages"])
