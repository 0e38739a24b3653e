"""The page allocator's reserves, computed the way mm/page_alloc.c (v5.12) does.

``init_per_zone_wmark_min`` derives ``min_free_kbytes`` from lowmem (and
with transparent hugepages khugepaged raises it, ``set_recommended_min_free_kbytes``),
``__setup_per_zone_wmarks`` splits it into per-zone min/low/high watermarks,
``setup_per_zone_lowmem_reserve`` protects lower zones from allocations that
could use higher ones, and ``calculate_totalreserve_pages`` adds it all up.
The kernel computes these at boot and again when memory is onlined
(``online_pages``), not when the balloon changes managed pages, so neither
does balloonsim.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass

from balloonsim.arch import ZoneSpan
from balloonsim.units import kib_to_pages, pages_to_kib

SWAP_CLUSTER_MAX = 32
PAGEBLOCK_PAGES = 512  # pageblock_nr_pages: 2 MiB (HPAGE_PMD_ORDER 9)
MIGRATE_PCPTYPES = 3
MIN_FREE_KBYTES_FLOOR = 128
MIN_FREE_KBYTES_CEILING = 262144  # init_per_zone_wmark_min()'s bound in 5.x/6.x (mm/page_alloc.c)
# sysctl_lowmem_reserve_ratio defaults by zone (HighMem and Movable: 0, no reserve)
LOWMEM_RESERVE_RATIO = {"DMA": 256, "DMA32": 256, "Normal": 32, "HighMem": 0}


@dataclass(frozen=True)
class Zone:
    name: str
    present: int
    managed: int
    highmem: bool
    wmark_min: int
    wmark_low: int
    wmark_high: int
    lowmem_reserve: tuple[int, ...]  # indexed by the zone an allocation may also use


@dataclass(frozen=True)
class Reserves:
    min_free_kbytes: int
    zones: tuple[Zone, ...]
    totalreserve_pages: int

    @property
    def wmark_low_total(self) -> int:
        """Σ low watermarks: the ``wmark_low`` of ``si_mem_available()``."""
        return sum(z.wmark_low for z in self.zones)

    def alloc_floor(self, highmem_ok: bool, mark: str = "min") -> int:
        """Free pages an order-0 allocation cannot go below (at the given watermark).

        An allocation may use the highest zone its gfp allows (the classzone)
        and every zone under it; each zone keeps its watermark plus its
        ``lowmem_reserve`` against the classzone (``zone_watermark_ok``: the
        fast path checks the low marks, the slow path, which __GFP_NORETRY
        allocations reach without retrying, the min ones; kswapd works from
        the low marks up to the high ones).
        """
        usable = [i for i, z in enumerate(self.zones) if z.managed and (highmem_ok or not z.highmem)]
        if not usable:
            return 0
        classzone = usable[-1]
        return sum(
            min(z.managed, getattr(z, f"wmark_{mark}") + z.lowmem_reserve[classzone])
            for z in self.zones[: classzone + 1]
            if not z.highmem or highmem_ok
        )


def mult_frac(x: int, numer: int, denom: int) -> int:
    """The kernel's mult_frac(): x * numer / denom without overflowing."""
    return (x // denom) * numer + ((x % denom) * numer) // denom


def nr_free_buffer_pages(spans: Sequence[ZoneSpan], highs: Sequence[int]) -> int:
    """nr_free_buffer_pages(): managed pages above the high watermark in the zones a GFP_USER
    allocation may use (up to ZONE_NORMAL: not highmem)."""
    return sum(max(0, s.managed - high) for s, high in zip(spans, highs, strict=True) if not s.highmem)


def recommended_min_free_kbytes(reserves: Reserves) -> int:
    """khugepaged's set_recommended_min_free_kbytes(): 11 pageblocks per populated zone up to
    ZONE_NORMAL (2 free for fragmentation avoidance, 3 x 3 for the migrate types), at most
    5 % of nr_free_buffer_pages().  A zone is populated when it has present pages
    (populated_zone()), even if none is managed yet (hot-added memory still in the balloon)."""
    zones = [z for z in reserves.zones if z.present and not z.highmem]
    recommended = PAGEBLOCK_PAGES * len(zones) * (2 + MIGRATE_PCPTYPES * MIGRATE_PCPTYPES)
    free_buffer_pages = sum(max(0, z.managed - z.wmark_high) for z in zones)
    return pages_to_kib(min(recommended, free_buffer_pages // 20))


def init_per_zone_wmark_min(
    spans: Sequence[ZoneSpan],
    previous: Reserves | None,
    *,
    user_min_free_kbytes: int | None,
    watermark_scale_factor: int,
    khugepaged: bool,
) -> Reserves:
    """init_per_zone_wmark_min() (mm/page_alloc.c), at boot (``previous`` None) or when memory is
    onlined: min_free_kbytes from the lowmem above the present high watermarks, unless a user's
    value is at least as large (then the present value stays); the watermarks, lowmem_reserve and
    totalreserve; then, since v5.10, khugepaged_min_free_kbytes_update(), which raises
    min_free_kbytes to khugepaged's recommendation when that is larger, a user's value or not
    (mm/khugepaged.c)."""
    highs = [0] * len(spans) if previous is None else [z.wmark_high for z in previous.zones]  # 0 at boot
    new = math.isqrt(pages_to_kib(nr_free_buffer_pages(spans, highs)) * 16)
    if user_min_free_kbytes is None or new > user_min_free_kbytes:
        min_free_kbytes = min(max(new, MIN_FREE_KBYTES_FLOOR), MIN_FREE_KBYTES_CEILING)
    else:
        assert previous is not None, "a user's min_free_kbytes is written after boot"
        min_free_kbytes = previous.min_free_kbytes
    reserves = _setup_reserves(spans, min_free_kbytes, watermark_scale_factor)
    if khugepaged:
        recommended = recommended_min_free_kbytes(reserves)
        if recommended > min_free_kbytes:
            reserves = _setup_reserves(spans, recommended, watermark_scale_factor)
    return reserves


def compute_reserves(
    spans: Sequence[ZoneSpan],
    *,
    min_free_kbytes: int | None = None,
    watermark_scale_factor: int = 10,
    thp: bool,
) -> Reserves:
    """The reserves once booted: init_per_zone_wmark_min() (a postcore initcall); with ``thp``,
    khugepaged's raise when it starts (hugepage_init(), a later initcall); then a user's
    ``min_free_kbytes``, written through sysctl from userspace after both, so it wins
    (min_free_kbytes_sysctl_handler(): setup_per_zone_wmarks() with the user's value)."""
    reserves = init_per_zone_wmark_min(
        spans, None, user_min_free_kbytes=None, watermark_scale_factor=watermark_scale_factor, khugepaged=thp
    )
    if min_free_kbytes is not None:
        reserves = _setup_reserves(spans, min_free_kbytes, watermark_scale_factor)
    return reserves


def zones_now(boot: Sequence[ZoneSpan], onlined_low: int, onlined_high: int, managed_change: int) -> list[ZoneSpan]:
    """The zones after boot, for a recompute: onlined hot-added pages are present in the highest
    zone of their class (ZONE_NORMAL, the default kernel zone of online_pages(); HighMem on 32-bit
    guests); the managed pages gained since boot (populated hot-added memory) count in the highest
    zone, and those lost (ballooned out) come from the highest zones first, as GFP_HIGHUSER
    allocations fall back down the zonelist (an approximation: the model does not track the zone
    of each ballooned page)."""
    zones = list(boot)
    for pages, highmem in ((onlined_low, False), (onlined_high, True)):
        if pages:
            i = max(i for i, z in enumerate(zones) if z.highmem == highmem)
            zones[i] = dataclasses.replace(zones[i], present=zones[i].present + pages)
    if managed_change > 0:
        zones[-1] = dataclasses.replace(zones[-1], managed=zones[-1].managed + managed_change)
    lost = -managed_change
    for i in reversed(range(len(zones))):
        if lost <= 0:
            break
        taken = min(lost, zones[i].managed)
        zones[i] = dataclasses.replace(zones[i], managed=zones[i].managed - taken)
        lost -= taken
    return zones


def _setup_reserves(spans: Sequence[ZoneSpan], min_free_kbytes: int, watermark_scale_factor: int) -> Reserves:
    pages_min = kib_to_pages(min_free_kbytes)
    lowmem_pages = sum(s.managed for s in spans if not s.highmem) or 1

    marks = []  # __setup_per_zone_wmarks
    for s in spans:
        share = pages_min * s.managed // lowmem_pages
        if s.highmem:
            wmin = min(max(s.managed // 1024, SWAP_CLUSTER_MAX), 128)
        else:
            wmin = share
        delta = max(share >> 2, mult_frac(s.managed, watermark_scale_factor, 10000))
        marks.append((wmin, wmin + delta, wmin + 2 * delta))

    n = len(spans)
    reserves = []  # setup_per_zone_lowmem_reserve
    for i, s in enumerate(spans):
        ratio = LOWMEM_RESERVE_RATIO.get(s.name, 0)
        clear = not ratio or not s.managed
        row = [0] * n
        above = 0
        for j in range(i + 1, n):
            above += spans[j].managed
            row[j] = 0 if clear else above // ratio
        reserves.append(tuple(row))

    zones = tuple(
        Zone(s.name, s.present, s.managed, s.highmem, *marks[i], lowmem_reserve=reserves[i])
        for i, s in enumerate(spans)
    )
    total = 0  # calculate_totalreserve_pages
    for i, z in enumerate(zones):
        reserve = max([0, *z.lowmem_reserve[i:]]) + z.wmark_high
        total += min(reserve, z.managed)
    return Reserves(min_free_kbytes, zones, total)
