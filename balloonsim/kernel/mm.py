"""The guest's page allocator and memory counters, as the balloon driver sees them.

Pages are counts.  Free pages are kept per zone class, lowmem and highmem,
because that is all the driver can tell apart (``PageHighMem``); on 64-bit
guests every page is lowmem.  The allocator follows the kernel where the
driver depends on it (kernel-facts §5):

* ``GFP_BALLOON`` (``GFP_HIGHUSER | __GFP_NORETRY | ...``) prefers highmem,
  takes lowmem when there is none, and fails (no OOM, no retry) once free
  memory is at its floor, the min watermarks plus lowmem reserves;
* ``GFP_USER`` takes lowmem only, with its own floor;
* ``si_mem_available()`` is the kernel's MemAvailable formula.

The floors are compared with the guest's total free pages, as the oracle
harness does.  Page cache, reclaim and the OOM killer come with the richer
guest model of a later issue; here cache and reclaimable slab are counters
that the formula already reads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Gfp:
    name: str
    highmem: bool  # __GFP_HIGHMEM: may use highmem (and prefers it)


GFP_BALLOON = Gfp("GFP_BALLOON", highmem=True)
GFP_USER = Gfp("GFP_USER", highmem=False)


class GuestMemory:
    def __init__(
        self,
        *,
        free_low: int,
        free_high: int,
        managed: int,
        totalreserve_pages: int,
        wmark_low_total: int,
        floor_balloon: int,
        floor_user: int,
        mem_available: int | None = None,
        on_alloc: Callable[[Gfp, int, int, int], None] | None = None,
    ):
        self.free_low = free_low
        self.free_high = free_high
        self.managed_pages = managed  # MemTotal: adjust_managed_page_count() moves it
        self.totalreserve_pages = totalreserve_pages
        self.wmark_low_total = wmark_low_total
        self.floor = {GFP_BALLOON: floor_balloon, GFP_USER: floor_user}
        self.mem_available_fixed = mem_available  # None: computed
        self.page_cache = 0  # active + inactive file pages
        self.reclaimable = 0  # SLAB_RECLAIMABLE + KERNEL_MISC_RECLAIMABLE
        self._on_alloc = on_alloc  # (gfp, wanted, got, reclaimed) after alloc_pages()

    @property
    def free_pages(self) -> int:
        return self.free_low + self.free_high

    def si_mem_available(self) -> int:
        """MemAvailable: free - totalreserve + the reclaimable half of cache and slab, at least 0."""
        if self.mem_available_fixed is not None:
            return self.mem_available_fixed
        available = self.free_pages - self.totalreserve_pages
        available += self.page_cache - min(self.page_cache // 2, self.wmark_low_total)
        available += self.reclaimable - min(self.reclaimable // 2, self.wmark_low_total)
        return max(0, available)

    def alloc_pages(self, count: int, gfp: Gfp) -> tuple[int, int]:
        """``count`` calls of alloc_page(gfp), stopping at the first failure.

        Returns the (lowmem, highmem) pages obtained.  Each call fails when
        free memory is at or below the gfp's floor, or when no page of an
        allowed zone is free.
        """
        got = min(count, self.alloc_room(gfp))
        high = min(got, self.free_high) if gfp.highmem else 0  # highmem first when allowed
        low = got - high
        self.free_low -= low
        self.free_high -= high
        if self._on_alloc is not None:
            self._on_alloc(gfp, count, low + high, 0)
        return low, high

    def alloc_room(self, gfp: Gfp) -> int:
        """How many alloc_page(gfp) calls in a row would succeed right now."""
        room = max(0, self.free_pages - self.floor[gfp])
        return room if gfp.highmem else min(room, self.free_low)

    def mem_available_falls_with_free(self) -> bool:
        """True when si_mem_available() moves one for one with free pages (above 0)."""
        return self.mem_available_fixed is None

    def free_reserved_pages(self, low: int, high: int) -> None:
        """free_reserved_page() for each page: back to the free lists, MemTotal grows."""
        self.free_low += low
        self.free_high += high
        self.managed_pages += low + high

    def adjust_managed_page_count(self, delta: int) -> None:
        self.managed_pages += delta

    def take(self, count: int) -> tuple[int, int]:
        """A program's allocation: highmem first, then lowmem, regardless of floors."""
        high = min(count, self.free_high)
        low = min(count - high, self.free_low)
        self.free_high -= high
        self.free_low -= low
        return low, high

    def give(self, low: int, high: int) -> None:
        """A program frees pages it took."""
        self.free_low += low
        self.free_high += high
