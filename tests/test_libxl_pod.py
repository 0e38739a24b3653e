"""libxl's domain build, xl mem-set's PoD target, and populate-on-demand guests.

Expected numbers come from libxl (tools/libs/light/libxl_dom.c, libxl_mem.c, libxl_internal.h),
Xen's p2m-pod.c and balloon.c's update_schedule, worked out in the comments.
"""

from __future__ import annotations

import pytest

from balloonsim.scenario import parse_scenario
from balloonsim.xen.hypervisor import Host
from balloonsim.xen.pod import PodPool
from balloonsim.xen.toolstack import TARGET, Toolstack
from balloonsim.xen.xenstore import XenStore
from conftest import GiB, MiB, make_scenario, run

ONE_MIB = 256  # LIBXL_MAXMEM_CONSTANT, 1024 KiB, in pages


def boot_row(domain: dict, **kw):
    r = run(make_scenario([], domain={"initial_target": None, **domain}, duration="1s", **kw))
    return r, r.domain("g").iloc[0]


# -- the build ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "domain, max_pages, target_kib",
    [
        # PV, PVH, HVM, memory = maxmem: max_pages = memory + 1 MiB; target = memory - videoram (0)
        ({"type": "pv"}, GiB + ONE_MIB, 1024 * 1024),
        ({"type": "pvh"}, GiB + ONE_MIB, 1024 * 1024),
        ({"type": "hvm"}, GiB + ONE_MIB, 1024 * 1024),
        # HVM with 8 MiB of video RAM: target = 1048576 - 8192 KiB; max_pages still memory + 1 MiB
        ({"type": "hvm", "videoram": "8MiB"}, GiB + ONE_MIB, 1024 * 1024 - 8192),
        # HVM with maxmem above memory: the fudge adds LIBXL_MAXMEM_CONSTANT: 1048576 - 8192 - 1024 KiB
        ({"type": "hvm", "videoram": "8MiB", "static_max": "2GiB"}, GiB + ONE_MIB, 1024 * 1024 - 8192 - 1024),
        # PVH with maxmem above memory: no fudge (HVM only)
        ({"type": "pvh", "static_max": "2GiB"}, GiB + ONE_MIB, 1024 * 1024),
    ],
)
def test_libxl_build_sets_max_pages_and_the_first_target(domain, max_pages, target_kib):
    s = make_scenario([], domain={"initial_target": None, **domain}, duration="1s")
    d = s.domains[0]
    assert (d.max_pages_at_boot, d.initial_target_kib) == (max_pages, target_kib)
    assert run(s).domain("g").iloc[0]["max_pages"] == max_pages


def test_explicit_max_pages_and_initial_target_override_libxl():
    s = make_scenario([], domain={"initial_target": "900MiB", "max_pages": "2GiB"}, duration="1s")
    d = s.domains[0]
    assert (d.max_pages_at_boot, d.initial_target_kib) == (2 * GiB, 900 * 1024)


def test_video_ram_is_populated_but_not_guest_ram():
    # HVM, memory 1 GiB, videoram 8 MiB: the guest has 1016 MiB of RAM, Xen holds all 1 GiB;
    # the first target is 1016 MiB, and target_diff = static-max (1 GiB) - RAM (1016 MiB) = 8 MiB,
    # so the driver's boot target is 1008 MiB: it balloons 8 MiB down at boot
    r, init = boot_row({"videoram": "8MiB"})
    assert (init["dom_pages"], init["present_pages"], init["target_pages"]) == (GiB, GiB - 8 * MiB, GiB - 16 * MiB)
    last = r.domain("g").iloc[-1]
    assert (last["current_pages"], last["dom_pages"]) == (GiB - 16 * MiB, GiB - 8 * MiB)


# -- xl mem-set -----------------------------------------------------------------------------------


def test_mem_set_sets_the_pod_target_of_a_non_pv_guest():
    # an HVM PoD domain: 1000 entries, 400 cache pages, 100 pages really populated (tot 500)
    host = Host(total_pages=10_000, free_pages=9_500)
    ts = Toolstack(host, XenStore())
    dom = ts.create_domain(
        "a", memory_pages=500, max_pages=2000, static_max_pages=1100, initial_target_kib=2000, pod_entries=1000
    )
    assert (dom.pod.entries, dom.pod.cache, dom.tot_pages) == (1000, 500, 500)
    dom.pod = PodPool(1000, 400)  # the guest has touched 100 pages
    # mem-set 3072 KiB: max_pages = (3072 + 1024) / 4 = 1024; PoD target (3072 + 1024) / 4 = 1024 pages;
    # populated = 500 - 400 = 100, cache target = 1024 - 100 = 924 (<= 1000 entries): 524 from the heap
    assert ts.set_memory_target(dom, 3072) is None
    assert (dom.max_pages, dom.pod.cache, dom.tot_pages, host.free_pages) == (1024, 924, 1024, 9_500 - 524)
    assert ts.xenstore.read(dom.domid, TARGET) == "3072"
    # mem-set 1024 KiB: PoD target 512 pages < tot_pages 1024: the cache is left for the balloon to shrink
    assert ts.set_memory_target(dom, 1024) is None
    assert (dom.max_pages, dom.pod.cache, dom.tot_pages) == (512, 924, 1024)


def test_mem_set_gives_a_pv_guest_no_pod_target():
    host = Host(total_pages=10_000, free_pages=9_500)
    ts = Toolstack(host, XenStore())
    dom = ts.create_domain(
        "a", memory_pages=500, max_pages=2000, static_max_pages=1100, initial_target_kib=2000, pv=True
    )
    assert ts.set_memory_target(dom, 3072) is None
    assert (dom.max_pages, dom.pod.cache, dom.tot_pages) == (1024, 0, 500)


# -- PoD ------------------------------------------------------------------------------------------

POD = {"static_max": "2GiB", "kernel": {"used_at_boot": "64MiB", "totalreserve_pages": 0}}


def test_a_pod_guest_boots_with_its_ram_as_pod_entries():
    # memory 1 GiB, maxmem 2 GiB, HVM: RAM 2 GiB (524288 pages), all PoD entries; the cache is 1 GiB
    # (262144); the kernel's 64 MiB (16384 pages) are faulted in from it at boot
    _, init = boot_row({**POD, "initial_target": "absent"})
    assert (init["present_pages"], init["dom_pages"]) == (2 * GiB, GiB)
    assert (init["pod_entries"], init["pod_cache"]) == (2 * GiB - 16384, GiB - 16384)


def test_a_pod_guest_balloons_down_to_its_target_at_boot_without_crashing():
    # libxl's first target: 1 GiB - 1 MiB (the HVM fudge) = 261888 pages; target_diff = static-max - RAM = 0.
    # R = 524288 RAM, u = 16384 touched at boot: E = 507904 entries, C = 245760 cache.
    # The balloon takes 524288 - 261888 = 262400 untouched pages, zeroing (faulting in) each:
    # batch by batch (E, C) -> (E - 512, min(C, E - 512)); C stays 245760 while E >= C, so the
    # cache never runs dry.  After it E = 507904 - 262400 = 245504 < C, so C = 245504:
    # tot_pages = u + C = 16384 + 245504 = 261888, 256 pages (1 MiB) freed to the host.
    r, init = boot_row(POD, host={"free": "0 pages"})
    last = r.domain("g").iloc[-1]
    assert init["target_pages"] == GiB - ONE_MIB
    assert (last["current_pages"], last["state"]) == (GiB - ONE_MIB, "DONE")
    assert (last["pod_entries"], last["pod_cache"], last["dom_pages"]) == (245504, 245504, 261888)
    assert last["host_free"] == ONE_MIB
    assert r.summary.iloc[0]["pod_faults"] == 262400  # every page ballooned was zeroed first
    assert "domain_crashed" not in r.events["kind"].tolist()


def test_without_scrubbing_a_pod_guest_hands_back_its_entries():
    # scrub_pages off: the 262400 untouched pages go back as PoD entries, no fault: E = 245504 and the
    # cache (245760) is cut to it, 256 pages back to the host, as with scrubbing but without faults
    r, _ = boot_row({**POD, "balloon": {"scrub_pages": False}})
    last = r.domain("g").iloc[-1]
    assert (last["pod_entries"], last["pod_cache"], last["host_free"]) == (245504, 245504, ONE_MIB)
    assert r.summary.iloc[0]["pod_faults"] == 0


def test_a_pod_guest_that_touches_more_than_its_cache_crashes():
    # no target written, so the balloon never shrinks it: the workload's 1.5 GiB of anonymous memory
    # (393216 pages) touches untouched pages beyond the 245760-page cache: out of PoD memory
    workload = {"name": "big", "constant": {"anon": "1536MiB"}}
    s = make_scenario(
        [{"at": "2s", "mem_set": "1GiB"}],
        domain={**POD, "initial_target": "absent", "workloads": [workload]},
        duration="3s",
    )
    r = run(s)
    crash = r.events[r.events["kind"] == "domain_crashed"]
    assert len(crash) == 1 and crash.iloc[0]["time_ns"] == 0
    assert (crash.iloc[0]["pages"], crash.iloc[0]["value"]) == (393216, 245760)
    assert "out of populate-on-demand memory" in crash.iloc[0]["message"]
    last = r.domain("g").iloc[-1]
    assert (last["dom_pages"], last["pod_cache"], last["pod_entries"]) == (0, 0, 0)
    assert last["host_free"] == GiB  # the destroyed domain's pages are the host's again
    refused = r.events[r.events["kind"] == "mem_set_failed"]
    assert "does not exist" in refused.iloc[0]["message"]
    assert r.summary.iloc[0]["crashed"]


# -- a raw target above memory= -------------------------------------------------------------------


def test_a_raw_target_above_memory_gets_a_partial_then_no_populate_and_cancels():
    # PV, memory 1 GiB, static-max 2 GiB (the extra GiB in the balloon), libxl's max_pages 1 GiB + 256.
    # Target 1.5 GiB written at 1 s: the first batch of 512 gets 256 (partial: DONE), the next 0: EAGAIN;
    # update_schedule: retry_count 2, delay 2 s -> 3 s; 3, 4 s -> 7 s; 4, 8 s -> 15 s; then 5 > 4: ECANCELED
    s = make_scenario(
        [{"at": "1s", "target": "1536MiB"}],
        domain={"type": "pv", "static_max": "2GiB"},
        host={"free": "1GiB"},
        duration="20s",
    )
    r = run(s)
    tl = r.domain("g")
    work = tl[tl["cause"] == "work"]
    assert list(zip(work["time_s"], work["state"].astype(str), strict=True)) == [
        (1.0, "EAGAIN"),
        (3.0, "EAGAIN"),
        (7.0, "EAGAIN"),
        (15.0, "ECANCELED"),
    ]
    assert tl.iloc[-1]["current_pages"] == GiB + ONE_MIB
    kinds = r.events["kind"].tolist()
    assert kinds.count("populate_partial") == 1 and kinds.count("populate_refused") == 4


# -- bad input ------------------------------------------------------------------------------------


def problems(domain_yaml: str) -> list[str]:
    text = f"name: t\nduration: 1s\nhost: {{free: 0}}\ndomains:\n  - {{name: g, memory: 1GiB, {domain_yaml}}}\n"
    try:
        parse_scenario(text, "s.yaml")
    except Exception as err:  # InvalidScenario
        return str(err).splitlines()
    return []


def test_bad_videoram_and_pod_are_refused_in_one_line():
    assert problems("videoram: -8MiB") == ["s.yaml:5: domains.0.videoram: '-8MiB': must not be negative"]
    assert problems("type: pv, videoram: 8MiB") == [
        "s.yaml:5: domains.0.videoram: only an HVM guest has video RAM (libxl gives a PV guest 0)"
    ]
    assert problems("type: pv, static_max: 2GiB, pod: true") == [
        "s.yaml:5: domains.0.pod: a PV guest has no populate-on-demand (its memory above nr_pages is ballooned)"
    ]
    no_maxmem = "s.yaml:5: domains.0.pod: populate-on-demand needs memory below static_max (maxmem)"
    assert problems("pod: true") == [no_maxmem]
    assert problems("videoram: 1GiB") == [
        "s.yaml:5: domains.0.videoram: 262144 pages (1 GiB) leaves no RAM of memory (262144 pages (1 GiB))"
    ]
