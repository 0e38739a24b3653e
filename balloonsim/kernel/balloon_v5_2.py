"""drivers/xen/balloon.c of Linux v5.2 and before: the delayed-work driver before XSA-300.

The XSA-300 fixes (July 2019; mainline v5.3, in the stable kernels back to
4.4: "xen: let alloc_xenballooned_pages() fail if not enough memory free"
and "xen: don't balloon out more than available") changed three things,
which this version undoes, as it does two fixes of July 2020 (mainline v5.9, stable kernels
since August 2020); everything else is v5.12's (``balloon.py``):

* ``balloon_process()`` balloons out ``-credit`` pages, not at most
  ``si_mem_available()``, and has no totalreserve rule: a turn stops only
  when ``alloc_page()`` fails;
* ``add_ballooned_pages()`` does not check MemAvailable before taking pages
  from the guest for a backend;
* ``add_ballooned_pages()`` waits for hot-added memory in ``wait_event()``,
  which no signal ends, and then returns 0 (until "xen/balloon: make the
  balloon wait interruptible");
* a failed ``alloc_xenballooned_pages()`` leaves the pages it did not get in
  ``target_unpopulated`` (until 1951fa33ec25 "xen/balloon: fix accounting in
  alloc_xenballooned_pages error path");
* ``balloon_init()`` leaves ``max_retry_count`` at ``RETRY_UNLIMITED``: the
  worker retries every ``max_schedule_delay`` (32 s) for ever and never
  cancels.
"""

from __future__ import annotations

from balloonsim.kernel.balloon import BP_DONE, BP_ECANCELED, BalloonDriver, BpState
from balloonsim.kernel.interface import ENOMEM, GFP_BALLOON, GFP_USER, RETRY_UNLIMITED
from balloonsim.sim import Process


class PreXsa300BalloonDriver(BalloonDriver):
    """The v5.2 driver: unlimited retries, no MemAvailable clamp."""

    def balloon_down(self, credit: int) -> BpState:
        return self.decrease_reservation(-credit, GFP_BALLOON)

    def _steady_turns_out(self, wanted: int, batch: int) -> int:
        """Without the clamp, every turn is a full batch while the credit and the allocator allow."""
        return min(wanted, self.kernel.alloc_room(GFP_BALLOON)) // batch

    def add_ballooned_pages(self, nr_pages: int, signal_after: int | None) -> Process:
        if self.xen_hotplug_unpopulated:
            st = self.reserve_additional_memory()
            if st is not BP_ECANCELED:
                self.balloon_mutex.unlock()
                # wait_event(): no signal ends it
                yield from self.kernel.wait_event_interruptible(
                    self.balloon_wq, lambda: self.balloon_list_length() > 0, None
                )
                self.balloon_mutex.lock()
                return 0

        st = self.decrease_reservation(nr_pages, GFP_USER)
        if st is not BP_DONE:
            return -ENOMEM

        return 0

    def _alloc_undo(self, nr_pages: int, pgno: int, ret: int) -> int:  # the out_undo: label
        self.balloon_mutex.unlock()
        self.free_xenballooned_pages(pgno)  # takes only pgno pages off target_unpopulated
        return ret

    def balloon_init(self) -> None:
        super().balloon_init()
        self.balloon_stats.max_retry_count = RETRY_UNLIMITED
