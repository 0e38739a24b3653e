"""Balloon drivers with faults, as squeezed's test simulator scripts them (``driver: faulty``).

squeeze_test (xen-api ``ocaml/squeezed/test/squeeze_test.ml``) replaces each guest by a driver
that moves towards its target at a fixed rate, with a fault of its kind (``kernel.fault_rules``):
an ideal driver, one with a hidden floor or ceiling, a dead one, one that stalls every other
interval.  Here such a driver runs inside a simulated guest, so that any host manager can be
tried against it: every ``tick`` its rule says how far to move, and it moves by the real
driver's own steps (``increase_reservation`` / ``decrease_reservation`` of at most a batch
each, with their costs), so the guest's memory pressure and Xen's free memory can still make
it fall short, as the real driver would.  It is the v5.15 driver (the ``xen-balloon`` thread,
its target watch, its ballooned-page list) with the thread's loop replaced; it never backs off
or cancels, and it stops ``inaccuracy`` = 0 pages short.
"""

from __future__ import annotations

from balloonsim.kernel.balloon import BP_DONE, BP_EAGAIN, BpState
from balloonsim.kernel.balloon_v5_15 import KthreadBalloonDriver
from balloonsim.kernel.fault_rules import FaultRule, HiddenCeiling, HiddenFloor, Ideal, IntermittentlyStuck, Stuck
from balloonsim.kernel.interface import GFP_BALLOON, BalloonKernel
from balloonsim.scenario.model import Fault
from balloonsim.sim import Process
from balloonsim.units import NS_PER_S


def fault_rule(fault: Fault) -> FaultRule:
    """The scenario's ``balloon.fault`` as squeeze_test's rule, in pages and seconds."""
    if fault.kind == "stuck":
        return Stuck()
    if fault.kind == "ideal":
        return Ideal(fault.rate)
    if fault.kind == "hidden-floor":
        return HiddenFloor(fault.rate, fault.limit)
    if fault.kind == "hidden-ceiling":
        return HiddenCeiling(fault.rate, fault.limit)
    return IntermittentlyStuck(fault.rate, fault.interval / NS_PER_S)


class FaultyBalloonDriver(KthreadBalloonDriver):
    """The xen-balloon thread, moving as a squeeze_test driver moves."""

    def __init__(self, kernel: BalloonKernel, *, memory_hotplug: bool, bulk_iterations: bool = True):
        super().__init__(kernel, memory_hotplug=memory_hotplug, bulk_iterations=bulk_iterations)
        fault = kernel.spec.balloon.fault  # the guest kernel's scenario (a test double reads its script)
        self.rule = fault_rule(fault)
        self.tick_jiffies = max(1, fault.tick * kernel.hz // NS_PER_S)

    def balloon_thread(self) -> Process:
        """Every tick: the rule's move, done a batch at a time; a row when the thread sleeps again."""
        kernel = self.kernel
        started = kernel.jiffies
        t_prev = 0.0  # seconds since the thread started, as squeeze_test's clock starts at 0
        while True:
            yield from kernel.wait_event_freezable_timeout(self.balloon_thread_wq, lambda: False, self.tick_jiffies)
            now = (kernel.jiffies - started) / kernel.hz
            stats = self.balloon_stats
            delta = self.rule.delta(stats.target_pages, stats.current_pages, 0, t_prev, now - t_prev)
            t_prev = now
            while delta:
                self.balloon_mutex.lock()
                before = stats.current_pages
                self.balloon_state = self.state = self._move(delta)
                self.balloon_mutex.unlock()
                moved = stats.current_pages - before
                yield from kernel.cond_resched()
                if moved == 0 or self.balloon_state is not BP_DONE:
                    break  # the guest or Xen refused: try again next tick
                delta -= moved

    def _move(self, delta: int) -> BpState:
        if delta < 0:
            return self.decrease_reservation(-delta, GFP_BALLOON)
        if self.balloon_is_inflated():
            return self.increase_reservation(delta)
        return BP_EAGAIN  # nothing ballooned to give back (no hotplug here)
