"""What each driver version does differently, in whole scenarios, with times derived from its balloon.c.

All on one 1 GiB guest (262144 pages) with work free of cost, HZ 250.  The back-off is
update_schedule(): after a failed pass retry_count 1->2 and schedule_delay 1->2 s, then 4, 8 s;
the fifth failure (retry_count 5 > max_retry_count 4) cancels and resets both to 1.
"""

import re

import pytest

from balloonsim.errors import SimulationError
from conftest import GiB, MiB, make_scenario, run

HALF = GiB // 2  # 131072 pages


def work_rows(result):
    tl = result.domain("g")
    return tl[tl["cause"] == "work"]


def reached(result, pages, after=0.0):
    """The first time (s) after ``after`` the guest held exactly ``pages``."""
    tl = result.domain("g")
    return float(tl[(tl["current_pages"] == pages) & (tl["time_s"] > after)]["time_s"].iloc[0])


def populate_blocked(driver, *extra, duration="60s"):
    """Down to 512 MiB at 1 s (the host gets those pages), the host's other consumers take them at 2 s,
    and at 3 s the target is 1 GiB again: no page can be populated, so the pass at 3 s is EAGAIN."""
    events = [
        {"at": "1s", "target": "512MiB"},
        {"at": "2s", "host_free": 0},
        {"at": "3s", "target": "1GiB"},
        *extra,
    ]
    return run(make_scenario(events, domain={"balloon": {"driver": driver}}, duration=duration))


# -- a new target during back-off ---------------------------------------------------------------


@pytest.mark.parametrize("driver, expected_s", [("v5.12", 5.0), ("v5.15", 4.0), ("v5.16", 4.0)])
def test_a_new_target_during_back_off(driver, expected_s):
    # EAGAIN at 3 s: schedule_delay 2.  A target of 256 MiB at 4 s: v5.12's schedule_delayed_work()
    # finds the retry pending and leaves its expiry at 3 + 2 = 5 s; the thread's wake_up() finds
    # balloon_thread_cond() true (state EAGAIN, credit changed) and it balloons down at 4 s.
    r = populate_blocked(driver, {"at": "4s", "target": "256MiB"})
    assert reached(r, GiB // 4) == expected_s


# -- after a cancel --------------------------------------------------------------------------


@pytest.mark.parametrize("driver, final, at_s", [("v5.12", HALF, None), ("v5.15", GiB, 3617.0), ("v5.16", GiB, 3617.0)])
def test_a_cancelled_balloon_is_retried_hourly_by_the_thread(driver, final, at_s):
    # Failed passes at 3, 5 (3+2), 9 (5+4) and 17 (9+8) s; the fourth retry cancels at 17 s.  The host
    # frees memory at 100 s, which wakes nobody.  v5.12 stays idle until a new target; the thread
    # sleeps 3600*HZ after BP_ECANCELED and populates at 17 + 3600 = 3617 s.
    r = populate_blocked(driver, {"at": "100s", "host_free": GiB}, duration="4000s")
    work = work_rows(r)
    failed = work[work["state"].astype(str).isin(["EAGAIN", "ECANCELED"])]
    assert list(failed["time_s"])[:4] == [3.0, 5.0, 9.0, 17.0]
    assert list(failed["state"].astype(str))[:4] == ["EAGAIN", "EAGAIN", "EAGAIN", "ECANCELED"]
    assert r.domain("g")["current_pages"].iloc[-1] == final
    if at_s is not None:
        assert reached(r, GiB, after=3) == at_s


def test_the_thread_makes_an_hourly_pass_with_nothing_to_do():
    # DONE at 1 s: the thread sleeps 3600 s, wakes at 3601 s, finds credit 0 and sleeps again
    s = make_scenario([{"at": "1s", "target": "512MiB"}], domain={"balloon": {"driver": "v5.15"}}, duration="7202s")
    r = run(s)
    assert list(work_rows(r)["time_s"]) == [1.0, 3601.0, 7201.0]


# -- before XSA-300 ---------------------------------------------------------------------------


def test_v5_2_retries_for_ever():
    # max_retry_count defaults to RETRY_UNLIMITED: schedule_delay doubles to max_schedule_delay 32 and stays:
    # failed passes at 3, 5, 9, 17, 33 (17+16), 65, 97, 129, 161, 193 s; v5.12 cancels at 17 s.
    r = populate_blocked("v5.2", duration="200s")
    work = work_rows(r)
    assert list(work["time_s"])[1:] == [3, 5, 9, 17, 33, 65, 97, 129, 161, 193]
    assert set(work["state"].astype(str)[1:]) == {"EAGAIN"}
    assert list(work["schedule_delay"])[-3:] == [32, 32, 32]


def take_then_shrink(driver):
    """A program holds 700 MiB (179200 pages, free 82944), totalreserve_pages 1000, MemAvailable
    computed (free - totalreserve here: no cache, no slab); target 100 MiB at 1 s."""
    events = [{"at": "0s", "take": 700 * MiB}, {"at": "1s", "target": "100MiB"}]
    domain = {"balloon": {"driver": driver}, "kernel": {"totalreserve_pages": 1000}}
    return run(make_scenario(events, domain=domain, duration="60s"))


def test_v5_12_balloons_out_no_more_than_mem_available():
    # each turn asks n = min(-credit, MemAvailable) (at most 512 taken); MemAvailable = free - 1000 runs
    # 81944, 81432, ..., 1048, 536 (81944 = 160 * 512 + 24).  At 536 the clamped n is below
    # totalreserve_pages: that turn (512 pages) ends EAGAIN with 1024 free.  The retry at 3 s takes the
    # last 24 (again n < 1000: EAGAIN), leaving exactly totalreserve_pages free.
    r = take_then_shrink("v5.12")
    work = work_rows(r)
    first, retry = work.iloc[0], work.iloc[1]
    assert (first["time_s"], first["guest_free"], str(first["state"])) == (1.0, 1024, "EAGAIN")
    assert first["current_pages"] == GiB - (82944 - 1024)
    assert (retry["time_s"], retry["guest_free"], str(retry["state"])) == (3.0, 1000, "EAGAIN")


def test_v5_2_balloons_out_until_the_allocator_says_no():
    # no clamp: 512-page batches until alloc_page() fails (floor_balloon 0 here): 82944 = 162 * 512, so the
    # 162nd batch takes the last free page and the 163rd gets none: EAGAIN with nothing free
    r = take_then_shrink("v5.2")
    at_1s = r.domain("g").query("time_s == 1.0 and cause == 'work'").iloc[0]
    assert at_1s["guest_free"] == 0 and str(at_1s["state"]) == "EAGAIN"
    assert at_1s["current_pages"] == GiB - 82944


def test_v5_2_lends_backends_pages_without_looking_at_mem_available():
    # add_ballooned_pages(): since XSA-300 -ENOMEM when si_mem_available() < nr_pages (here 0, fixed);
    # before it, decrease_reservation(GFP_USER) takes them anyway
    events = [{"at": "0s", "mem_available": 0}, {"at": "1s", "alloc_ballooned": 100}]
    rcs = {}
    for driver in ("v5.2", "v5.12"):
        r = run(make_scenario(events, domain={"balloon": {"driver": driver}}, duration="2s"))
        calls = r.events[r.events["kind"] == "alloc_ballooned"]
        rcs[driver] = int(calls["value"].iloc[0])
    assert rcs == {"v5.2": 0, "v5.12": -12}


# -- the boot wait (v5.16) --------------------------------------------------------------------


def stalled_boot(driver, *events, boot_timeout=None, duration="300s", domain_type="hvm", workloads=()):
    """Booted with memory/target 512 MiB but MemAvailable fixed at 0 (totalreserve_pages 1000): every
    pass balloons out nothing and is EAGAIN (0 < totalreserve_pages): passes at 0, 2, 6 s, and the
    cancel at 14 s (6 + 8)."""
    balloon = {"driver": driver, **({"boot_timeout": boot_timeout} if boot_timeout is not None else {})}
    domain = {
        "type": domain_type,
        "initial_target": "512MiB",
        "pod": False,
        "balloon": balloon,
        "kernel": {"totalreserve_pages": 1000, "mem_available": 0},
        "workloads": list(workloads),
    }
    return run(make_scenario(list(events), domain=domain, host={"free": 0}, duration=duration))


def test_the_boot_wait_panics_after_balloon_boot_timeout():
    # balloon_wait_finish() polls every HZ/10 = 100 ms; the credit last changed at its first poll (0 s);
    # once the state is ECANCELED (14 s) it panics at the first poll with jiffies >= 0 + HZ * 180: at 180 s
    r = stalled_boot("v5.16")
    tl = r.domain("g")
    assert list(work_rows(r)["time_s"]) == [0.0, 2.0, 6.0, 14.0]
    panic = tl[tl["cause"] == "panic"]
    assert list(panic["time_s"]) == [180.0]
    destroyed = tl[tl["cause"] == "destroyed"].iloc[0]
    assert destroyed["dom_pages"] == 0 and destroyed["host_free"] == GiB  # every page of the guest
    kinds = list(r.events["kind"])
    assert kinds.count("panic") == 1 and kinds.count("domain_destroyed") == 1
    assert r.summary.iloc[0]["crashed"]


def test_a_shorter_boot_timeout_panics_sooner():
    # balloon_boot_timeout=20: the first poll at or after 20 s once cancelled (14 s): 20.0 s
    r = stalled_boot("v5.16", boot_timeout=20)
    assert list(r.domain("g").query("cause == 'panic'")["time_s"]) == [20.0]


def test_the_boot_wait_ends_when_the_toolstack_gives_up_the_shrink():
    # the target set to the current size at 100 s: credit 0, so the poll at 100 s (events at an instant come
    # before the tasks due then) leaves the loop: boot_done at 100 s, no panic
    r = stalled_boot("v5.16", {"at": "100s", "target": "1GiB"})
    tl = r.domain("g")
    assert list(tl[tl["cause"] == "boot_done"]["time_s"]) == [100.0]
    assert "panic" not in set(tl["cause"].astype(str)) and not r.summary.iloc[0]["crashed"]


def test_memory_freed_after_the_cancel_does_not_save_the_boot():
    # MemAvailable back at 50 s wakes nobody: the thread sleeps until 14 + 3600 s, the boot wait panics at 180 s
    r = stalled_boot("v5.16", {"at": "50s", "mem_available": "auto"})
    assert list(r.domain("g").query("cause == 'panic'")["time_s"]) == [180.0]


def test_v5_15_has_no_boot_wait():
    r = stalled_boot("v5.15")
    causes = set(r.domain("g")["cause"].astype(str))
    assert "panic" not in causes and "boot_done" not in causes and not r.summary.iloc[0]["crashed"]


def test_an_hourly_pass_with_nothing_to_do_is_no_new_cancellation():
    # cancelled at 17 s; the target set back to the current size at 20 s wakes the thread, whose pass has
    # credit 0 and leaves the state ECANCELED (update_schedule returns at once): one cancellation, not two
    r = populate_blocked("v5.15", {"at": "20s", "target": "512MiB"}, duration="3700s")
    work = work_rows(r)
    assert list(work[work["time_s"] >= 17]["time_s"]) == [17.0, 20.0, 3620.0]
    assert set(work[work["time_s"] >= 17]["state"].astype(str)) == {"ECANCELED"}
    assert list(r.events["kind"]).count("ECANCELED") == 1 and r.summary.iloc[0]["cancellations"] == 1


def boot_wait_messages(result):
    """(time_s, message) of balloon_wait_finish()'s printk lines and the panic."""
    ev = result.events
    mine = ev[ev["message"].str.contains("nitial ballooning", na=False)]
    return list(zip(mine["time_s"], mine["message"], strict=True))


def test_the_boot_wait_says_it_waits_warns_once_and_says_when_it_is_done():
    # printk at the start; pr_warn_once at the first poll that finds ECANCELED (14 s, after the thread's
    # cancelling pass: it went to sleep at 6 s, the poll at 13.9 s) with credit -131072; the target at
    # 100 s ends the loop
    r = stalled_boot("v5.16", {"at": "100s", "target": "1GiB"})
    assert boot_wait_messages(r) == [
        (0.0, "[notice] Waiting for initial ballooning down having finished."),
        (14.0, "[warn] Initial ballooning failed, 131072 pages need to be freed."),
        (100.0, "[notice] Initial ballooning down finished."),
    ]


def test_a_new_target_during_the_boot_wait_restarts_its_timeout():
    # at 50 s the target becomes 768 MiB: credit -131072 -> -65536, seen by the poll at 50 s (events first):
    # last_changed = 50 s.  The wake-up runs a pass (EAGAIN, MemAvailable 0) at 50 s, retries at 52, 56 and
    # cancels at 64 s again; the panic comes at the first poll at or after 50 + 180 = 230 s (polls every
    # HZ/10 = 25 jiffies from jiffy 0: 230 s is one).  pr_warn_once: one warning, at 14 s, with the old credit.
    r = stalled_boot("v5.16", {"at": "50s", "target": "768MiB"}, duration="300s")
    work = work_rows(r)
    assert list(work["time_s"]) == [0.0, 2.0, 6.0, 14.0, 50.0, 52.0, 56.0, 64.0]
    assert boot_wait_messages(r) == [
        (0.0, "[notice] Waiting for initial ballooning down having finished."),
        (14.0, "[warn] Initial ballooning failed, 131072 pages need to be freed."),
        (230.0, "Kernel panic - not syncing: Initial ballooning failed!"),
    ]


@pytest.mark.parametrize("domain", [{"balloon": {"driver": "v5.16"}}, {"balloon": {"driver": "v5.16"}, "type": "pv"}])
def test_no_boot_wait_without_a_boot_target_or_in_a_pv_guest(domain):
    # balloon_wait_finish() returns at once, silent, when the credit is 0 (no initial target) or the guest
    # is PV; the PV guest is the stalled boot of the tests above (MemAvailable 0, cancelled at 14 s)
    if "type" in domain:
        r = stalled_boot("v5.16", domain_type="pv")
    else:
        r = run(make_scenario(domain=domain, duration="10s"))
    causes = set(r.domain("g")["cause"].astype(str))
    assert boot_wait_messages(r) == [] and "boot_done" not in causes and "panic" not in causes


@pytest.mark.parametrize("driver, rc, at_s, backend_pages", [("v5.2", 0, 3.0, 100), ("v5.12", -12, 2.0, 0)])
def test_before_v5_9_a_signal_does_not_end_the_wait_for_hot_added_memory(driver, rc, at_s, backend_pages):
    # add_ballooned_pages() sleeps until hot-added memory is onlined (3 s); a signal comes at 1 + 1 = 2 s.
    # v5.2's wait_event() ignores it: the call returns 0 at 3 s with 100 pages for the backend; since
    # "xen/balloon: make the balloon wait interruptible" (v5.9) it ends the sleep: -ENOMEM (-12) at 2 s
    hotplug = {"enabled": True, "auto_online": False}
    domain = {"balloon": {"driver": driver, "hotplug_unpopulated": 1}, "kernel": {"hotplug": hotplug}}
    events = [{"at": "1s", "alloc_ballooned": {"pages": 100, "signal_after": "1s"}}, {"at": "3s", "online": True}]
    r = run(make_scenario(events, domain=domain, duration="5s"))
    call = r.events[r.events["kind"] == "alloc_ballooned"].iloc[0]
    assert (call["value"], call["time_s"]) == (rc, at_s)
    assert r.domain("g")["backend_pages"].iloc[-1] == backend_pages


@pytest.mark.parametrize("driver, unpopulated", [("v5.2", 100), ("v5.12", 0)])
def test_before_v5_9_a_failed_alloc_ballooned_leaves_its_pages_in_target_unpopulated(driver, unpopulated):
    # a program holds all 262144 pages: alloc_xenballooned_pages(100) finds the balloon empty and
    # add_ballooned_pages() fails (v5.2: decrease_reservation() gets no page; v5.12: MemAvailable 0 < 100):
    # -ENOMEM with pgno 0.  target_unpopulated was raised by 100 and free_xenballooned_pages(0) takes 0 off;
    # since 1951fa33ec25 the error path takes off the other 100 - 0 too
    events = [{"at": "0s", "take": GiB}, {"at": "1s", "alloc_ballooned": 100}]
    r = run(make_scenario(events, domain={"balloon": {"driver": driver}}, duration="2s"))
    assert r.events[r.events["kind"] == "alloc_ballooned"].iloc[0]["value"] == -12
    assert r.domain("g")["target_unpopulated"].iloc[-1] == unpopulated


def test_the_timeline_shows_when_the_thread_runs_next_and_whether_it_was_woken():
    # HZ 250.  At boot the credit is 0: the thread sleeps 3600 * 250 = 900000 jiffies.  The target at 1 s
    # (jiffy 250) wakes it: runnable at jiffy 250.  Its pass ends DONE and it sleeps until 250 + 900000.
    r = run(make_scenario([{"at": "1s", "target": "512MiB"}], domain={"balloon": {"driver": "v5.15"}}, duration="3s"))
    rows = r.domain("g")[["time_s", "cause", "thread_runs_at", "thread_woken"]].astype({"cause": str})
    assert rows.values.tolist() == [
        [0.0, "init", 900000, False],
        [1.0, "target", 250, True],
        [1.0, "work", 900250, False],
        [3.0, "end", 900250, False],
    ]


def test_programs_start_when_the_boot_wait_ends():
    # init/main.c runs the late initcalls before the init process: a program's demand (a step to
    # 100 MiB one second after it starts) comes 1 s after boot_done (100 s here), not at 1 s
    workload = {"name": "app", "steps": [{"at": "1s", "anon": "100MiB"}]}
    r = stalled_boot("v5.16", {"at": "100s", "target": "1GiB"}, duration="120s", workloads=[workload])
    tl = r.domain("g")
    assert list(tl[tl["cause"] == "boot_done"]["time_s"]) == [100.0]
    grown = tl[tl["anon_pages"] > 0]
    assert grown["time_s"].iloc[0] == 101.0 and grown["anon_pages"].iloc[0] == 100 * MiB


def test_a_guest_that_panics_at_boot_runs_no_program():
    workload = {"name": "app", "constant": {"anon": "100MiB"}}
    r = stalled_boot("v5.16", workloads=[workload])
    assert r.summary.iloc[0]["crashed"] and (r.domain("g")["anon_pages"] == 0).all()
    # without the boot wait (v5.15) the program runs from the start
    tl = stalled_boot("v5.15", workloads=[workload], duration="10s").domain("g")
    assert tl[tl["anon_pages"] > 0]["time_s"].iloc[0] == 0.0


@pytest.mark.parametrize("driver, where", [("v5.12", "balloon_process()"), ("v5.15", "balloon_thread()")])
def test_a_done_pass_that_moves_nothing_is_a_livelock_with_costs_too(driver, where):
    # MemAvailable fixed at 0 with totalreserve_pages 0: every turn balloons out min(-credit, 0) = 0 pages
    # and is DONE (0 is not below totalreserve_pages), so the loop (v5.12's do-while, the thread's wait
    # condition) goes round for ever; each turn costs a hypercall's time.  Another guest's program
    # runs all along, so something is always still to come: the run stops after LIVELOCK_TURNS such
    # turns in a row all the same, as v5.12's does, instead of spinning to the end of the hour
    base = {"kernel": {"totalreserve_pages": 0, "floor_balloon": 0, "floor_user": 0}, "costs": "runtime"}
    stalled = {**base, "name": "g", "memory": "1GiB", "initial_target": "absent", "balloon": {"driver": driver}}
    stalled["kernel"] = {**base["kernel"], "mem_available": 0}
    busy = {
        **base,
        "name": "w",
        "memory": "1GiB",
        "workloads": [{"name": "p", "periodic": {"period": "10s", "anon": ["0", "100MiB"]}}],
    }
    scenario = make_scenario([{"at": "1s", "domain": "g", "target": "512MiB"}], domains=[stalled, busy], duration="1h")
    with pytest.raises(SimulationError, match=rf"livelock: {re.escape(where)} made no progress"):
        run(scenario)


def test_the_comparison_figure_ends_a_destroyed_guest_where_it_was_destroyed():
    from balloonsim import plots

    panicked, lived = stalled_boot("v5.16"), stalled_boot("v5.15")
    fig = plots.runs_figure({"A": lived, "B": panicked}, ["g"])
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    # B (v5.16) panics and is destroyed at 180 s: its current line stops there, with the mark; A runs to 300 s
    assert list(lines["B: destroyed"].get_xdata()) == [180.0]  # seconds
    assert lines["B: current"].get_xdata()[-1] == 180.0 and lines["A: current"].get_xdata()[-1] == 300.0
    assert "A: destroyed" not in lines
