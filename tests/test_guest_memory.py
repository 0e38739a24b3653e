"""The richer guest: THP reserves, watermark floors, reclaim, swap and the OOM killer,
with expected values derived from the kernel's rules (mm/page_alloc.c, mm/vmscan.c,
mm/oom_kill.c, mm/khugepaged.c of v5.12)."""

import pytest

from balloonsim.arch import ARCHES, zone_layout
from balloonsim.kernel.mm import GFP_BALLOON, GFP_USER, Pages
from balloonsim.kernel.oom import oom_badness, select_bad_process
from balloonsim.kernel.tasks import Task, Tasks
from balloonsim.kernel.watermarks import compute_reserves
from balloonsim.units import PAGES_PER_GIB as GiB_PAGES
from conftest import make_mm


def hvm_reserves(gib, thp=False, **kw):
    return compute_reserves(zone_layout(ARCHES["x86_64"], "hvm", int(gib * GiB_PAGES)), thp=thp, **kw)


@pytest.mark.parametrize("gib, zones", [(4, 3), (16, 3), (2, 2)])
def test_thp_raises_min_free_kbytes_to_11_pageblocks_per_zone(gib, zones):
    # set_recommended_min_free_kbytes(): 2 MiB pageblocks, 2 + MIGRATE_PCPTYPES^2 = 11 per
    # populated zone up to ZONE_NORMAL (a 2 GiB HVM guest has no Normal zone)
    recommended = 512 * zones * 11 * 4
    assert hvm_reserves(gib, thp=True).min_free_kbytes == recommended
    if gib == 4:
        assert recommended == 67584  # 11 pageblocks x 3 zones x 2 MiB = 66 MiB
    # its watermarks are those of that min_free_kbytes
    assert hvm_reserves(gib, thp=True) == hvm_reserves(gib, min_free_kbytes=recommended)


def test_thp_minimum_is_capped_at_5_percent_of_free_buffer_pages():
    small = hvm_reserves(0.25)  # 256 MiB: DMA and DMA32
    free_buffer_pages = sum(z.managed - z.wmark_high for z in small.zones if z.managed)
    cap_kbytes = free_buffer_pages // 20 * 4
    assert cap_kbytes < 512 * 2 * 11 * 4
    assert hvm_reserves(0.25, thp=True).min_free_kbytes == cap_kbytes


def test_thp_never_lowers_a_larger_min_free_kbytes():
    assert hvm_reserves(4, thp=True, min_free_kbytes=100000).min_free_kbytes == 100000


def test_watermark_floors_add_each_zones_mark_and_its_lowmem_reserve():
    r = hvm_reserves(4)
    dma, dma32, normal = r.zones
    for mark in ("min", "low", "high"):
        expected = (
            min(dma.managed, getattr(dma, f"wmark_{mark}") + dma.lowmem_reserve[2])
            + min(dma32.managed, getattr(dma32, f"wmark_{mark}") + dma32.lowmem_reserve[2])
            + getattr(normal, f"wmark_{mark}")
        )
        assert r.alloc_floor(highmem_ok=True, mark=mark) == expected
    assert r.alloc_floor(True, "min") < r.alloc_floor(True, "low") < r.alloc_floor(True, "high")


def test_balloon_allocations_reclaim_cache_32_pages_a_round_at_their_floor():
    calls = []
    mm = make_mm(free_low=1000, floor_balloon=900, on_alloc=lambda *a: calls.append(a))
    mm.page_cache = Pages(500)
    # 100 pages above the floor; the other 50 calls each find the floor and reclaim
    # SWAP_CLUSTER_MAX first: two rounds free 64 pages, 50 of which are taken
    assert mm.alloc_pages(150, GFP_BALLOON) == (150, 0)
    assert (mm.free_pages, mm.page_cache.total) == (900 + 64 - 50, 436)
    assert calls == [(GFP_BALLOON, 150, 150, 64)]


def test_balloon_allocations_fail_without_oom_once_reclaim_frees_nothing():
    mm = make_mm(free_low=1000, floor_balloon=900)
    mm.page_cache = Pages(15)
    mm.slab = Pages(5)
    assert mm.alloc_pages(150, GFP_BALLOON) == (120, 0)  # 100 + the 20 reclaimable, then a failure
    assert mm.reclaimable == 0 and mm.free_pages == 900


def test_gfp_user_reclaims_lowmem_only():
    mm = make_mm(free_low=100, free_high=0, floor_user=100)
    mm.page_cache = Pages(low=10, high=500)
    assert mm.alloc_pages(50, GFP_USER) == (10, 0)  # highmem cache cannot help a lowmem request
    assert mm.page_cache == Pages(0, 500)


def tasks_on(mm, kills=None, short=None):
    return Tasks(
        mm,
        on_oom_kill=lambda t, n: (kills if kills is not None else []).append((t.name, n)),
        on_out_of_memory=lambda t, n: (short if short is not None else []).append((t.name, n)),
    )


def one_task(mm, anon, kills):
    """Tasks on ``mm`` with one task "a" that has faulted in ``anon`` pages; OOM kills go to ``kills``."""
    tasks = tasks_on(mm, kills)
    a = tasks.add("a")
    tasks.set_demand(a, anon, 0)
    tasks.settle()
    return tasks, a


def test_faults_take_free_pages_then_cache_then_swap_then_kill():
    mm = make_mm(free_low=1000, managed=1000, floor_balloon=100, low_floor=150, high_floor=200, swap=300)
    kills = []
    tasks = tasks_on(mm, kills)
    a, b = tasks.add("a"), tasks.add("b")
    tasks.set_demand(a, 600, 0)
    tasks.settle()
    assert a.anon.total == 600 and mm.free_pages == 400
    mm.page_cache.add(*mm.take_free(200, GFP_BALLOON))  # 200 pages of cache: free 200
    tasks.set_demand(b, 700, 0)
    tasks.settle()
    # b: 100 free pages above the floor, then the 200 of cache, then 300 of a's pages (a has the
    # most resident) to swap, all of which b takes; 100 short with swap full: the OOM killer.
    # a scores 300 + 300 + 2 page tables, b 600 + 2: equal, and the later task (b) is chosen
    assert mm.page_cache.total == 0 and (a.anon.total, a.swapped) == (300, 300)
    assert kills == [("b", 600)] and b.killed and b.anon.total == 0
    assert mm.free_pages == 100 + 600 and mm.swap_used == 300
    assert tasks.unmet_demand() == 700  # the killed task's demand
    assert tasks.oom_kills == 1
    # started again, b meets the same shortage and the same tie: killed again
    tasks.revive(b)
    tasks.settle()
    assert kills == [("b", 600), ("b", 600)] and b.killed


def test_oom_score_adj_names_the_victim_and_minus_1000_protects():
    mm = make_mm(managed=10000)
    big, small = Task("big", anon=Pages(5000)), Task("small", anon=Pages(100), oom_score_adj=1000)
    # points = rss + swap + page tables + adj * (totalpages / 1000)
    assert oom_badness(big, 10000) == 5000 + 10
    assert oom_badness(small, 10000) == 100 + 1 + 1000 * 10
    assert select_bad_process([big, small], 10000) is small
    small.oom_score_adj = -1000
    assert select_bad_process([big, small], 10000) is big
    assert oom_badness(Task("empty"), 10000) is None
    tie = [Task("first", anon=Pages(10)), Task("second", anon=Pages(10))]
    assert select_bad_process(tie, mm.managed_pages).name == "second"  # a later equal score replaces


def test_nothing_to_kill_leaves_demand_unmet():
    mm = make_mm(free_low=500, floor_balloon=100)
    short = []
    tasks = tasks_on(mm, short=short)
    t = tasks.add("t", oom_score_adj=-1000)
    tasks.set_demand(t, 1000, 0)
    tasks.settle()
    assert t.anon.total == 400 and short == [("t", 600)] and tasks.unmet_demand() == 600


def test_swapped_pages_come_back_above_the_high_floor_and_shrinking_frees_swap_first():
    mm = make_mm(free_low=1000, floor_balloon=0, high_floor=100, swap=500)
    tasks = tasks_on(mm)
    t = tasks.add("t")
    t.anon.add(200, 0)
    t.swapped, mm.swap_used, mm.free_low = 300, 300, 800
    tasks.set_demand(t, 500, 0)
    tasks.settle()
    assert (t.anon.total, t.swapped) == (500, 0)  # 300 back: 500 free above the high floor
    t.anon.remove(100)
    mm.free_low += 100
    t.swapped, mm.swap_used = 100, 100
    tasks.set_demand(t, 350, 0)
    tasks.settle()
    assert (t.anon.total, t.swapped, mm.swap_used) == (350, 0, 0)


def test_page_cache_fills_to_the_low_floor_only_and_stays_when_no_longer_read():
    mm = make_mm(free_low=1000, floor_balloon=100, low_floor=300)
    tasks = tasks_on(mm)
    t = tasks.add("t")
    tasks.set_demand(t, 0, 900)
    tasks.settle()
    assert mm.page_cache.total == 700 and tasks.unmet_demand() == 200
    tasks.set_demand(t, 0, 0)
    tasks.settle()
    assert mm.page_cache.total == 700 and tasks.unmet_demand() == 0


def test_gfp_user_may_oom_kill_where_gfp_balloon_just_fails():
    # add_ballooned_pages() allocates with plain GFP_USER: no __GFP_NORETRY, so the OOM
    # killer may run; GFP_BALLOON never calls it (__GFP_NORETRY, mm/page_alloc.c)
    mm = make_mm(free_low=1000, floor_balloon=800, floor_user=800)
    kills = []
    _, a = one_task(mm, 200, kills)
    assert mm.free_pages == 800
    assert mm.alloc_pages(50, GFP_BALLOON) == (0, 0) and kills == []
    assert mm.alloc_pages(50, GFP_USER) == (50, 0)
    assert kills == [("a", 200)] and a.killed and mm.free_pages == 800 + 200 - 50


def test_the_balloons_light_reclaim_swaps_when_cache_is_gone_but_never_kills():
    mm = make_mm(free_low=1300, floor_balloon=900, swap=100)
    kills = []
    _, a = one_task(mm, 300, kills)
    # 100 pages above the floor; then rounds of SWAP_CLUSTER_MAX: 64 of a's pages go to swap
    assert mm.alloc_pages(150, GFP_BALLOON) == (150, 0)
    assert (a.anon.total, a.swapped, mm.swap_used) == (236, 64, 64)
    # the 14 pages the last round left above the floor, the rest of the swap (36 pages), then
    # nothing: a failure, and no OOM kill
    assert mm.alloc_pages(100, GFP_BALLOON) == (14 + 36, 0) and kills == []
