"""The guest's allocator, MemAvailable and watermarks, against values derived by hand
from the kernel's definitions (mm/page_alloc.c v5.12)."""

import math

import pytest

from balloonsim.arch import ARCHES, ZoneSpan, zone_layout
from balloonsim.kernel.mm import GFP_BALLOON, GFP_USER, Pages
from balloonsim.kernel.watermarks import compute_reserves, mult_frac
from balloonsim.units import PAGES_PER_GIB as GiB_PAGES
from conftest import make_mm


def default_min_free_kbytes(pages):
    return compute_reserves([ZoneSpan("Normal", pages, pages)], thp=False).min_free_kbytes


def test_min_free_kbytes_matches_the_kernel_comment_table():
    # mm/page_alloc.c: "4096MB: 8192k", "16384MB: 16384k" for that much lowmem
    assert default_min_free_kbytes(4 * GiB_PAGES) == 8192
    assert default_min_free_kbytes(16 * GiB_PAGES) == 16384
    assert default_min_free_kbytes(256) == 128  # clamped up
    assert default_min_free_kbytes(2**40) == 262144  # clamped down


def test_4gib_hvm_guest_reserves_derived_by_hand():
    # zones of a 4 GiB HVM guest: DMA 3999 present / 3977 managed; DMA32 up to the
    # PCI hole at 3.75 GiB; the rest relocated above 4 GiB into Normal; managed 98 %
    dma, dma32_present = 3977, 3840 * 256 - 4096
    dma32 = dma32_present * 98 // 100
    normal = (4 * GiB_PAGES - 3999 - dma32_present) * 98 // 100
    lowmem = dma + dma32 + normal
    min_free_kbytes = math.isqrt(lowmem * 4 * 16)
    assert min_free_kbytes == 8109  # int_sqrt(lowmem_kbytes * 16), derived above
    pages_min = min_free_kbytes // 4
    mins = [pages_min * z // lowmem for z in (dma, dma32, normal)]
    deltas = [max(m // 4, z * 10 // 10000) for m, z in zip(mins, (dma, dma32, normal), strict=True)]
    lows = [m + d for m, d in zip(mins, deltas, strict=True)]
    highs = [m + 2 * d for m, d in zip(mins, deltas, strict=True)]
    reserve_dma = max(dma32 // 256, (dma32 + normal) // 256)  # lowmem_reserve ratio 256
    reserve_dma32 = normal // 256
    totalreserve = min(dma, reserve_dma + highs[0]) + min(dma32, reserve_dma32 + highs[1]) + highs[2]

    r = compute_reserves(zone_layout(ARCHES["x86_64"], "hvm", 4 * GiB_PAGES), thp=False)
    assert r.min_free_kbytes == min_free_kbytes
    assert [z.wmark_min for z in r.zones] == mins
    assert [z.wmark_low for z in r.zones] == lows
    assert [z.wmark_high for z in r.zones] == highs
    assert r.totalreserve_pages == totalreserve
    assert r.wmark_low_total == sum(lows)
    # the DMA zone gives all its managed pages (its lowmem_reserve exceeds its size)
    assert min(dma, reserve_dma + highs[0]) == dma


@pytest.mark.parametrize(
    "gib, min_free_kbytes, low_total, totalreserve",
    [(4, None, 3.0e3, 8.3e3), (16, None, 8.2e3, 28.5e3), (4, 67584, 21e3, 29.5e3), (16, 67584, 21e3, 41.6e3)],
)
def test_kernel_facts_magnitude_table(gib, min_free_kbytes, low_total, totalreserve):
    spans = zone_layout(ARCHES["x86_64"], "hvm", gib * GiB_PAGES)
    r = compute_reserves(spans, min_free_kbytes=min_free_kbytes, thp=False)
    assert r.wmark_low_total == pytest.approx(low_total, rel=0.02)
    assert r.totalreserve_pages == pytest.approx(totalreserve, rel=0.01)


def test_highmem_zone_min_watermark_is_clamped():
    spans = [ZoneSpan("Normal", 200000, 200000), ZoneSpan("HighMem", 50000, 50000, highmem=True)]
    r = compute_reserves(spans, thp=False)
    assert r.zones[1].wmark_min == 48  # 50000 // 1024, within [SWAP_CLUSTER_MAX=32, 128]
    assert r.zones[0].lowmem_reserve[1] == 50000 // 32  # Normal's ratio is 32


def test_mult_frac():
    assert mult_frac(959365, 10, 10000) == 959365 * 10 // 10000
    assert mult_frac(7, 3, 2) == 10


def test_mem_available_is_the_kernel_formula():
    mm = make_mm(free_low=10000, totalreserve_pages=3000, wmark_low_total=500)
    assert mm.si_mem_available() == 7000  # free - totalreserve
    mm.page_cache = Pages(4000)  # half of it (at most wmark_low) is kept
    assert mm.si_mem_available() == 7000 + 4000 - 500
    mm.page_cache = Pages(600)
    assert mm.si_mem_available() == 7000 + 600 - 300
    mm.slab = Pages(2000)
    assert mm.si_mem_available() == 7000 + 300 + 1500
    mm.free_low, mm.page_cache, mm.slab = 100, Pages(), Pages()
    assert mm.si_mem_available() == 0  # never negative
    mm.mem_available_fixed = 42
    assert mm.si_mem_available() == 42


def test_gfp_balloon_prefers_highmem_and_stops_at_its_floor():
    failures = []
    mm = make_mm(free_low=100, free_high=50, floor_balloon=120, on_alloc=lambda *a: failures.append(a))
    assert mm.alloc_pages(40, GFP_BALLOON) == (0, 30)  # free 150 - floor 120
    assert failures == [(GFP_BALLOON, 40, 30, 0)]
    mm = make_mm(free_low=100, free_high=50)
    assert mm.alloc_pages(80, GFP_BALLOON) == (30, 50)  # highmem first, then lowmem


def test_gfp_user_takes_lowmem_only():
    mm = make_mm(free_low=10, free_high=1000)
    assert mm.alloc_pages(20, GFP_USER) == (10, 0)
    mm = make_mm(free_low=100, free_high=0, floor_user=95)
    assert mm.alloc_pages(20, GFP_USER) == (5, 0)


def test_programs_take_highmem_first_and_give_back_the_latest_pages():
    mm = make_mm(free_low=1000, free_high=50)
    assert mm.take(100) == 100  # 50 highmem, then 50 lowmem
    assert (mm.free_low, mm.free_high) == (950, 0)
    assert mm.give(60) == 60  # the 50 lowmem pages, then 10 highmem
    assert (mm.free_low, mm.free_high) == (1000, 10)
    assert mm.give(100) == 40 and mm.programs.pages == 0
    assert mm.take(5000) == 1050  # no more than there is
