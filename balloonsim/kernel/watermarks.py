"""The page allocator's reserves, computed the way mm/page_alloc.c (v5.12) does at boot.

``init_per_zone_wmark_min`` derives ``min_free_kbytes`` from lowmem,
``__setup_per_zone_wmarks`` splits it into per-zone min/low/high watermarks,
``setup_per_zone_lowmem_reserve`` protects lower zones from allocations that
could use higher ones, and ``calculate_totalreserve_pages`` adds it all up.
The kernel computes these at boot (and on sysctl or hotplug changes), not
when the balloon changes managed pages, so neither does balloonsim.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from balloonsim.kernel.arch import ZoneSpan

SWAP_CLUSTER_MAX = 32
MIN_FREE_KBYTES_FLOOR = 128
MIN_FREE_KBYTES_CEILING = 262144  # 5.x/6.x bound (kernel-facts §5)
# sysctl_lowmem_reserve_ratio defaults by zone (HighMem and Movable: 0, no reserve)
LOWMEM_RESERVE_RATIO = {"DMA": 256, "DMA32": 256, "Normal": 32, "HighMem": 0}


@dataclass(frozen=True)
class Zone:
    name: str
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

    def alloc_floor(self, highmem_ok: bool) -> int:
        """Free pages an order-0 allocation cannot go below.

        An allocation may use the highest zone its gfp allows (the classzone)
        and every zone under it; each zone keeps its min watermark plus its
        ``lowmem_reserve`` against the classzone (``zone_watermark_ok`` on the
        slow path, which __GFP_NORETRY allocations reach without retrying).
        """
        usable = [i for i, z in enumerate(self.zones) if z.managed and (highmem_ok or not z.highmem)]
        if not usable:
            return 0
        classzone = usable[-1]
        return sum(
            min(z.managed, z.wmark_min + z.lowmem_reserve[classzone])
            for z in self.zones[: classzone + 1]
            if not z.highmem or highmem_ok
        )


def mult_frac(x: int, numer: int, denom: int) -> int:
    """The kernel's mult_frac(): x * numer / denom without overflowing."""
    return (x // denom) * numer + ((x % denom) * numer) // denom


def default_min_free_kbytes(spans: list[ZoneSpan]) -> int:
    """init_per_zone_wmark_min(): int_sqrt(lowmem_kbytes * 16), clamped.

    ``nr_free_buffer_pages()`` at boot is the managed pages of the zones a
    GFP_USER allocation may use (the high watermarks are still zero).
    """
    lowmem_kbytes = sum(s.managed for s in spans if not s.highmem) * 4
    value = math.isqrt(lowmem_kbytes * 16)
    return min(max(value, MIN_FREE_KBYTES_FLOOR), MIN_FREE_KBYTES_CEILING)


def compute_reserves(
    spans: list[ZoneSpan], *, min_free_kbytes: int | None = None, watermark_scale_factor: int = 10
) -> Reserves:
    if min_free_kbytes is None:
        min_free_kbytes = default_min_free_kbytes(spans)
    pages_min = min_free_kbytes >> 2
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
        Zone(s.name, s.managed, s.highmem, *marks[i], lowmem_reserve=reserves[i]) for i, s in enumerate(spans)
    )
    total = 0  # calculate_totalreserve_pages
    for i, z in enumerate(zones):
        reserve = max([0, *z.lowmem_reserve[i:]]) + z.wmark_high
        total += min(reserve, z.managed)
    return Reserves(min_free_kbytes, zones, total)
