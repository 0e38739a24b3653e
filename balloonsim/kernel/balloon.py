"""drivers/xen/balloon.c of Linux v5.12-v5.14, transcribed function by function.

Read it beside drivers/xen/balloon.c of Linux v5.12: the functions have the same names and
take the same decisions in the same order.  What differs is only how pages
are represented: a ``struct page`` list becomes counts.  The ballooned-page
list keeps lowmem pages at its head and highmem pages at its tail
(``balloon_append``), and ``balloon_retrieve`` takes from the head, so the
list is fully described by ``balloon_low`` and ``balloon_high``; loops that
handle one page per turn handle a run of pages per turn here.

Everything the driver calls outside balloon.c (the page allocator,
hypercalls, the workqueue, memory hotplug) it reaches through the
``BalloonKernel`` it is given (``kernel/interface.py``), never directly,
so another driver version runs in the same environment.

``unsigned long`` fields are Python ints: a value that would wrap in C shows
as the negative number it stands for, as in the oracle's CSV.
"""

from __future__ import annotations

import enum

from balloonsim.columns import Column
from balloonsim.errors import KernelBug, SimulationError
from balloonsim.kernel.interface import (
    BALLOON_STATS_COLUMNS,
    EINVAL,
    ENOMEM,
    GFP_BALLOON,
    GFP_USER,
    MEM_ONLINE,
    RETRY_UNLIMITED,
    BalloonKernel,
    BalloonStats,
    Gfp,
    Resource,
    balloon_stats_values,
)
from balloonsim.sim import Process

#: add_ballooned_pages() returning 0 this often without a page to take is the
#: endless loop the kernel would be in (the oracle harness stops there too: tests/fixtures/oracle/fuzz/*.exit).
LIVELOCK_ROUNDS = 10_000
#: balloon_process() turns in a row without a page moved, while time passes, taken as a livelock.
LIVELOCK_TURNS = 100_000


class BpState(enum.Enum):
    """balloon_process() state."""

    DONE = "DONE"  # done or nothing to do
    WAIT = "WAIT"  # wait to be rescheduled (hot-added memory to be onlined)
    EAGAIN = "EAGAIN"  # error, go to sleep
    ECANCELED = "ECANCELED"  # error, balloon operation canceled


BP_DONE, BP_WAIT, BP_EAGAIN, BP_ECANCELED = BpState

#: the ``state`` column: the value update_schedule() last returned, NONE before the first pass
STATES = ("NONE", *(s.value for s in BpState))
STATE_CODE = {None: 0, **{s: i + 1 for i, s in enumerate(BpState)}}


class BalloonDriver:
    """The v5.12-v5.14 driver: a delayed work item on the system workqueue."""

    #: not in balloon.c: each loop turn is a pass of its own (a kthread's), told at the wait before it
    turns_are_passes = False

    COLUMNS = (
        *BALLOON_STATS_COLUMNS,
        Column("state", "category", STATES, fill=0),
        Column("work_pending", "bool", fill=0),
        Column("work_expiry"),  # jiffies; -1 when not pending
        Column("backend_pages"),
    )

    def __init__(self, kernel: BalloonKernel, *, memory_hotplug: bool, bulk_iterations: bool = True):
        self.kernel = kernel
        self.config_memory_hotplug = memory_hotplug  # CONFIG_XEN_BALLOON_MEMORY_HOTPLUG
        self.frame_list_size = kernel.frame_list_size  # ARRAY_SIZE(frame_list)
        self.balloon_stats = BalloonStats()
        self.balloon_mutex = kernel.mutex("balloon_mutex")
        self.balloon_wq = kernel.wait_queue()
        self.declare_worker()
        self.xen_hotplug_unpopulated = 0  # sysctl xen/balloon/hotplug_unpopulated
        # Not in balloon.c, but what an observer of the C code sees: the state
        # update_schedule() last returned in the worker (the oracle probes it at
        # cond_resched()), and the pages handed to backends (their pages[] arrays).
        self.state: BpState | None = None
        self.backend_pages = 0
        self.bulk_iterations = bulk_iterations  # allow steady turns done at once

    def declare_worker(self) -> None:
        """static DECLARE_DELAYED_WORK(balloon_worker, balloon_process)."""
        self.balloon_worker = self.kernel.delayed_work(self.balloon_process, "balloon_worker")

    # -- the ballooned-page list ------------------------------------------------

    def balloon_append(self, low: int, high: int) -> None:
        """Add pages to the balloon: lowmem at the head, highmem at the tail.

        Lowmem is re-populated first, so highmem pages go at the list tail.
        """
        self.balloon_stats.balloon_high += high
        self.balloon_stats.balloon_low += low
        self.balloon_wq.wake_up()

    def balloon_retrieve(self, require_lowmem: bool, count: int) -> tuple[int, int]:
        """Take up to ``count`` pages from the head of the balloon, one by one.

        The head is lowmem while any lowmem page is ballooned.  With
        ``require_lowmem`` a highmem head ends the run (the C function
        returns NULL).  Returns (lowmem, highmem) pages taken.
        """
        low = min(count, self.balloon_stats.balloon_low)
        high = 0 if require_lowmem else min(count - low, self.balloon_stats.balloon_high)
        self.balloon_stats.balloon_low -= low
        self.balloon_stats.balloon_high -= high
        return low, high

    def balloon_list_length(self) -> int:
        return self.balloon_stats.balloon_low + self.balloon_stats.balloon_high

    # -- back-off -------------------------------------------------------------------

    def update_schedule(self, state: BpState) -> BpState:
        stats = self.balloon_stats
        if state is BP_WAIT:
            return BP_WAIT

        if state is BP_ECANCELED:
            return BP_ECANCELED

        if state is BP_DONE:
            stats.schedule_delay = 1
            stats.retry_count = 1
            return BP_DONE

        stats.retry_count += 1

        if stats.max_retry_count != RETRY_UNLIMITED and stats.retry_count > stats.max_retry_count:
            stats.schedule_delay = 1
            stats.retry_count = 1
            return BP_ECANCELED

        stats.schedule_delay <<= 1

        if stats.schedule_delay > stats.max_schedule_delay:
            stats.schedule_delay = stats.max_schedule_delay

        return BP_EAGAIN

    # -- memory hotplug (CONFIG_XEN_BALLOON_MEMORY_HOTPLUG) -------------------------

    def reserve_additional_memory(self) -> BpState:
        if self.config_memory_hotplug:
            return self._reserve_additional_memory_hotplug()
        return self._reserve_additional_memory_no_hotplug()

    def additional_memory_resource(self, pages: int) -> Resource | None:
        resource = self.kernel.allocate_resource(pages)
        if resource is None:
            self.kernel.printk("err", "Cannot allocate new System RAM resource")
        return resource

    def release_memory_resource(self, resource: Resource | None) -> None:
        if resource is None:
            return
        # no need to reset the region to identity-mapped: no I/O can be in it
        self.kernel.release_resource(resource)

    def _reserve_additional_memory_hotplug(self) -> BpState:
        stats = self.balloon_stats
        credit = stats.target_pages + stats.target_unpopulated - stats.total_pages

        # Already hot-plugged enough pages?  Wait for them to be onlined.
        if credit <= 0:
            return BP_WAIT

        section = self.kernel.section_pages
        balloon_hotplug = -(-credit // section) * section  # round_up(credit, PAGES_PER_SECTION)

        resource = self.additional_memory_resource(balloon_hotplug)
        if resource is None:
            return self._reserve_failed(resource)

        # (PV MMU only: the new range's p2m entries are set invalid, which
        # cannot fail in this model.)

        # add_memory_resource() onlines pages through xen_online_page(), which
        # takes balloon_mutex: drop it, the callers retry after re-taking it.
        self.balloon_mutex.unlock()
        rc = self.kernel.add_memory_resource(resource)
        self.balloon_mutex.lock()

        if rc:
            self.kernel.printk("warn", f"Cannot add additional memory ({rc})")
            return self._reserve_failed(resource)

        stats.total_pages += balloon_hotplug

        return BP_WAIT

    def _reserve_failed(self, resource: Resource | None) -> BpState:  # the err: label
        self.release_memory_resource(resource)
        return BP_ECANCELED

    def _reserve_additional_memory_no_hotplug(self) -> BpState:
        stats = self.balloon_stats
        asked = stats.target_pages
        stats.target_pages = stats.current_pages + stats.target_unpopulated
        if stats.target_pages != asked:  # not in balloon.c: tell the observer its target is gone
            self.kernel.trace(
                "target_clamped",
                asked,
                stats.target_pages,
                f"target clamped to {stats.target_pages} pages (no memory hotplug)",
            )
        return BP_ECANCELED

    def xen_online_page(self, low: int, high: int) -> None:
        """Online-page callback: hot-added pages go straight into the balloon."""
        self.balloon_mutex.lock()
        self.balloon_append(low, high)
        self.balloon_mutex.unlock()

    def xen_memory_notifier(self, val: int) -> None:
        if val == MEM_ONLINE:
            self.kernel.schedule_delayed_work(self.balloon_worker, 0)

    # -- populating and releasing ------------------------------------------------

    def current_credit(self) -> int:
        return self.balloon_stats.target_pages - self.balloon_stats.current_pages

    def balloon_is_inflated(self) -> bool:
        return bool(self.balloon_stats.balloon_low or self.balloon_stats.balloon_high)

    def increase_reservation(self, nr_pages: int) -> BpState:
        nr_pages = min(nr_pages, self.frame_list_size)

        # frame_list gets the first nr_pages pages of the list, fewer if it is shorter
        nr_pages = min(nr_pages, self.balloon_list_length())

        rc = self.kernel.xenmem_reservation_increase(nr_pages)
        if rc <= 0:
            return BP_EAGAIN

        low, high = self.balloon_retrieve(False, rc)
        if low + high != rc:
            raise KernelBug("BUG_ON(page == NULL) in increase_reservation")

        self.kernel.xenmem_reservation_va_mapping_update(rc)

        # Relinquish the pages back to the allocator.
        self.kernel.free_reserved_pages(low, high)

        self.balloon_stats.current_pages += rc

        return BP_DONE

    def decrease_reservation(self, nr_pages: int, gfp: Gfp) -> BpState:
        state = BP_DONE

        nr_pages = min(nr_pages, self.frame_list_size)

        # alloc_page() once per page; the first failure ends the batch
        low, high = self.kernel.alloc_pages(nr_pages, gfp)
        if low + high < nr_pages:
            nr_pages = low + high
            state = BP_EAGAIN
        self.kernel.adjust_managed_page_count(-nr_pages)
        self.kernel.xenmem_reservation_scrub_pages(nr_pages)

        # (kmap_flush_unused(): no kmaps in this model)

        # Update the direct mapping, invalidate the P2M, add to the balloon.
        self.kernel.xenmem_reservation_va_mapping_reset(nr_pages)
        self.balloon_append(low, high)

        # (flush_tlb_all())

        ret = self.kernel.xenmem_reservation_decrease(nr_pages)
        if ret != nr_pages:
            raise KernelBug(f"BUG_ON(ret != nr_pages): decrease_reservation returned {ret} of {nr_pages}")

        self.balloon_stats.current_pages -= nr_pages

        return state

    # -- the worker ----------------------------------------------------------------

    def balloon_process(self) -> Process:
        """The work function.  As a work item it only ever runs as a single instance."""
        state = BP_DONE

        bulk = self.bulk_iterations
        stalled = 0
        two_batches = 2 * self.frame_list_size
        while True:
            if bulk and abs(self.current_credit()) >= two_batches:
                yield from self.kernel.steady_turns(self)

            self.balloon_mutex.lock()

            credit = self.current_credit()
            current_before = self.balloon_stats.current_pages

            if credit > 0:
                if self.balloon_is_inflated():
                    state = self.increase_reservation(credit)
                else:
                    state = self.reserve_additional_memory()

            if credit < 0:
                state = self.balloon_down(credit)

            state = self.update_schedule(state)
            self.state = state

            self.balloon_mutex.unlock()

            yield from self.kernel.cond_resched()

            if not (credit and state is BP_DONE):
                break
            stalled = self._count_stalled(stalled, current_before, credit, "balloon_process()")

        # Schedule more work if there is some still to be done.
        if state is BP_EAGAIN:
            self.kernel.schedule_delayed_work(self.balloon_worker, self.balloon_stats.schedule_delay * self.kernel.hz)

    def _count_stalled(self, stalled: int, current_before: int, credit: int, where: str) -> int:
        """Not in balloon.c: a turn that changed nothing and goes round again at once repeats forever
        unless something else changes meanwhile; nothing can when no time passes, and is taken not to
        after many turns.  The stalled turns in a row so far."""
        stalled = stalled + 1 if self.balloon_stats.current_pages == current_before else 0
        if stalled > (0 if self.kernel.iterations_take_no_time else LIVELOCK_TURNS):
            raise SimulationError(
                f"livelock: {where} made no progress (credit {credit}, si_mem_available() "
                f"{self.kernel.si_mem_available()}, totalreserve_pages {self.kernel.totalreserve_pages}) "
                "and would loop forever, as the kernel's code does in this situation"
            )
        return stalled

    def balloon_down(self, credit: int) -> BpState:
        """The loop's ``if (credit < 0)`` block: since XSA-300 (v5.3) at most MemAvailable pages
        a turn, and a clamped turn below totalreserve_pages counts as a failure."""
        n_pages = min(-credit, self.kernel.si_mem_available())
        state = self.decrease_reservation(n_pages, GFP_BALLOON)
        if state is BP_DONE and n_pages != -credit and n_pages < self.kernel.totalreserve_pages:
            state = BP_EAGAIN
        return state

    def _run_steady_iterations(self, leave_a_turn: bool = False) -> None:
        """Do at once the coming loop turns that are known to be full, successful batches.

        Not in balloon.c: a shortcut with exactly the effect of letting the
        loop above run those turns one by one, when they take no simulated
        time (nothing else runs between them: the mutex is free, but no time
        passes).  Turns that take time are done at once too, but lazily, as
        time reaches them (``kernel/lazy_turns.py``).
        """
        direction, turns = self.steady_turns(leave_a_turn)
        if turns < 2:
            return
        self.do_steady_turns(direction, turns)
        self.kernel.cond_resched_turns(turns)

    def steady_turns(self, leave_a_turn: bool) -> tuple[int, int]:
        """The coming loop turns that are "steady": each moves a whole batch and ends BP_DONE.

        Ballooning out (direction -1): the credit, the MemAvailable clamp and
        the allocator all allow a full batch and the totalreserve rule does
        not fire; ballooning in (+1): the credit, the balloon list and Xen's
        headroom all allow one.  Such turns change nothing but counters, so k
        of them equal one move of k batches.  ``leave_a_turn``: the caller's
        own turn that follows must still have credit to work on.
        """
        batch = self.frame_list_size
        credit = self.current_credit()
        most = (abs(credit) - 1) // batch if leave_a_turn else abs(credit) // batch
        if credit < 0:
            return -1, min(self._steady_turns_out(-credit, batch), most)
        if credit > 0 and self.balloon_is_inflated():
            room = min(credit, self.balloon_list_length(), self.kernel.populate_headroom())
            return 1, min(room // batch, most)
        return 0, 0

    def do_steady_turns(self, direction: int, turns: int) -> None:
        """The effects of ``turns`` steady turns (``steady_turns``), one hypercall each, as one move."""
        pages = turns * self.frame_list_size
        if direction < 0:
            low, high = self.kernel.alloc_pages(pages, GFP_BALLOON)
            if low + high != pages:
                raise SimulationError(f"steady balloon-out of {pages} pages got {low + high}")
            self.kernel.adjust_managed_page_count(-pages)
            self.kernel.xenmem_reservation_scrub_pages(pages)
            self.kernel.xenmem_reservation_va_mapping_reset(pages)
            self.balloon_append(low, high)
            if self.kernel.xenmem_reservation_decrease(pages, calls=turns) != pages:
                raise KernelBug("BUG_ON(ret != nr_pages) in decrease_reservation")
            self.balloon_stats.current_pages -= pages
        else:
            if self.kernel.xenmem_reservation_increase(pages, calls=turns) != pages:
                raise SimulationError(f"steady populate of {pages} pages was not granted in full")
            low, high = self.balloon_retrieve(False, pages)
            self.kernel.xenmem_reservation_va_mapping_update(pages)
            self.kernel.free_reserved_pages(low, high)
            self.balloon_stats.current_pages += pages
        self._steady_turns_done()

    def _steady_turns_done(self) -> None:
        """The state the last of the steady turns left: update_schedule(BP_DONE)."""
        self.state = self.update_schedule(BP_DONE)

    def _steady_turns_out(self, wanted: int, batch: int) -> int:
        """How many coming balloon-out turns are full batches ending BP_DONE."""
        available = self.kernel.si_mem_available()
        reserve = self.kernel.totalreserve_pages
        turns = min(wanted, self.kernel.alloc_room(GFP_BALLOON)) // batch  # credit and allocator
        if self.kernel.mem_available_falls_with_free():
            # turn i sees MemAvailable = available - i*batch (never clamped at 0 while >= batch)
            turns = min(turns, available // batch)
            if available < wanted:  # then every turn is clamped: the totalreserve rule needs
                turns = min(turns, (available - reserve) // batch + 1 if available >= reserve else 0)
        else:
            if available < batch or (available < wanted and available < reserve):
                return 0
        return max(0, turns)

    # -- what an observer sees (not in balloon.c) ------------------------------------

    def row_values(self) -> tuple[int, ...]:
        worker = self.balloon_worker
        return (
            *balloon_stats_values(self.balloon_stats),
            STATE_CODE[self.state],
            worker.pending,
            worker.expiry,
            self.backend_pages,
        )

    def pass_outcome(self) -> tuple[str, int, int, str] | None:
        """A worker pass that did not end DONE, for the events table."""
        state = self.state
        if state is None or state is BP_DONE:
            return None
        stats = self.balloon_stats
        if state is BP_EAGAIN:
            message = f"retry {stats.retry_count} in {stats.schedule_delay} s"
        elif state is BP_WAIT:
            message = "waiting for hot-added memory to be onlined"
        else:
            message = "balloon operation canceled"
        return state.value, self.current_credit(), stats.retry_count, message

    # -- targets -------------------------------------------------------------------

    def balloon_set_new_target(self, target: int) -> None:
        """Set the new target and kick off processing (no lock: not a read-modify-write)."""
        self.balloon_stats.target_pages = target
        self.kernel.schedule_delayed_work(self.balloon_worker, 0)

    # -- pages for backends ----------------------------------------------------------

    def add_ballooned_pages(self, nr_pages: int, signal_after: int | None) -> Process:
        if self.xen_hotplug_unpopulated:
            st = self.reserve_additional_memory()
            if st is not BP_ECANCELED:
                self.balloon_mutex.unlock()
                rc = yield from self.kernel.wait_event_interruptible(
                    self.balloon_wq, lambda: self.balloon_list_length() > 0, signal_after
                )
                self.balloon_mutex.lock()
                return -ENOMEM if rc else 0

        if self.kernel.si_mem_available() < nr_pages:
            return -ENOMEM

        st = self.decrease_reservation(nr_pages, GFP_USER)
        if st is not BP_DONE:
            return -ENOMEM

        return 0

    def alloc_xenballooned_pages(self, nr_pages: int, signal_after: int | None = None) -> Process:
        """Get pages that have been ballooned out; 0 on success, -errno otherwise.

        A SimPy process: it may sleep in add_ballooned_pages() while hot-added
        memory is onlined.  ``signal_after`` models a signal ending that sleep.
        """
        pgno = 0
        empty_rounds = 0

        self.balloon_mutex.lock()

        self.balloon_stats.target_unpopulated += nr_pages

        while pgno < nr_pages:
            low, _ = self.balloon_retrieve(True, nr_pages - pgno)
            if low:
                pgno += low
                self.backend_pages += low
                empty_rounds = 0
                # (PV MMU only: xen_alloc_p2m_entry(), which cannot fail in this model)
            else:
                ret = yield from self.add_ballooned_pages(nr_pages - pgno, signal_after)
                if ret < 0:
                    return self._alloc_undo(nr_pages, pgno, ret)
                # Not in balloon.c: no lowmem page after many successful rounds is the endless loop.
                empty_rounds += 1
                if empty_rounds > LIVELOCK_ROUNDS:
                    raise SimulationError(
                        "livelock: alloc_xenballooned_pages() needs lowmem pages, but the balloon's head "
                        "is highmem and add_ballooned_pages() keeps succeeding without adding lowmem"
                    )
        self.balloon_mutex.unlock()
        return 0

    def _alloc_undo(self, nr_pages: int, pgno: int, ret: int) -> int:  # the out_undo: label
        self.balloon_mutex.unlock()
        self.free_xenballooned_pages(pgno)
        # free_xenballooned_pages() subtracts only pgno pages, but target_unpopulated
        # was raised by nr_pages: remove the rest too, or the accounting is off.
        self.balloon_stats.target_unpopulated -= nr_pages - pgno
        return ret

    def free_xenballooned_pages(self, nr_pages: int) -> None:
        """Return pages got with alloc_xenballooned_pages (all of them lowmem)."""
        self.balloon_mutex.lock()

        self.backend_pages -= nr_pages
        self.balloon_append(nr_pages, 0)

        self.balloon_stats.target_unpopulated -= nr_pages

        # The balloon may be too large now.  Shrink it if needed.
        if self.current_credit():
            self.kernel.schedule_delayed_work(self.balloon_worker, 0)

        self.balloon_mutex.unlock()

    # -- boot ----------------------------------------------------------------------

    def balloon_add_region(self, start_pfn: int, pages: int) -> None:
        """PV boot: put an extra-memory region (never in totalram) in the balloon."""
        # If usable memory was limited (e.g. with mem=), don't add pages beyond it.
        extra_pfn_end = min(self.kernel.max_pfn, start_pfn + pages)
        low, high = self.kernel.split_by_zone(start_pfn, extra_pfn_end)
        self.balloon_append(low, high)
        self.balloon_stats.total_pages += extra_pfn_end - start_pfn

    def balloon_init(self) -> None:
        stats = self.balloon_stats
        kernel = self.kernel
        if kernel.xen_pv_domain:
            stats.current_pages = min(kernel.xen_start_info_nr_pages - kernel.xen_released_pages, kernel.max_pfn)
        else:
            stats.current_pages = kernel.get_num_physpages()
        stats.target_pages = stats.current_pages
        stats.balloon_low = 0
        stats.balloon_high = 0
        stats.total_pages = stats.current_pages

        stats.schedule_delay = 1
        stats.max_schedule_delay = 32
        stats.retry_count = 1
        stats.max_retry_count = 4

        if self.config_memory_hotplug:
            kernel.set_online_page_callback(self.xen_online_page)
            kernel.register_memory_notifier(self.xen_memory_notifier)
            kernel.register_sysctl("xen/balloon/hotplug_unpopulated", self.proc_hotplug_unpopulated)

        if kernel.xen_pv_domain and not kernel.config_xen_unpopulated_alloc:
            # Initialise the balloon with the extra memory regions (arch/x86/xen/setup.c).
            for start_pfn, pages in kernel.xen_extra_mem:
                if pages:
                    self.balloon_add_region(start_pfn, pages)

    def proc_hotplug_unpopulated(self, text: str) -> int:
        """proc_dointvec_minmax with the table's bounds 0..1: 0, or -EINVAL."""
        try:
            value = int(text.strip(), 10)
        except ValueError:
            return -EINVAL
        if not 0 <= value <= 1:
            return -EINVAL
        self.xen_hotplug_unpopulated = value
        return 0
