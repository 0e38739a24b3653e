"""kswapd: background reclaim, woken when free memory falls under the low watermarks.

It reclaims page cache and reclaimable slab, then (with swap) anonymous
pages, until free memory is back at the high watermarks or nothing is left
to reclaim, at ``rate`` pages per second: in steps of at most ``STEP_NS``,
each step's pages freed when the step ends, so that other events interleave
with a long run.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from balloonsim.kernel.mm import GuestMemory
from balloonsim.kernel.tasks import Tasks
from balloonsim.sim import EVENT, Process, Timer
from balloonsim.units import NS_PER_S

STEP_NS = 100_000_000  # 100 ms


class Kswapd:
    def __init__(
        self,
        env: simpy.Environment,
        mm: GuestMemory,
        tasks: Tasks,
        rate: int,
        *,
        on_step: Callable[[], None],
        before_step: Callable[[], None] = lambda: None,
    ):
        self.env = env
        self.mm = mm
        self.tasks = tasks
        self.rate = rate  # pages per second
        self.running = False
        self.reclaimed = 0  # pages freed, in all
        self._on_step = on_step  # after each step that freed pages
        self._before_step = before_step  # before a step's reclaim changes the guest

    def _wanted(self) -> int:
        """Pages to free now: up to the high floor, no more than reclaim could free."""
        mm = self.mm
        swappable = min(self.tasks.anon_pages, mm.swap_total - mm.swap_used)
        return min(mm.high_floor - mm.free_pages, mm.reclaimable + swappable)

    def wakeup_kswapd(self) -> None:
        """Called after allocations: start reclaiming if free memory is under the low floor."""
        if self.running or self.rate <= 0 or self.mm.free_pages >= self.mm.low_floor or self._wanted() <= 0:
            return
        self.running = True
        self.env.process(self._balance())

    def _balance(self) -> Process:
        """balance_pgdat(): reclaim towards the high floor, a step at a time."""
        step_pages = max(1, self.rate * STEP_NS // NS_PER_S)
        while (wanted := min(self._wanted(), step_pages)) > 0:
            yield Timer(self.env, -(-wanted * NS_PER_S // self.rate), EVENT)
            self._before_step()
            wanted = min(wanted, self._wanted())  # others may have freed memory meanwhile
            if wanted <= 0:
                break
            freed = self.mm.shrink_caches(wanted)
            freed += self.tasks.swap_out(wanted - freed)
            self.reclaimed += freed
            self._on_step()
        self.running = False
