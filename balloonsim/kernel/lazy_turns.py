"""Loop turns that take simulated time, done at once yet seen one by one.

With costs, each turn of the balloon worker's loop (a delayed work's loop
turn up to v5.14, a kernel thread's pass from v5.15) takes simulated time
(``costs``): its effects happen at its start, then ``cond_resched()`` waits
for its cost.  A run of k *steady* turns (``BalloonDriver.steady_turns``:
each a whole batch ending BP_DONE) costs the same ``cost`` each, so turn j
happens at ``start + j * cost``.  Instead of k SimPy events, a ``TurnPlan``
schedules one wake-up at ``start + k * cost`` and applies the turns *lazily*:

* anything that reads the guest or the host pool first brings the plan up
  to the present instant (``catch_up``): the turns due by then are applied
  at once, exactly as if each had run at its own time.  A turn due at this
  very instant counts as done when the environment has already processed
  events of a higher priority than the guest's work band
  (``sim.Environment.reached``): SimPy would have run it before them.
* anything that *changes* what the coming turns would do (a target write, a
  workload step, kswapd, a row, the manager, another guest or the host
  taking Xen's free memory a balloon-in counts on) first catches up, then
  ends the plan (``cut``): the worker wakes at the next turn's time and goes
  on turn by turn, looking for a new run of steady turns from there.

The plan is made only where its turns provably do nothing but move pages and
count: no progress row falls due (``progress_every``), kswapd does not wake,
no PoD page is touched, nobody sleeps on the balloon's wait queue, demand
waiting for the pages coming in takes each batch alike, and Xen's free pool holds every page
a balloon-in will take (``Host`` keeps that true for all plans at once).
The host's rows between catch-ups add the plans' turns due by then
(``Host.row_values``), so every timeline is what turn by turn gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy

from balloonsim.sim import Timer

if TYPE_CHECKING:
    from balloonsim.kernel.guest import GuestKernel
    from balloonsim.kernel.interface import BalloonDriver


class TurnPlan:
    """``turns`` steady turns of ``guest``'s worker, turn j at ``first + j * cost``; ``done`` applied."""

    def __init__(self, guest: GuestKernel, driver: BalloonDriver, direction: int, turns: int, first: int, cost: int):
        self.guest = guest
        self.driver = driver
        self.direction = direction  # -1 out (pages to Xen), +1 in
        self.batch = driver.frame_list_size
        self.turns = turns
        self.first = first
        self.cost = cost
        self.done = 0
        self.wake = simpy.Event(guest.env)  # what the worker waits on
        self._alarm = 0  # the generation of the timer that may fire the wake-up

    # -- what time has reached -------------------------------------------------------------

    def due(self) -> int:
        """The turns that have happened by the present instant (see the module's docstring)."""
        env = self.guest.env
        elapsed = env.now - self.first
        if elapsed < 0:
            return 0
        due, part = divmod(elapsed, self.cost)
        if part or (due < self.turns and env.reached > self.guest.work_priority):
            due += 1  # turn ``due`` is in the past (or ran earlier at this instant)
        return min(due, self.turns)

    def pending_pages(self) -> int:
        """Pages Xen gained (out) or lost (in) in turns due but not yet applied: for the host's row."""
        return -self.direction * (self.due() - self.done) * self.batch

    def remaining_in(self) -> int:
        """Pages a balloon-in plan will still take from Xen's free pool."""
        return (self.turns - self.done) * self.batch if self.direction > 0 else 0

    # -- applying turns --------------------------------------------------------------------

    def catch_up(self) -> None:
        """Apply the turns due by now that are not applied yet, as one move."""
        n = self.due() - self.done
        if n <= 0:
            return
        self.done += n
        host = self.guest.host
        host.applying += 1  # the move's own hypercalls neither catch plans up nor check their room
        try:
            self.driver.do_steady_turns(self.direction, n)
        finally:
            host.applying -= 1
        self.guest.turns_done_at_once(n)

    def cut(self) -> None:
        """Catch up, then end the plan: the worker wakes at its next turn's time and goes on turn by turn."""
        self.catch_up()
        self._end()
        if self.done < self.turns:
            self._arm(self.first + self.done * self.cost)

    def _end(self) -> None:
        self.guest.host.forget_plan(self)
        self.guest.plan = None

    def _arm(self, at: int) -> None:
        self._alarm += 1
        alarm = self._alarm
        timer = Timer(self.guest.env, at - self.guest.env.now, self.guest.work_priority)
        timer.callbacks.append(lambda _: alarm == self._alarm and self._wake_up())

    def _wake_up(self) -> None:
        if self.guest.plan is self:  # ran to its end: every turn is due now
            self.catch_up()
            self._end()
        self.wake.succeed()


def plan_turns(guest: GuestKernel, driver: BalloonDriver) -> tuple[simpy.Event, ...] | None:
    """Start a plan of the coming steady turns, if there are enough; what the worker waits on,
    or None when it did nothing (no turn is steady enough).

    The first turn is done now, for real: what a steady turn counts, and so costs, is measured on
    it; the plan holds the turns after it."""
    if not guest.may_plan():  # the cheaper test first
        return None
    direction, turns = driver.steady_turns(leave_a_turn=True)
    if turns < 3:
        return None
    cost = guest.steady_turn(driver, direction)
    wait = guest.meter.charge()  # the first turn's time, as its cond_resched() would charge it
    first = guest.env.now + wait
    if cost:  # (turns that take no time are a pass of no time: turn by turn)
        turns = min(turns - 1, guest.quiet_turns(direction, first, cost))
        if direction > 0:
            turns = min(turns, guest.host.free_for_plan() // driver.frame_list_size)
    if turns < 2 or not cost:  # not worth a plan: the first turn was an ordinary one
        return (Timer(guest.env, wait, guest.work_priority),) if wait else ()
    plan = TurnPlan(guest, driver, direction, turns, first, cost)
    guest.plan = plan
    guest.host.add_plan(plan)
    plan._arm(first + turns * cost)
    return (plan.wake,)
