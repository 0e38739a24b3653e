"""The guest's memory: free pages, who holds the rest, the page allocator, reclaim, MemAvailable.

Pages are counts, kept per zone class, lowmem and highmem, because that is
all the balloon driver can tell apart (``PageHighMem``); on 64-bit guests
every page is lowmem.  A populated page is free or held by one of:

* the kernel (``used_at_boot``: text, data, unreclaimable slab; the memmap of
  hot-added memory), never freed;
* the scripted programs of ``take``/``give`` events (``programs``);
* the workloads' tasks, as anonymous memory (``kernel.tasks``);
* the page cache (file pages), reclaimable;
* reclaimable slab (dentries, inodes), reclaimable.

The allocator follows the kernel where the model depends on it
(mm/page_alloc.c, mm/vmscan.c, mm/util.c of v5.12).  Zone watermarks are summed over the zones an
allocation may use, with their ``lowmem_reserve``: the *floor* of an
allocation is the free memory it cannot take below (the min watermarks;
the fast path checks the low ones, the slow path after waking kswapd
the min ones); free memory under the *low* floor wakes kswapd, which
reclaims up to the *high* floor.

* ``GFP_BALLOON`` (``GFP_HIGHUSER | __GFP_NORETRY | __GFP_NOMEMALLOC``)
  prefers highmem; at its floor it tries one light round of direct reclaim
  (``SWAP_CLUSTER_MAX`` pages of cache or slab, or with swap anonymous
  pages, per failing call) and fails when that frees nothing: no retry
  loop, no OOM killer.
* ``GFP_USER`` (``add_ballooned_pages``) takes lowmem only, with its own
  floor; without ``__GFP_NORETRY`` it reclaims what it needs and then,
  through ``make_room``, swaps and calls the OOM killer.
* ``si_mem_available()`` is the kernel's MemAvailable formula.

Floors and MemAvailable are compared with the guest's total free pages, as
the oracle harness does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from balloonsim.columns import Column
from balloonsim.kernel.interface import GFP_BALLOON, GFP_HIGHUSER_MOVABLE, GFP_USER, Gfp
from balloonsim.kernel.watermarks import SWAP_CLUSTER_MAX  # pages one direct-reclaim round aims to free

#: make_room(pages, lowmem_only, may_oom): what reclaim does when page cache and slab are not
#: enough: swap anonymous pages out, then (if allowed) call the OOM killer; the pages it freed
MakeRoom = Callable[[int, bool, bool], int]


@dataclass(slots=True)
class Pages:
    """Pages held by one holder, by zone class."""

    low: int = 0
    high: int = 0

    @property
    def total(self) -> int:
        return self.low + self.high

    def add(self, low: int, high: int) -> None:
        self.low += low
        self.high += high

    def remove(self, count: int, lowmem_only: bool = False) -> tuple[int, int]:
        """Up to ``count`` pages, highmem first (lowmem only if asked): (lowmem, highmem) removed."""
        high = 0 if lowmem_only else min(count, self.high)
        low = min(count - high, self.low)
        self.low -= low
        self.high -= high
        return low, high


class LifoPages:
    """The scripted programs' pages: freed most recently allocated first.

    Allocations take highmem first, then lowmem, so of one allocation the
    lowmem part is the most recent.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[int, int]] = []  # (lowmem, highmem) per allocation, oldest first
        self.pages = 0

    def add(self, low: int, high: int) -> None:
        if high:
            self._runs.append((0, high))
        if low:
            self._runs.append((low, 0))
        self.pages += low + high

    def remove(self, count: int) -> tuple[int, int]:
        """The ``count`` most recent pages (fewer if fewer are held): (lowmem, highmem)."""
        low = high = 0
        while low + high < count and self._runs:
            run_low, run_high = self._runs.pop()
            n = min(count - low - high, run_low + run_high)
            rest = run_low + run_high - n
            if rest:
                self._runs.append((rest, 0) if run_low else (0, rest))
            if run_low:
                low += n
            else:
                high += n
        self.pages -= low + high
        return low, high


class GuestMemory:
    COLUMNS = (
        Column("guest_free"),
        Column("mem_available"),  # MemAvailable
        Column("mem_total"),  # MemTotal: managed pages
        Column("kernel_pages"),
        Column("page_cache"),
        Column("slab_reclaimable"),
        Column("swap_pages"),
    )

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
        low_floor: int = 0,
        high_floor: int = 0,
        swap: int = 0,
        mem_available: int | None = None,
        on_alloc: Callable[[Gfp, int, int, int], None] | None = None,
    ):
        self.free_low = free_low
        self.free_high = free_high
        self.managed_pages = managed  # MemTotal: adjust_managed_page_count() moves it
        self.set_reserves(
            totalreserve_pages=totalreserve_pages,
            wmark_low_total=wmark_low_total,
            floor_balloon=floor_balloon,
            floor_user=floor_user,
            low_floor=low_floor,
            high_floor=high_floor,
        )
        self.mem_available_fixed = mem_available  # None: computed
        self.kernel = Pages()
        self.programs = LifoPages()
        self.page_cache = Pages()  # active + inactive file pages
        self.slab = Pages()  # SLAB_RECLAIMABLE + KERNEL_MISC_RECLAIMABLE
        self.swap_total = swap
        self.swap_used = 0
        self._on_alloc = on_alloc  # (gfp, wanted, got, reclaimed) after alloc_pages()
        self.make_room: MakeRoom | None = None  # set by the kernel's tasks (swap, OOM killer)

    def set_reserves(
        self,
        *,
        totalreserve_pages: int,
        wmark_low_total: int,
        floor_balloon: int,
        floor_user: int,
        low_floor: int,
        high_floor: int,
    ) -> None:
        """The reserves in force: at boot, and again when onlined memory recomputes them."""
        self.totalreserve_pages = totalreserve_pages
        self.wmark_low_total = wmark_low_total
        self.floor = {GFP_BALLOON: floor_balloon, GFP_HIGHUSER_MOVABLE: floor_balloon, GFP_USER: floor_user}
        self.low_floor = low_floor  # under it kswapd wakes
        self.high_floor = high_floor  # kswapd reclaims up to it

    def row_values(self) -> tuple[int, ...]:
        return (
            self.free_low + self.free_high,
            self.si_mem_available(),
            self.managed_pages,
            self.kernel.total,
            self.page_cache.total,
            self.slab.total,
            self.swap_used,
        )

    @property
    def free_pages(self) -> int:
        return self.free_low + self.free_high

    @property
    def reclaimable(self) -> int:
        """Pages reclaim can free without swapping: page cache and reclaimable slab."""
        return self.page_cache.total + self.slab.total

    def used_pages(self) -> int:
        """Populated pages not free, but for the tasks' anonymous pages (which the tasks count)."""
        return self.kernel.total + self.programs.pages + self.reclaimable

    def si_mem_available(self) -> int:
        """MemAvailable: free - totalreserve + the reclaimable half of cache and slab, at least 0."""
        if self.mem_available_fixed is not None:
            return self.mem_available_fixed
        available = self.free_low + self.free_high - self.totalreserve_pages
        for holder in (self.page_cache, self.slab):
            pages = holder.low + holder.high
            if pages:
                available += pages - min(pages // 2, self.wmark_low_total)
        return max(0, available)

    def mem_available_falls_with_free(self) -> bool:
        """True when si_mem_available() moves one for one with free pages (above 0)."""
        return self.mem_available_fixed is None

    # -- the page allocator --------------------------------------------------------------

    def alloc_room(self, gfp: Gfp) -> int:
        """How many alloc_page(gfp) calls in a row would succeed without reclaim."""
        room = max(0, self.free_pages - self.floor[gfp])
        return room if gfp.highmem else min(room, self.free_low)

    def take_free(self, count: int, gfp: Gfp) -> tuple[int, int]:
        """Take ``count`` free pages a gfp may use: highmem first when it may."""
        high = min(count, self.free_high) if gfp.highmem else 0
        low = count - high
        self.free_low -= low
        self.free_high -= high
        return low, high

    def alloc_pages(self, count: int, gfp: Gfp) -> tuple[int, int]:
        """``count`` calls of alloc_page(gfp) for the balloon driver, stopping at the first failure.

        At the floor, a ``__GFP_NORETRY`` call first tries one light round of
        direct reclaim; other calls reclaim what they need, then make room
        (swap, OOM killer).  The batch stops when that frees nothing.
        Returns the (lowmem, highmem) pages obtained.
        """
        low = high = reclaimed = 0
        lowmem_only = not gfp.highmem
        while True:
            got_low, got_high = self.take_free(min(count - low - high, self.alloc_room(gfp)), gfp)
            low, high = low + got_low, high + got_high
            short = count - low - high
            if not short:
                break
            wanted = -(-short // SWAP_CLUSTER_MAX) * SWAP_CLUSTER_MAX if gfp.noretry else short
            freed = self.shrink_caches(wanted, lowmem_only)
            if not freed and self.make_room is not None:
                freed = self.make_room(wanted, lowmem_only, not gfp.noretry)
            if not freed:
                break
            reclaimed += freed
        if self._on_alloc is not None:
            self._on_alloc(gfp, count, low + high, reclaimed)
        return low, high

    def alloc_kernel(self, count: int) -> bool:
        """The kernel's own allocation of ``count`` pages (GFP_KERNEL | __GFP_RETRY_MAYFAIL, as for a
        memmap): lowmem down to the GFP_USER floor, reclaiming cache and slab, then swapping, never
        the OOM killer; all or nothing.  The pages join the kernel's, never freed."""
        if count > self.alloc_room(GFP_USER):
            self.shrink_caches(count - self.alloc_room(GFP_USER), lowmem_only=True)
        if count > self.alloc_room(GFP_USER) and self.make_room is not None:
            self.make_room(count - self.alloc_room(GFP_USER), True, False)
        if count > self.alloc_room(GFP_USER):
            return False
        self.kernel.add(*self.take_free(count, GFP_USER))
        return True

    def free_reserved_pages(self, low: int, high: int) -> None:
        """free_reserved_page() for each page: back to the free lists, MemTotal grows."""
        self.free_low += low
        self.free_high += high
        self.managed_pages += low + high

    def adjust_managed_page_count(self, delta: int) -> None:
        self.managed_pages += delta

    # -- reclaim ----------------------------------------------------------------------

    def shrink_caches(self, count: int, lowmem_only: bool = False) -> int:
        """Reclaim up to ``count`` pages of page cache, then reclaimable slab; the pages freed."""
        freed = 0
        for holder in (self.page_cache, self.slab):
            low, high = holder.remove(count - freed, lowmem_only)
            self.free_low += low
            self.free_high += high
            freed += low + high
        return freed

    # -- scripted programs (take/give events) ------------------------------------------

    def take(self, count: int) -> int:
        """A program's allocation, regardless of floors: highmem first, then lowmem; the pages got."""
        high = min(count, self.free_high)
        low = min(count - high, self.free_low)
        self.free_high -= high
        self.free_low -= low
        self.programs.add(low, high)
        return low + high

    def give(self, count: int) -> int:
        """A program frees the pages it took most recently; the pages freed."""
        low, high = self.programs.remove(count)
        self.free_low += low
        self.free_high += high
        return low + high

    def boot_alloc(self, holder: Pages, count: int) -> None:
        """The kernel's own pages at boot (its memory, slab), lowmem first as the kernel's are."""
        low = min(count, self.free_low)
        high = min(count - low, self.free_high)
        self.free_low -= low
        self.free_high -= high
        holder.add(low, high)
