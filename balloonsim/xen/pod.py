"""Populate-on-demand (PoD): how Xen backs an HVM/PVH guest booted with less memory than its RAM.

libxl builds a non-PV guest whose ``memory`` is below its ``maxmem`` with PoD
(tools/libs/light/libxl_create.c ``libxl__domain_config_setdefault``: ``pod_enabled``):
the guest's whole RAM is in its E820, but every page starts as a PoD entry of
the p2m, and Xen keeps a *cache* of real pages, sized from the PoD target,
from which it backs an entry when the guest first touches it
(xen/arch/x86/mm/p2m-pod.c).  As counts:

* ``entries`` (``pod.entry_count``): guest pages that are PoD entries, i.e.
  never touched since boot;
* ``cache`` (``pod.count``): real pages held for them, part of ``tot_pages``.

``tot_pages`` is the pages really populated plus the cache.  Touching an
entry takes a cache page (``p2m_pod_demand_populate``); with the cache empty
Xen crashes the domain ("out of PoD memory").  The balloon driver handing
back an entry drops it without a real page; handing back a real page while
entries outnumber the cache refills the cache instead of freeing it
(``p2m_pod_decrease_reservation``).

Simplifications: no superpages and no zero-page sweeps (``p2m_pod_emergency_sweep``
reclaims zeroed pages before crashing a domain; here the crash comes at once),
and which guest page is a PoD entry is only counted, never named.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class PodPool:
    entries: int = 0
    cache: int = 0

    def cache_target(self, target: int, tot_pages: int) -> int | None:
        """The cache size ``p2m_pod_set_mem_target`` asks for a target of ``target`` pages; None: unchanged.

        Nothing once every entry is gone, nor for a target below tot_pages (the cache is never
        shrunk here: the balloon driver will hand pages back); else the target less the pages
        really populated, but at most one cache page per entry.
        """
        populated = tot_pages - self.cache
        if populated > 0 and self.entries == 0:
            return None
        if target < tot_pages:
            return None
        wanted = target - populated
        if populated > 0:
            wanted = min(wanted, self.entries)
        return wanted

    def demand_populate(self, pages: int) -> bool:
        """The guest touches ``pages`` of its entries: each takes a cache page.  False: out of PoD memory."""
        if pages > self.cache:
            return False
        self.cache -= pages
        self.entries -= pages
        return True

    def release_scrubbed(self, touched: int, faulted: int, batch: int) -> int | None:
        """The balloon hands back ``touched`` real pages, then ``faulted`` untouched pages it zeroed
        first, in batches of ``batch``: each batch faults its untouched pages in from the cache, then
        hands the whole batch back.  The real pages freed, or None when a batch finds the cache short.

        Counted, not looped: the touched pages' whole batches are one release; then a batch of
        ``b`` faulted pages takes the state (entries E, cache C <= E) to (E - b, min(C, E - b)),
        so batch j (from 0) starts with a cache of min(C, E - j*batch).
        """
        cache_before = self.cache
        whole, rest = divmod(touched, batch)
        self.decrease_reservation(0, whole * batch)
        mixed = min(batch - rest, faulted) if rest else 0
        if mixed:  # the batch that holds the last touched pages and the first untouched ones
            if not self.demand_populate(mixed):
                return None
            self.decrease_reservation(0, rest + mixed)
        left = faulted - mixed
        if left:
            turns = -(-left // batch)
            last = left - (turns - 1) * batch
            short_last = min(self.cache, self.entries - (turns - 1) * batch) < last
            short_before = turns > 1 and min(self.cache, self.entries - (turns - 2) * batch) < batch
            if short_last or short_before:
                return None
            self.entries -= left
            self.cache = min(self.cache, self.entries)
        return touched + cache_before - self.cache  # tot_pages loses the touched pages and what the cache gave up

    def decrease_reservation(self, pod_pages: int, ram_pages: int) -> int:
        """The guest hands back ``pod_pages`` entries and ``ram_pages`` real pages; the real pages freed.

        Entries are dropped; each real page refills the cache while entries outnumber it; then a
        cache larger than the entries left is cut down to them.  Page by page or all at once, the
        cache ends at min(cache + ram_pages, entries - pod_pages) (the order of the pages does not matter).
        """
        if self.entries == 0:  # no PoD left: decrease_reservation frees as for any guest
            return ram_pages
        self.entries -= pod_pages
        kept = min(self.cache + ram_pages, self.entries)
        freed = self.cache + ram_pages - kept
        self.cache = kept
        return freed
