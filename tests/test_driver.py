"""Behaviours of the balloon driver and its xenstore/sysfs front end, with expected
values derived from the kernel code (reference balloon.c, xen-balloon.c, libxl)."""

import pytest

from balloonsim.errors import SimulationError
from balloonsim.xen.hypervisor import Host
from conftest import GiB, MiB, make_scenario, run, work_rows


def update_schedule(state, st):
    """balloon.c's update_schedule(), transcribed for the expectations below."""
    if state in ("WAIT", "ECANCELED"):
        return state
    if state == "DONE":
        st["delay"], st["retry"] = 1, 1
        return "DONE"
    st["retry"] += 1
    if st["max_retry"] != 0 and st["retry"] > st["max_retry"]:
        st["delay"], st["retry"] = 1, 1
        return "ECANCELED"
    st["delay"] = min(st["delay"] * 2, st["max_delay"])
    return "EAGAIN"


def failing_passes(t0, hz, until, max_retry=4, max_delay=32):
    """Work rows of a worker that fails at every pass from time t0 on."""
    st = dict(delay=1, retry=1, max_retry=max_retry, max_delay=max_delay)
    t, rows = t0, []
    while t <= until:
        s = update_schedule("EAGAIN", st)
        if s == "ECANCELED":
            rows.append((t, s, 1, 1, False, -1))
            break
        rows.append((t, s, st["delay"], st["retry"], True, round((t + st["delay"]) * hz)))
        t += st["delay"]
    return rows


def kinds_of(result):
    """Event kinds, without the boot watch's note that memory/target was not written."""
    return [k for k in result.events["kind"].astype(str) if k != "watch_no_target"]


def test_back_off_then_cancel_at_the_fifth_failure():
    s = make_scenario(
        [{"at": "0s", "target": "768MiB"}, {"at": "1s", "host_free": 0}, {"at": "1s", "target": "1GiB"}],
        duration="100s",
    )
    rows = work_rows(run(s))
    assert rows[0][:2] == (0.0, "DONE")
    assert rows[1:] == failing_passes(1.0, 250, 100)
    assert [r[0] for r in rows[1:]] == [1.0, 3.0, 7.0, 15.0]


@pytest.mark.parametrize("hz", [100, 300, 1000])
def test_unlimited_retries_with_a_delay_cap(hz):
    s = make_scenario(
        [
            {"at": "0s", "target": "768MiB"},
            {"at": "1s", "host_free": 0},
            {"at": "1s", "sysfs": {"max_retry_count": 0}},
            {"at": "1s", "sysfs": {"max_schedule_delay": 8}},
            {"at": "1s", "target": "1GiB"},
        ],
        domain={"kernel": {"hz": hz}},
        duration="60s",
    )
    rows = work_rows(run(s))[1:]
    assert rows == failing_passes(1.0, hz, 60, max_retry=0, max_delay=8)
    assert [r[2] for r in rows[:6]] == [2, 4, 8, 8, 8, 8]


def test_a_target_during_back_off_waits_for_the_pending_retry():
    s = make_scenario(
        [
            {"at": "0s", "target": "768MiB"},
            {"at": "1s", "host_free": 0},
            {"at": "1s", "target": "1GiB"},  # fails: the host has no free memory
            {"at": "1.5s", "target": "700MiB"},  # schedule_delayed_work() finds the retry pending
            {"at": "10s", "target": "650MiB"},  # nothing pending: runs at once
        ],
        duration="20s",
    )
    r = run(s)
    tl = r.domain("g")
    row = tl[(tl["cause"] == "target") & (tl["time_s"] == 1.5)].iloc[0]
    assert row["work_pending"] and row["work_expiry"] == 250 + 2 * 250  # the retry's expiry, unchanged
    rows = work_rows(r)
    assert [r_[0] for r_ in rows] == [0.0, 1.0, 3.0, 10.0]  # nothing ran at 1.5 s
    assert rows[2][1] == "DONE"  # at 3 s the worker acts on the newest target
    assert tl.iloc[-1]["current_pages"] == 650 * MiB


@pytest.mark.parametrize("arch, batch", [("x86_64", 512), ("x86_32", 1024), ("arm64", 512), ("arm32", 512)])
@pytest.mark.parametrize("bulk", [True, False])
def test_batch_size_is_a_page_of_frame_numbers(arch, batch, bulk):
    pages = 5000
    s = make_scenario([{"at": "0s", "target": f"{GiB - pages} pages"}], domain={"kernel": {"arch": arch}})
    summary = run(s, bulk_iterations=bulk).summary.iloc[0]
    assert summary["loop_iterations"] == -(-pages // batch) + 1  # the last turn finds credit 0
    assert summary["pages_out"] == pages


def test_mem_available_clamp_and_the_totalreserve_rule():
    s = make_scenario(
        [{"at": "0s", "target": f"{GiB - 10000} pages"}],
        domain={"kernel": {"mem_available": 300, "totalreserve_pages": 1000}},
        duration="60s",
    )
    r = run(s)
    rows = work_rows(r)
    assert [x[1] for x in rows] == ["EAGAIN", "EAGAIN", "EAGAIN", "ECANCELED"]
    tl = r.domain("g")
    work = tl[tl["cause"] == "work"]
    # each pass balloons out min(-credit, MemAvailable) = 300 pages, then counts as EAGAIN
    assert list(work["current_pages"]) == [GiB - 300 * k for k in (1, 2, 3, 4)]


def test_pv_guest_boots_with_its_extra_memory_in_the_balloon():
    # max_pages pinned at static-max: a toolstack that raised it before writing the target
    s = make_scenario(
        [{"at": "1s", "target": "1536MiB"}],
        domain={"type": "pv", "static_max": "2GiB", "max_pages": "2GiB"},
        host={"free": "1GiB"},
    )
    init = run(s).domain("g").iloc[0]
    assert (init["current_pages"], init["total_pages"], init["balloon_low"]) == (GiB, 2 * GiB, GiB)
    assert init["mem_total"] == GiB  # extra pages were never in totalram
    last = run(s).domain("g").iloc[-1]
    assert last["target_pages"] == 1536 * MiB  # PV: no target_diff
    assert last["current_pages"] == 1536 * MiB


def test_pv_extra_memory_goes_elsewhere_with_unpopulated_alloc():
    s = make_scenario([], domain={"type": "pv", "static_max": "2GiB", "kernel": {"unpopulated_alloc": True}})
    init = run(s).domain("g").iloc[0]
    assert (init["total_pages"], init["balloon_low"]) == (GiB, 0)


def test_hvm_target_diff_is_static_max_minus_the_boot_target():
    # without PoD the guest's RAM is memory (1 GiB): static-max counts 8 MiB it does not see
    s = make_scenario([{"at": "1s", "target": "768MiB"}], domain={"static_max": "1032MiB", "pod": False})
    assert run(s).domain("g").iloc[-1]["target_pages"] == 768 * MiB - 8 * MiB


def test_target_diff_is_computed_once_at_the_first_xenstore_target():
    # a sysfs target first: at the first watch event target_pages is 512 MiB, not the boot value
    s = make_scenario(
        [
            {"at": "1s", "sysfs": {"target_kb": 512 * 1024}},
            {"at": "2s", "target": "768MiB"},
            {"at": "3s", "target": "1GiB"},
        ],
        domain={"static_max": "1GiB"},
        host={"free": "1GiB"},
    )
    tl = run(s).domain("g")
    targets = tl[tl["cause"] == "target"]["target_pages"].tolist()
    diff = GiB - 512 * MiB
    assert targets == [768 * MiB - diff, GiB - diff]


def test_xend_writes_static_max_under_its_own_key():
    s = make_scenario(
        [{"at": "1s", "target": "768MiB"}], domain={"static_max": "1032MiB", "toolstack": "xend", "pod": False}
    )
    assert run(s).domain("g").iloc[-1]["target_pages"] == 768 * MiB - 8 * MiB


def test_without_static_max_the_current_pages_stand_in():
    s = make_scenario(
        [{"at": "1s", "sysfs": {"target_kb": 512 * 1024}}, {"at": "2s", "target": "768MiB"}],
        domain={"static_max": "absent"},
        host={"free": "1GiB"},
    )
    tl = run(s).domain("g")
    assert tl[tl["cause"] == "target"].iloc[0]["target_pages"] == 768 * MiB  # diff = current - target = 0


def test_dom0_has_no_target_diff():
    s = make_scenario([{"at": "1s", "target": "768MiB"}], domain={"static_max": "1032MiB", "initial_domain": True})
    assert run(s).domain("g").iloc[-1]["target_pages"] == 768 * MiB


def test_boot_watch_applies_the_initial_target():
    s = make_scenario([], domain={"initial_target": "768MiB"}, duration="1s")
    tl = run(s).domain("g")
    assert tl.iloc[0]["target_pages"] == 768 * MiB and tl.iloc[0]["work_pending"]
    assert tl.iloc[1]["cause"] == "work" and tl.iloc[1]["current_pages"] == 768 * MiB


@pytest.mark.parametrize(
    "attribute, text, pages",
    [
        ("target_kb", "0x80000", 131072),  # base 16
        ("target_kb", "0400000", 32768),  # base 8: 131072 KiB
        ("target_kb", "524288\n", 131072),
        ("target_kb", "12abc", 3),  # simple_strtoull stops at the first non-digit
        ("target", "512M\n", 131072),
        ("target", "1g", 262144),
        ("target", "1048576", 256),  # bytes
    ],
)
def test_sysfs_targets_parse_like_the_kernel(attribute, text, pages):
    s = make_scenario([{"at": "1s", "sysfs": {attribute: text}}], duration="2s")
    assert run(s).domain("g").iloc[-1]["target_pages"] == pages


def test_sysfs_tunables_reject_bad_text():
    s = make_scenario(
        [
            {"at": "1s", "sysfs": {"max_retry_count": "abc"}},
            {"at": "1s", "sysfs": {"max_schedule_delay": "0x10"}},
            {"at": "1s", "sysfs": {"scrub_pages": "maybe"}},
        ],
        duration="2s",
    )
    r = run(s)
    assert kinds_of(r).count("sysfs_rejected") == 2
    assert "max_retry_count: 'abc' rejected (-22)" in r.events["message"].tolist()


def test_xl_mem_set_caps_max_pages_one_mib_above_the_target():
    s = make_scenario(
        [{"at": "1s", "mem_set": "512MiB"}, {"at": "2s", "mem_set": "2GiB"}, {"at": "3s", "mem_set": "768MiB"}],
        domain={"initial_target": "1GiB"},  # libxl needs memory/target to exist
        host={"free": "1GiB"},
    )
    r = run(s)
    tl = r.domain("g")
    sets = tl[tl["cause"] == "mem_set"]
    assert sets.iloc[0][["target_pages", "max_pages"]].tolist() == [512 * MiB, (512 * 1024 + 1024) // 4]
    assert sets.iloc[1]["target_pages"] == 512 * MiB  # above static-max: refused
    assert "memory_dynamic_max must be less than or equal to memory_static_max" in r.events["message"].tolist()
    assert tl.iloc[-1]["current_pages"] == 768 * MiB


def test_hotplug_adds_whole_sections_then_populates_them():
    s = make_scenario(
        [{"at": "1s", "target": f"{GiB + 3000} pages"}],
        domain={"max_pages": "2GiB", "kernel": {"hotplug": {"enabled": True, "section": "1024 pages"}}},
        host={"free": "1GiB"},
    )
    r = run(s)
    work = r.domain("g")[lambda t: t["cause"] == "work"]
    assert work["state"].astype(str).tolist() == ["WAIT", "DONE"]  # both at 1 s, MEM_ONLINE re-queues
    assert work.iloc[0][["total_pages", "balloon_low", "work_pending"]].tolist() == [GiB + 3072, 3072, True]
    assert work.iloc[1][["current_pages", "balloon_low"]].tolist() == [GiB + 3000, 72]
    assert r.summary.iloc[0]["pages_hotplugged"] == 3072


def test_hotplug_failure_cancels():
    s = make_scenario(
        [{"at": "1s", "target": f"{GiB + 3000} pages"}],
        domain={"kernel": {"hotplug": {"enabled": True, "max_added": 0}}},
    )
    r = run(s)
    assert work_rows(r)[-1][1] == "ECANCELED"
    assert "[err] Cannot allocate new System RAM resource" in r.events["message"].tolist()


def test_hot_added_memory_must_end_below_max_physmem_bits():
    # x86_64, 4-level paging: MAX_PHYSMEM_BITS 46, so memory ends at 64 TiB at most.  A target of
    # 65 TiB needs a range past it: add_memory_resource() refuses it (-E2BIG, mhp_range_allowed),
    # the driver warns and cancels; nothing is hot-added.  (No memmap: 32 TiB of it would take 512
    # GiB from this 1 GiB guest.)
    hotplug = {"kernel": {"hotplug": {"enabled": True, "section": "16GiB"}, "struct_page_bytes": 0}}
    r = run(make_scenario([{"at": "1s", "target": "65TiB"}], domain=hotplug))
    assert work_rows(r)[-1][1] == "ECANCELED"
    assert "[warn] Cannot add additional memory (-7)" in r.events["message"].tolist()
    assert r.summary.iloc[0]["pages_hotplugged"] == 0
    # 32 TiB: credit 32 TiB - 1 GiB, rounded up to whole 16 GiB sections, from 16 GiB: ends below 64 TiB
    ok = run(make_scenario([{"at": "1s", "target": "32TiB"}], domain=hotplug))
    assert ok.summary.iloc[0]["pages_hotplugged"] == 32 * 1024 * GiB


def test_alloc_ballooned_sleeps_until_hot_added_memory_is_onlined():
    s = make_scenario(
        [{"at": "1s", "alloc_ballooned": 100}, {"at": "3s", "online": True}],
        domain={"balloon": {"hotplug_unpopulated": 1}, "kernel": {"hotplug": {"enabled": True, "auto_online": False}}},
        duration="5s",
    )
    r = run(s)
    tl = r.domain("g")
    rows = tl[["time_s", "cause", "total_pages", "target_unpopulated", "balloon_low", "backend_pages"]]
    assert rows.values.tolist()[1:5] == [
        [1.0, "alloc_ballooned_sleep", GiB + 32768, 100, 0, 0],
        [3.0, "online", GiB + 32768, 100, 32768, 0],
        [3.0, "alloc_ballooned", GiB + 32768, 100, 32668, 100],  # woken by balloon_append
        [3.0, "work", GiB + 32768, 100, 32668, 100],  # MEM_ONLINE's pass: credit 0
    ]
    ev = r.events[r.events["kind"] == "alloc_ballooned"].iloc[0]
    assert (ev["pages"], ev["value"], ev["time_s"]) == (100, 0, 3.0)


def test_a_signal_ends_the_sleep_and_the_call_is_undone():
    s = make_scenario(
        [{"at": "1s", "alloc_ballooned": {"pages": 100, "signal_after": "1s"}}],
        domain={"balloon": {"hotplug_unpopulated": 1}, "kernel": {"hotplug": {"enabled": True, "auto_online": False}}},
        duration="5s",
    )
    r = run(s)
    tl = r.domain("g")
    done = tl[tl["cause"] == "alloc_ballooned"].iloc[0]
    assert (done["time_s"], done["target_unpopulated"], done["backend_pages"]) == (2.0, 0, 0)
    assert r.events[r.events["kind"] == "alloc_ballooned"].iloc[0]["value"] == -12  # -ENOMEM


def test_notes_for_requests_that_cannot_be_met():
    s = make_scenario(
        [
            {"at": "1s", "free_ballooned": 10},
            {"at": "1s", "hotplug_unpopulated": 1},
            {"at": "1s", "give": 5},
            {"at": "1s", "online": True},
        ],
        duration="2s",
    )
    assert kinds_of(run(s)) == ["free_short", "sysctl_missing", "give_short", "online_nothing"]


def test_the_sysctl_accepts_only_0_and_1():
    s = make_scenario(
        [{"at": "1s", "hotplug_unpopulated": 2}, {"at": "1s", "hotplug_unpopulated": "x"}],
        domain={"kernel": {"hotplug": {"enabled": True}}},
        duration="2s",
    )
    assert kinds_of(run(s)) == ["sysctl_rejected", "sysctl_rejected"]


def test_the_kernels_own_livelock_is_reported():
    s = make_scenario([{"at": "1s", "target": "512MiB"}], domain={"kernel": {"mem_available": 0}})
    with pytest.raises(SimulationError, match="livelock: balloon_process"):
        run(s)


def test_a_broken_invariant_names_the_step(monkeypatch):
    def leaky_populate(self, dom, n):
        dom.tot_pages += n  # the pages come from nowhere
        self.domain_pages += n
        return n

    monkeypatch.setattr(Host, "populate_physmap", leaky_populate)
    s = make_scenario([{"at": "0s", "target": "768MiB"}, {"at": "2s", "target": "1GiB"}])
    with pytest.raises(SimulationError, match=r"step \d+ \(t=2s, domain g, after work\): host pages not conserved"):
        run(s)
