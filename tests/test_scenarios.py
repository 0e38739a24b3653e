"""Each example scenario shows what its comment says."""

from pathlib import Path

import pandas as pd
import pytest

from balloonsim.scenario import load_scenario
from conftest import GiB, MiB, run

SCENARIOS = Path(__file__).parent.parent / "scenarios"
#: one full balloon-out batch of an HVM guest at the runtime costs (kernel/cost_profiles.py):
#: 512 x (alloc 200 + scrub 1,000 + Xen's release 8,000) + one hypercall 10,000 = 4,720,400 ns
BATCH_OUT_NS = 512 * (200 + 1_000 + 8_000) + 10_000


def result_of(name):
    return run(load_scenario(SCENARIOS / f"{name}.yaml"))


def test_every_example_is_valid():
    for path in SCENARIOS.glob("*.yaml"):
        load_scenario(path)


def test_working_set_stops_at_memavailable_backs_off_and_cancels():
    r = result_of("working_set")
    s = r.summary.iloc[0]
    assert not s["target_reached"] and s["final_state"] == "ECANCELED" and s["oom_kills"] == 0
    tl = r.domain("db")
    work = tl[(tl["cause"] == "work") & (tl["time_s"] > 10)]
    assert list(zip(work["state"].astype(str), work["schedule_delay"], strict=True)) == [
        ("EAGAIN", 2),
        ("EAGAIN", 4),
        ("EAGAIN", 8),
        ("ECANCELED", 1),
    ]
    # The balloon takes free memory, and kswapd turns page cache into free memory, until
    # MemAvailable falls under totalreserve_pages.  THP on (the default): totalreserve 29472
    # pages, Σ low watermarks 21118, the low floor 25265 (test_reserves).  MemAvailable at 10 s:
    # 194560 free - 29472 + (131072 cache - 21118) + 16384 slab / 2 = 283234; each batch lowers
    # it by 512; batch 497 finds 283234 - 496 * 512 = 29282 < 29472, balloons and ends EAGAIN:
    # 497 * 512 = 254464 pages out.  The cache refills free memory down to the low floor, so it
    # lost 254464 - (194560 - 25265) = 85169 pages: 45903 are left.
    first = work.iloc[0]
    assert first["current_pages"] == 4 * GiB - 497 * 512
    assert first["guest_free"] == 25265
    assert first["page_cache"] == 131072 - (497 * 512 - (194560 - 25265)) == 45903
    assert first["anon_pages"] == 2560 * MiB  # anonymous memory is never the balloon's to take
    assert s["final_current_pages"] > 2 * GiB


def test_cache_heavy_guest_reaches_its_target_by_dropping_cache():
    r = result_of("cache_heavy")
    s = r.summary.iloc[0]
    assert s["target_reached"] and s["oom_kills"] == 0
    last = r.domain("files").iloc[-1]
    assert last["anon_pages"] == GiB
    assert last["page_cache"] < 2 * GiB
    assert last["unmet_demand"] == 6 * GiB - last["page_cache"]
    # 5 GiB at the calibrated speed, one batch after another
    assert s["time_to_final_target_s"] * 1e9 == pytest.approx(5 * 512 * BATCH_OUT_NS, rel=0.01)


def test_oom_spike_kills_the_application_which_restarts():
    r = result_of("oom_spike")
    ev = r.events[r.events["kind"].isin(["oom_kill", "restart"])]
    assert list(zip(ev["time_s"], ev["kind"].astype(str), strict=True)) == [(90.0, "oom_kill"), (120.0, "restart")]
    assert "killed service" in ev["message"].iloc[0]
    tl = r.domain("app").set_index("time_s")
    assert tl.loc[90.0, "anon_pages"] == GiB  # the report got its memory
    last = tl.iloc[-1]
    assert last["anon_pages"] == 1536 * MiB and last["unmet_demand"] == 0 and last["oom_count"] == 1
    assert r.summary.iloc[0]["target_reached"]


def test_replay_follows_the_trace_and_loops():
    r = result_of("replay")
    trace = pd.read_csv(SCENARIOS / "traces" / "web_meminfo.csv")
    demand = (trace["anon_kb"] // 4 + trace["cache_kb"] // 4).to_numpy()
    tl = r.domain("web")
    rows = tl[tl["cause"] == "workload"].drop_duplicates("time_ns", keep="last").set_index("time_ns")
    period_ns = (600 + 5) * 1_000_000_000  # the last sample at 600 s, then one interval
    for lap in range(2):
        times = trace["time_s"].to_numpy() * 1_000_000_000 + lap * period_ns
        assert (rows.loc[times, "demand_pages"].to_numpy() == demand).all()


def test_host_squeeze_frees_what_idle_and_file_guests_can_give():
    r = result_of("host_squeeze")
    s = r.summary.set_index("domain")
    givers = [f"{kind}{i}" for kind in ("idle", "files") for i in range(1, 5)]
    busy = [f"busy{i}" for i in range(1, 5)]
    assert s.loc[givers, "target_reached"].all()
    # 1.5 GiB each, in parallel: 768 batches at the calibrated cost
    assert (s.loc[givers, "time_to_final_target_s"] * 1e9).tolist() == pytest.approx([768 * BATCH_OUT_NS] * 8)
    assert (s.loc[busy, "final_state"] == "ECANCELED").all() and (s.loc[busy, "oom_kills"] == 0).all()
    host = r.host
    gained = host["host_free"].iloc[-1] - host["host_free"].iloc[0]
    asked = 12 * (5 * GiB - 3584 * MiB)
    assert 8 * (5 * GiB - 3584 * MiB) < gained < asked
