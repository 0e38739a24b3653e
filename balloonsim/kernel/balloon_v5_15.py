"""drivers/xen/balloon.c of Linux v5.15: the ``xen-balloon`` kernel thread.

Commit 8480ed9c2bbd ("xen/balloon: use a kernel thread instead a
workqueue") and its fixes in v5.15 (96f5bd0 "fix balloon kthread
freezing", 319933a80fd4 "fix cancelled balloon action") replaced the
delayed work of v5.12 with a thread that sleeps in
``wait_event_freezable_timeout()`` between passes; stable kernels 4.14,
5.4, 5.10 and 5.14 got the same change in October 2021.  Only what changed
is written here; the rest (the ballooned-page list, hotplug, populating and
releasing, pages for backends) is v5.12's, inherited from ``balloon.py``.

What a planner sees differ:

* A new target during back-off wakes the thread at once (v5.12 waits for
  the pending retry, up to 32 s).
* After ``BP_ECANCELED`` (and after a pass with nothing to do) the thread
  sleeps 3600 s and then tries again by itself; v5.12 stays idle until the
  next target.
* ``BP_WAIT`` (hot-added memory not yet online) is checked again every second.
* One pass of the thread is one batch (at most 512 pages); the loop over
  batches is the thread's own ``for (;;)``, going round without sleeping
  while its wait condition holds.

The thread's ``state`` is kept on the driver (``balloon_state``): a local
of ``balloon_thread()`` in v5.15, a global from v5.16 on (40fdea0284bb made
it global for ``balloon_wait_finish()``), the same value either way.
"""

from __future__ import annotations

from balloonsim.columns import Column
from balloonsim.kernel.balloon import (
    BP_DONE,
    BP_EAGAIN,
    BP_ECANCELED,
    STATE_CODE,
    STATES,
    BalloonDriver,
)
from balloonsim.kernel.interface import (
    BALLOON_STATS_COLUMNS,
    MEM_ONLINE,
    BalloonKernel,
    balloon_stats_values,
)
from balloonsim.kernel.kthread import ThreadState
from balloonsim.sim import Process

#: the timeout of the sleep after a pass that ended DONE or ECANCELED (3600 * HZ)
HOURLY_SECONDS = 3600


class KthreadBalloonDriver(BalloonDriver):
    """The v5.15 driver: the ``xen-balloon`` kernel thread."""

    turns_are_passes = True

    COLUMNS = (
        *BALLOON_STATS_COLUMNS,
        Column("state", "category", STATES, fill=0),
        Column("thread_runs_at"),  # jiffies: the end of the thread's sleep, or when it was woken
        Column("thread_woken", "bool", fill=0),  # woken by wake_up(), runnable
        Column("backend_pages"),
    )

    def __init__(self, kernel: BalloonKernel, *, memory_hotplug: bool, bulk_iterations: bool = True):
        super().__init__(kernel, memory_hotplug=memory_hotplug, bulk_iterations=bulk_iterations)
        self.balloon_state = BP_DONE
        self.thread = None
        self._pass_credit = 0  # not in balloon.c: the credit the last pass worked on, for pass_outcome

    def declare_worker(self) -> None:
        """static DECLARE_WAIT_QUEUE_HEAD(balloon_thread_wq): the main waiting point for the
        xen-balloon thread, which replaces the delayed work (the thread starts in balloon_init)."""
        self.balloon_thread_wq = self.kernel.wait_queue()

    # -- the thread -----------------------------------------------------------------

    def balloon_thread_cond(self, credit: int) -> bool:
        """Stop waiting if the state is BP_DONE and ballooning is needed, or if the credit has
        changed while the state is not BP_DONE (kthread_should_stop() is never true here)."""
        if self.balloon_state is BP_DONE:
            credit = 0
        return self.current_credit() != credit

    def balloon_thread(self) -> Process:
        """The thread function.  As a kthread it runs as a single instance only."""
        kernel = self.kernel
        two_batches = 2 * self.frame_list_size
        stalled = 0
        while True:  # for (;;)
            state = self.balloon_state
            if state is BP_DONE or state is BP_ECANCELED:
                timeout = HOURLY_SECONDS * kernel.hz
            elif state is BP_EAGAIN:
                timeout = self.balloon_stats.schedule_delay * kernel.hz
            else:  # BP_WAIT
                timeout = kernel.hz

            credit = self.current_credit()

            yield from kernel.wait_event_freezable_timeout(
                self.balloon_thread_wq, lambda credit=credit: self.balloon_thread_cond(credit), timeout
            )

            # Not in balloon.c: full batches nobody sees one by one, done at once (see balloon.py); the
            # pass below must still have credit, as it would one batch at a time (the wait ends the loop)
            if self.bulk_iterations and kernel.passes_unobserved and abs(self.current_credit()) > two_batches:
                self._run_steady_iterations(leave_a_turn=True)
            elif (
                self.bulk_iterations and not kernel.iterations_take_no_time and abs(self.current_credit()) > two_batches
            ):
                waits = kernel.planned_turns(self)  # passes that take time, done lazily (lazy_turns.py)
                if waits is not None:  # its first pass is done: the next begins at the wait
                    yield from waits
                    stalled = 0
                    continue

            self.balloon_mutex.lock()

            credit = self._pass_credit = self.current_credit()
            current_before = self.balloon_stats.current_pages

            if credit > 0:
                if self.balloon_is_inflated():
                    self.balloon_state = self.increase_reservation(credit)
                else:
                    self.balloon_state = self.reserve_additional_memory()

            if credit < 0:
                self.balloon_state = self.balloon_down(credit)

            self.balloon_state = self.update_schedule(self.balloon_state)
            self.state = self.balloon_state

            self.balloon_mutex.unlock()

            yield from kernel.cond_resched()

            # Not in balloon.c: a DONE pass with credit goes round again at once, as v5.12's loop does
            if credit and self.balloon_state is BP_DONE:
                stalled = self._count_stalled(stalled, current_before, credit, "balloon_thread()")
            else:
                stalled = 0

    def _steady_turns_done(self) -> None:
        self.balloon_state = self.state = self.update_schedule(BP_DONE)

    # -- wake-ups where v5.12 scheduled the work ---------------------------------------

    def balloon_set_new_target(self, target: int) -> None:
        """Set the new target and kick off processing (no lock: not a read-modify-write)."""
        self.balloon_stats.target_pages = target
        self.balloon_thread_wq.wake_up()

    def xen_memory_notifier(self, val: int) -> None:
        if val == MEM_ONLINE:
            self.balloon_thread_wq.wake_up()

    def free_xenballooned_pages(self, nr_pages: int) -> None:
        """Return pages got with alloc_xenballooned_pages (all of them lowmem)."""
        self.balloon_mutex.lock()

        self.backend_pages -= nr_pages
        self.balloon_append(nr_pages, 0)

        self.balloon_stats.target_unpopulated -= nr_pages

        # The balloon may be too large now.  Shrink it if needed.
        if self.current_credit():
            self.balloon_thread_wq.wake_up()

        self.balloon_mutex.unlock()

    # -- boot ----------------------------------------------------------------------

    def balloon_init(self) -> None:
        super().balloon_init()
        self.thread = self.kernel.kthread_run(self.balloon_thread, "xen-balloon")

    # -- what an observer sees (not in balloon.c) ------------------------------------

    def row_values(self) -> tuple[int, ...]:
        thread = self.thread
        return (
            *balloon_stats_values(self.balloon_stats),
            STATE_CODE[self.state],
            -1 if thread is None else thread.runs_at,
            thread is not None and thread.state is ThreadState.RUNNABLE,
            self.backend_pages,
        )

    def pass_outcome(self) -> tuple[str, int, int, str] | None:
        """As v5.12's, but a pass with nothing to do (the hourly wake-up, a credit back to 0) leaves the
        state as it was, and is no new failure."""
        return super().pass_outcome() if self._pass_credit else None
