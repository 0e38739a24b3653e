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


# -- kernel_versions.yaml and boot_wait.yaml: what each driver version does ------------------------

VERSIONS = ("v5.2", "v5.12", "v5.15", "v5.16")
JIFFY_NS = 4_000_000  # HZ 250
#: one full balloon-in batch at the runtime costs: 512 x (Xen's populate 4,000 + free_page 200) + 10,000
BATCH_IN_NS = 512 * (4_000 + 200) + 10_000
#: a failing batch, no page moved: the decrease_reservation hypercall alone
EMPTY_PASS_NS = 10_000


def on_driver(scenario, driver):
    return run(scenario.replace({f"domains.{d.name}.balloon.driver": driver for d in scenario.domains}))


@pytest.fixture(scope="module")
def versions():
    scenario = load_scenario(SCENARIOS / "kernel_versions.yaml")
    return {v: on_driver(scenario, v) for v in VERSIONS}


def retry_at(end_ns, delay_s):
    """A pass that ends at ``end_ns`` and sleeps ``delay_s`` seconds: schedule_delayed_work() or the
    thread's timeout counts HZ * delay jiffies from the jiffy it is in, and runs at that jiffy's start."""
    return (end_ns // JIFFY_NS + delay_s * 250) * JIFFY_NS


def summary(result, domain):
    return result.summary.set_index("domain").loc[domain]


def work_ns(result, domain, state):
    tl = result.domain(domain)
    return tl.loc[(tl["cause"] == "work") & (tl["state"] == state), "time_ns"].tolist()


def test_a_new_target_during_back_off_waits_for_the_pending_retry_before_v5_15(versions):
    # 10 s, target 1 GiB: MemAvailable 210944 free - 29472 totalreserve + (131072 cache - 21118)
    # = 291426 (test_working_set's arithmetic); batch k ends EAGAIN once 291426 - 512 (k - 1) <
    # 29472: k = 513.  Each retry takes one batch more (MemAvailable is still ~28k pages).
    first = 10 * 10**9 + 513 * BATCH_OUT_NS
    second = retry_at(first, 2) + BATCH_OUT_NS
    third = retry_at(second, 4) + BATCH_OUT_NS
    # 20 s: 3.5 GiB, during the 8 s back-off; 917504 - (1048576 - 515 * 512) = 132608 pages to
    # populate = 259 batches.  v5.12 runs at the pending retry; v5.15's thread is woken at once.
    up = 259 * BATCH_IN_NS
    v5_12 = summary(versions["v5.12"], "retarget")
    assert v5_12["target_reached"]
    assert v5_12["time_to_final_target_s"] * 1e9 == pytest.approx(retry_at(third, 8) + up - 20 * 10**9, abs=1)
    assert work_ns(versions["v5.12"], "retarget", "EAGAIN") == [first, second, third]
    for v in ("v5.15", "v5.16"):
        assert summary(versions[v], "retarget")["time_to_final_target_s"] * 1e9 == pytest.approx(up, abs=1)
    # v5.2 waits for its pending retry too, having ballooned past MemAvailable (to 0) first
    v5_2 = summary(versions["v5.2"], "retarget")
    assert v5_2["target_reached"] and v5_2["time_to_final_target_s"] > 5
    assert v5_2["min_mem_available"] == 0 < v5_12["min_mem_available"]


def test_a_cancelled_balloon_down_is_retried_hourly_from_v5_15_and_never_by_v5_12(versions):
    # 10 s, target 1 GiB of a 2 GiB guest: MemAvailable 79872 free - 18884 totalreserve (a 2 GiB
    # guest, test_reserves) = 60988; EAGAIN at batch 84 (60988 - 83 * 512 < 18884), then a batch
    # per pass: EAGAIN after 2 and 4 s, ECANCELED after 8 s (max_retry_count 4).
    first = 10 * 10**9 + 84 * BATCH_OUT_NS
    second = retry_at(first, 2) + BATCH_OUT_NS
    third = retry_at(second, 4) + BATCH_OUT_NS
    cancel = retry_at(third, 8) + BATCH_OUT_NS
    stuck = 524288 - 87 * 512
    for v in ("v5.12", "v5.15", "v5.16"):
        assert work_ns(versions[v], "freed", "ECANCELED") == [cancel]
    v5_12 = summary(versions["v5.12"], "freed")
    assert v5_12["final_state"] == "ECANCELED" and v5_12["final_current_pages"] == stuck
    assert not v5_12["target_reached"]
    # The job ends at 60 s.  v5.15+: the thread sleeps 3600 * HZ after the cancel, then balloons
    # the remaining 479744 - 262144 = 217600 pages: 425 batches.
    for v in ("v5.15", "v5.16"):
        s = summary(versions[v], "freed")
        assert s["target_reached"] and s["cancellations"] == 1
        reached = retry_at(cancel, 3600) + 425 * BATCH_OUT_NS
        assert s["time_to_final_target_s"] * 1e9 == pytest.approx(reached - 10 * 10**9, abs=1)
    # v5.2: no clamp, so the first pass balloons until GFP_BALLOON fails at the 2 GiB guest's floor,
    # 13254 free pages (DMA min(3977, 87 + 1991) + DMA32's min 11176): 79872 - 13254 = 66618 pages,
    # 130 batches and 58 pages.  No cancel: retries after 2, 4, 8, 16 s (an empty pass each), and
    # the next, 32 s later at 72.6 s, finds the job gone and balloons 457670 - 262144 = 195526 pages: 381
    # batches and 454 pages.
    first = 10 * 10**9 + 130 * BATCH_OUT_NS + 58 * 9_200 + 10_000
    retry = first
    for delay in (2, 4, 8, 16):
        retry = retry_at(retry, delay) + EMPTY_PASS_NS
    done = retry_at(retry, 32) + 381 * BATCH_OUT_NS + 454 * 9_200 + 10_000
    s = summary(versions["v5.2"], "freed")
    assert s["target_reached"] and s["cancellations"] == 0 and s["eagain_passes"] == 5
    assert s["time_to_final_target_s"] * 1e9 == pytest.approx(done - 10 * 10**9, abs=1)


def test_only_v5_2_balloons_past_memavailable_into_an_oom_kill(versions):
    # v5.12+: the balloon leaves MemAvailable near totalreserve_pages (18884), page cache and free
    # pages enough for the 64 MiB (16384 pages) the app asks for at 120 s.  v5.2 balloons until
    # GFP_BALLOON fails at the 13254-page floor and, retrying, reclaims the page cache too: the
    # app's fault finds nothing to reclaim and the OOM killer takes it.
    assert [summary(versions[v], "grows")["oom_kills"] for v in VERSIONS] == [1, 0, 0, 0]
    before = versions["v5.2"].domain("grows").set_index("time_s").loc[:119.9].iloc[-1]
    assert before["mem_available"] == 0 and before["page_cache"] == 0 and before["guest_free"] == 13254
    kill = versions["v5.2"].events.query("kind == 'oom_kill'")
    assert kill["time_s"].tolist() == [120.0]


def test_a_boot_target_out_of_reach_panics_v5_16_only(versions):
    # 4 GiB less 3996 MiB of kernel memory: 25600 free pages, under totalreserve (29472), so
    # MemAvailable is 0 and no page moves: passes at 0, 2, 6 s EAGAIN and 14 s ECANCELED.  The boot
    # wait saw the credit change at its first poll (0); it panics at the first 100 ms poll at or
    # after 0 + 180 s * HZ = 45000 jiffies: 180.0 s, and the toolstack destroys the domain.
    r = versions["v5.16"]
    tl = r.domain("hugepages").set_index("cause")
    assert tl.loc["panic", "jiffies"] == 45000
    assert tl.loc["destroyed", "host_free"] - tl.loc["panic", "host_free"] == 4 * GiB  # its memory back
    assert [summary(versions[v], "hugepages")["crashed"] for v in VERSIONS] == [False, False, False, True]
    # v5.15: the same cancel at 14 s (each pass is one empty hypercall), then the hourly retry at
    # jiffy 3500 + 3600 * 250: EAGAIN at 3614, 3616 and 3620 s, ECANCELED at 3628 s
    cancels = work_ns(versions["v5.15"], "hugepages", "ECANCELED")
    assert cancels == [14 * 10**9 + EMPTY_PASS_NS, 3628 * 10**9 + EMPTY_PASS_NS]
    # v5.12: cancelled once, idle; v5.2: never cancels; a retry every 32 s after 2, 4, 8, 16 s:
    # passes at 0, 2, 6, 14, then 30 + 32 k up to 3710 s: 4 + 116 = 120, each EAGAIN; it balloons
    # down to the 4 GiB guest's GFP_BALLOON floor, 21058 free pages: 25600 - 21058 = 4542 pages
    assert summary(versions["v5.12"], "hugepages")["cancellations"] == 1
    v5_2 = summary(versions["v5.2"], "hugepages")
    assert v5_2["cancellations"] == 0 and v5_2["eagain_passes"] == 120
    assert v5_2["final_current_pages"] == 4 * GiB - 4542


@pytest.fixture(scope="module")
def boot_wait():
    return result_of("boot_wait")


def test_boot_wait_panics_180_s_after_the_credit_last_changed(boot_wait):
    # 3 GiB of kernel memory in 4 GiB: MemAvailable 262144 - 29472 = 232672; the thread's batch k
    # ends EAGAIN once 232672 - 512 (k - 1) < 29472: k = 398, at 398 batches.  Retries 2, 4, 8 s
    # later take a batch each; the third fails past max_retry_count: ECANCELED at jiffy 3971.
    first = 398 * BATCH_OUT_NS
    cancel_start = retry_at(retry_at(retry_at(first, 2) + BATCH_OUT_NS, 4) + BATCH_OUT_NS, 8)
    assert cancel_start == 3971 * JIFFY_NS
    tl = boot_wait.domain("panics")
    assert tl["current_pages"].iloc[-1] == 4 * GiB - 401 * 512
    # the boot wait polls at every 25th jiffy: it sees the last change at 3975 and panics at the
    # first poll at or after 3975 + 180 * 250 = 48975 jiffies (195.9 s)
    assert tl.loc[tl["cause"] == "panic", "jiffies"].tolist() == [48975]
    assert boot_wait.summary.set_index("domain").loc["panics", "crashed"]


def test_boot_wait_ends_when_mem_set_gives_the_memory_back(boot_wait):
    tl = boot_wait.domain("rescued")
    assert tl.loc[tl["cause"] == "boot_done", "time_s"].tolist() == [60.0]  # 60 s is a poll (jiffy 15000)
    s = boot_wait.summary.set_index("domain").loc["rescued"]
    assert s["target_reached"] and not s["crashed"]
    # back up from 4 GiB - 401 batches to 4 GiB: 401 batches in
    assert s["final_target_reached_s"] * 1e9 == pytest.approx(60 * 10**9 + 401 * BATCH_IN_NS, abs=1)


@pytest.mark.parametrize(("costs", "fault_ns", "boot_done_s"), [("runtime", 4_000, 10.4), ("pod-boot", 74_000, 65.5)])
def test_a_pod_guest_boots_when_its_balloon_down_is_done(costs, fault_ns, boot_done_s):
    # memory 1 GiB, maxmem 4 GiB: 4 GiB of PoD RAM, target 1 GiB less libxl's 1 MiB fudge: 786688
    # pages out, 1536 batches and 256 pages; scrubbing each untouched page faults it in first.
    # runtime: 1536 x 6.7684 ms + 3.3892 ms = 10.39965 s; pod-boot: 1536 x 42.6084 ms + 21.3092
    # ms = 65.4678 s.  The boot wait ends at its next 100 ms poll.
    scenario = load_scenario(SCENARIOS / "boot_wait.yaml")
    r = run(scenario.replace({"domains.pod.costs": costs}))
    page = 200 + 1_000 + fault_ns + 8_000
    done = 1536 * (512 * page + 10_000) + 256 * page + 10_000
    s = r.summary.set_index("domain").loc["pod"]
    assert s["pod_faults"] == 786688 and s["time_to_final_target_s"] * 1e9 == pytest.approx(done, abs=1)
    tl = r.domain("pod")
    assert tl.loc[tl["cause"] == "boot_done", "time_s"].tolist() == [boot_done_s]
