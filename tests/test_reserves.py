"""Transparent hugepages, a user's min_free_kbytes, the recompute when memory is onlined and the
memmap hot-added memory costs, against values derived by hand from mm/page_alloc.c
(init_per_zone_wmark_min, __setup_per_zone_wmarks, setup_per_zone_lowmem_reserve,
calculate_totalreserve_pages), mm/khugepaged.c (set_recommended_min_free_kbytes) and
mm/memory_hotplug.c (online_pages) of v5.12."""

from balloonsim.arch import ARCHES, zone_layout
from balloonsim.kernel.watermarks import compute_reserves, init_per_zone_wmark_min, zones_now
from conftest import GiB, MiB, make_scenario, run

# A 4 GiB x86_64 HVM guest's zones (see test_kernel_memory): DMA 3977 managed pages, DMA32
# 978944 present / 959365 managed, Normal 65633 present / 64320 managed; 1027662 lowmem pages.
DMA, DMA32, NORMAL = 3977, 959365, 64320
FOUR_GIB = zone_layout(ARCHES["x86_64"], "hvm", 4 * GiB)
AUTO = {"totalreserve_pages": "auto", "floor_balloon": "auto", "floor_user": "auto"}


def test_4gib_guest_with_thp_derived_by_hand():
    # khugepaged: 11 pageblocks of 512 pages for each of the 3 populated zones = 16896 pages =
    # 67584 KiB, under 5 % of the lowmem above the high watermarks (about 1.02 M pages / 20)
    r = compute_reserves(FOUR_GIB, thp=True)
    assert r.min_free_kbytes == 512 * 3 * 11 * 4 == 67584
    # pages_min 16896 shared by managed pages: 16896 * 3977 // 1027662 = 65,
    # 16896 * 959365 // 1027662 = 15773, 16896 * 64320 // 1027662 = 1057; delta = max(min / 4,
    # managed / 1000): 16, 3943, 264; low = min + delta, high = min + 2 delta
    assert [z.wmark_min for z in r.zones] == [65, 15773, 1057]
    assert [z.wmark_low for z in r.zones] == [81, 19716, 1321]
    assert [z.wmark_high for z in r.zones] == [97, 23659, 1585]
    assert r.wmark_low_total == 81 + 19716 + 1321 == 21118
    # lowmem_reserve (ratio 256): DMA against Normal (959365 + 64320) // 256 = 3998, DMA32 against
    # Normal 64320 // 256 = 251; totalreserve = Σ min(managed, high + largest reserve)
    assert r.zones[0].lowmem_reserve == (0, 3747, 3998) and r.zones[1].lowmem_reserve == (0, 0, 251)
    assert r.totalreserve_pages == min(DMA, 97 + 3998) + min(DMA32, 23659 + 251) + 1585 == 29472
    assert r.totalreserve_pages * 4 // 1024 == 115  # MiB (32 MiB without THP, below)
    assert r.alloc_floor(True, "min") == 3977 + (15773 + 251) + 1057 == 21058
    assert r.alloc_floor(True, "low") == 3977 + (19716 + 251) + 1321 == 25265


def test_a_set_min_free_kbytes_wins_over_khugepaged_at_boot():
    # the sysctl is written from userspace after khugepaged started: 16384 KiB stays.
    # pages_min 4096: 4096 * 3977 // 1027662 = 15, 4096 * 959365 // 1027662 = 3823,
    # 4096 * 64320 // 1027662 = 256; deltas max(3, 3), max(955, 959), max(64, 64); highs 21, 5741, 384
    r = compute_reserves(FOUR_GIB, min_free_kbytes=16384, thp=True)
    assert r.min_free_kbytes == 16384
    assert [z.wmark_high for z in r.zones] == [15 + 6, 3823 + 2 * 959, 256 + 2 * 64] == [21, 5741, 384]
    assert r.totalreserve_pages == min(DMA, 21 + 3998) + min(DMA32, 5741 + 251) + 384 == 10353


def guest_available(kernel):
    """MemAvailable of an all-free 4 GiB guest at boot: free pages - totalreserve_pages."""
    r = run(make_scenario(domain={"memory": "4GiB", "kernel": {**AUTO, **kernel}}, duration="1s"))
    return r.domain("g").iloc[0]["mem_available"]


def test_thp_is_on_by_default_and_a_scenario_can_turn_it_off():
    assert guest_available({}) == 4 * GiB - 29472  # the test above
    assert guest_available({"thp": False}) == 4 * GiB - 8292  # test_kernel_memory
    assert guest_available({"min_free_kbytes": 16384}) == 4 * GiB - 10353


def test_onlining_recomputes_min_free_kbytes_from_lowmem_above_the_high_watermarks():
    # Without THP.  At boot the high watermarks are 0: int_sqrt(1027662 * 4 * 16) = 8109 KiB, highs
    # 13, 3810, 254.  Onlining a section whose pages stay in the balloon (present, not managed)
    # recomputes from (3977 - 13) + (959365 - 3810) + (64320 - 254) = 1023585 pages:
    # int_sqrt(1023585 * 4 * 16) = 8093 (8093² = 65496649 <= 65509440 < 8094²): a little less.
    boot = compute_reserves(FOUR_GIB, thp=False)
    assert (boot.min_free_kbytes, boot.totalreserve_pages) == (8109, 8292)
    zones = zones_now(FOUR_GIB, 32768, 0, 0)
    assert zones[2].present == 65633 + 32768 and zones[2].managed == NORMAL
    r = init_per_zone_wmark_min(zones, boot, user_min_free_kbytes=None, watermark_scale_factor=10, khugepaged=False)
    assert r.min_free_kbytes == 8093
    # pages_min 2023: mins 7, 1888, 126; deltas 3, 959, 64; highs 13, 3806, 254
    assert [z.wmark_high for z in r.zones] == [13, 3806, 254]
    assert r.totalreserve_pages == DMA + (3806 + 251) + 254 == 8288


def test_onlining_lets_khugepaged_raise_a_users_value():
    # min_free_kbytes 16384 set at boot (highs 21, 5741, 384, above).  Onlining: the new default
    # int_sqrt((3956 + 953624 + 63936) * 4 * 16) = 8085 is not above the user's value, which stays;
    # then khugepaged_min_free_kbytes_update() (v5.10 on) raises it to its 67584, as at boot with
    # THP and no user value (totalreserve 29472): on a recompute the user's value loses.
    boot = compute_reserves(FOUR_GIB, min_free_kbytes=16384, thp=True)
    zones = zones_now(FOUR_GIB, 32768, 0, 0)
    kw = {"user_min_free_kbytes": 16384, "watermark_scale_factor": 10}
    raised = init_per_zone_wmark_min(zones, boot, khugepaged=True, **kw)
    assert (raised.min_free_kbytes, raised.totalreserve_pages) == (67584, 29472)
    kept = init_per_zone_wmark_min(zones, boot, khugepaged=False, **kw)
    assert (kept.min_free_kbytes, kept.totalreserve_pages) == (16384, 10353)


def hotplug_guest(events, memory="2GiB", **kernel):
    return make_scenario(
        events,
        domain={
            "memory": memory,
            "max_pages": "8GiB",
            "kernel": {**AUTO, "hotplug": {"enabled": True}, **kernel},
        },
        host={"free": "4GiB"},
        duration="5s",
    )


def test_onlining_a_section_populates_a_zone_and_khugepaged_counts_it():
    # A 2 GiB HVM guest has DMA (3977 managed) and DMA32 (520289 present, 509883 managed) only:
    # khugepaged's 2 zones x 11 x 512 = 11264 pages = 45056 KiB.  pages_min 11264: mins
    # 11264 * 3977 // 513860 = 87 and 11264 * 509883 // 513860 = 11176, deltas 21 and 2794,
    # highs 129 and 16764; DMA's reserve 509883 // 256 = 1991; totalreserve
    # min(3977, 129 + 1991) + 16764 = 18884.
    # A target 100 MiB higher hot-adds one 128 MiB section; onlined, it makes ZONE_NORMAL present
    # (its pages are in the balloon, not managed): 3 zones, 16896 pages = 67584 KiB.  pages_min
    # 16896: mins 130 and 16765, deltas 32 and 4191, highs 194 and 25147; totalreserve
    # min(3977, 194 + 1991) + 25147 = 27332.
    r = run(hotplug_guest([{"at": "1s", "target": f"{2 * GiB + 100 * MiB} pages"}]))
    tl = r.domain("g")
    assert tl.iloc[0]["mem_available"] == 2 * GiB - 18884
    (event,) = r.events[r.events["kind"] == "reserves_recomputed"].itertuples()
    assert (event.pages, event.value) == (27332, 67584)
    assert "totalreserve_pages 18884 -> 27332" in event.message
    # then the balloon populates 25600 pages; the memmap took 32768 / 64 = 512
    last = tl.iloc[-1]
    assert last["current_pages"] == 2 * GiB + 100 * MiB
    assert last["guest_free"] == 2 * GiB - 512 + 100 * MiB
    assert last["mem_available"] == last["guest_free"] - 27332


def test_a_fixed_totalreserve_stays_when_memory_is_onlined():
    r = run(hotplug_guest([{"at": "1s", "target": f"{2 * GiB + 100 * MiB} pages"}], totalreserve_pages=1000))
    last = r.domain("g").iloc[-1]
    assert last["mem_available"] == last["guest_free"] - 1000
    assert "(fixed)" in r.events[r.events["kind"] == "reserves_recomputed"]["message"].iloc[0]


def test_hot_added_sections_cost_their_memmap():
    # 300 MiB more rounds up to 3 sections of 32768 pages; 64 bytes of struct page per 4 KiB page:
    # 98304 * 64 / 4096 = 1536 pages (6 MiB) of kernel memory, taken from free memory at the add
    r = run(hotplug_guest([{"at": "1s", "target": f"{2 * GiB + 300 * MiB} pages"}]))
    tl = r.domain("g")
    first, last = tl.iloc[0], tl.iloc[-1]
    assert last["kernel_pages"] - first["kernel_pages"] == 98304 // 64 == 1536
    assert last["guest_free"] == 2 * GiB - 1536 + 300 * MiB  # populated: everything but the memmap
    (memmap,) = r.events[r.events["kind"] == "memmap"].itertuples()
    assert (memmap.pages, memmap.value) == (1536, 98304)


def test_a_32_bit_guests_memmap_is_36_bytes_a_page():
    # x86_32: a 512 MiB section of 131072 pages, 36-byte struct pages: 131072 * 36 / 4096 = 1152
    r = run(hotplug_guest([{"at": "1s", "target": f"{512 * MiB + 1} pages"}], memory="512MiB", arch="x86_32"))
    (memmap,) = r.events[r.events["kind"] == "memmap"].itertuples()
    assert (memmap.pages, memmap.value) == (131072 * 36 // 4096, 131072) == (1152, 131072)


def test_without_memory_for_the_memmap_the_add_fails_and_the_driver_cancels():
    # the programs hold all but 100 free pages; the memmap of one section needs 512, there is no
    # cache, slab or swap to reclaim, and the allocation never calls the OOM killer: -ENOMEM
    events = [{"at": "0s", "take": 2 * GiB - 100}, {"at": "1s", "target": f"{2 * GiB + 1} pages"}]
    r = run(hotplug_guest(events, floor_user=0))
    messages = r.events["message"].tolist()
    assert "[warn] Cannot add additional memory (-12)" in messages
    assert r.summary.iloc[0]["final_state"] == "ECANCELED" and r.summary.iloc[0]["pages_hotplugged"] == 0
    assert r.domain("g").iloc[-1]["guest_free"] == 100


def test_zones_now_counts_ballooned_out_pages_against_the_highest_zones_first():
    # 100000 pages ballooned out of the 4 GiB guest: Normal's 64320 managed pages first, then
    # 35680 of DMA32's; a section onlined is present in Normal
    dma, dma32, normal = zones_now(FOUR_GIB, 32768, 0, -100000)
    assert (dma.managed, dma32.managed, normal.managed) == (DMA, DMA32 - 35680, 0)
    assert normal.present == 65633 + 32768 and dma32.present == 978944
    # populated hot-added pages are managed in Normal
    assert zones_now(FOUR_GIB, 32768, 0, 32768)[2].managed == NORMAL + 32768
    # a 32-bit guest's onlined highmem pages are present in HighMem, its lowmem ones in Normal
    x86_32 = zone_layout(ARCHES["x86_32"], "hvm", 512 * MiB)
    normal32, high32 = zones_now(x86_32, 98304, 32768, 0)[1:]
    assert (normal32.present, high32.present) == (x86_32[1].present + 98304, x86_32[2].present + 32768)
