"""The workloads' tasks as the guest kernel sees them: their pages, page faults, swap, OOM kills.

A task demands anonymous memory and page cache (its workload says how much,
over time).  ``settle()`` brings every live task towards its demand, as the
kernel's fault and read paths would:

* anonymous memory that is no longer wanted is freed (swap entries first);
* new anonymous pages are faulted in (``GFP_HIGHUSER_MOVABLE``): free pages
  down to the floor, then direct reclaim of page cache and slab, then swap
  (when configured), then the OOM killer; a killed task loses all its
  memory, and if the faulting task is the one killed its demand goes unmet;
* swapped-out pages come back when free memory is above the high floor
  (a fault on each of them, at a time the model does not resolve);
* page cache grows towards the tasks' cache demand with free pages down to
  the low floor only: a read evicts old cache rather than pressing for
  memory, so cache that does not fit is unmet demand.  Cache no longer
  demanded stays until reclaim takes it, as clean cache does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from balloonsim.columns import Column
from balloonsim.kernel.mm import GFP_HIGHUSER_MOVABLE, GuestMemory, Pages
from balloonsim.kernel.oom import select_bad_process


@dataclass
class Task:
    name: str
    oom_score_adj: int = 0
    anon: Pages = field(default_factory=Pages)  # resident anonymous pages
    swapped: int = 0  # anonymous pages in swap
    demand_anon: int = 0
    demand_cache: int = 0
    killed: bool = False

    @property
    def resident(self) -> int:
        return self.anon.total

    @property
    def unmet_anon(self) -> int:
        return max(0, self.demand_anon - self.anon.total - self.swapped)


class Tasks:
    COLUMNS = (
        Column("anon_pages"),  # the tasks' resident anonymous pages and the scripted programs' pages
        Column("demand_pages"),
        Column("unmet_demand"),
        Column("unmet_anon"),
        Column("unmet_cache"),
        Column("oom_count"),
    )

    def __init__(
        self,
        mm: GuestMemory,
        *,
        on_oom_kill: Callable[[Task, int], None],
        on_out_of_memory: Callable[[Task, int], None],
        before_oom_kill: Callable[[Task], None] | None = None,
    ):
        self.mm = mm
        self.tasks: list[Task] = []
        self.oom_kills = 0
        self._on_oom_kill = on_oom_kill  # (victim, pages freed)
        self._on_out_of_memory = on_out_of_memory  # (faulting task, pages it could not get): nothing to kill
        self._before_oom_kill = before_oom_kill  # (victim): the state the OOM killer saw
        mm.make_room = self.make_room

    def add(self, name: str, oom_score_adj: int = 0) -> Task:
        task = Task(name, oom_score_adj)
        self.tasks.append(task)
        return task

    # -- what the timeline reads ---------------------------------------------------------

    @property
    def anon_pages(self) -> int:
        return sum(t.anon.total for t in self.tasks)

    def demand_pages(self) -> int:
        """What the workloads ask for, anonymous memory and page cache (a killed task's too)."""
        return sum(t.demand_anon + t.demand_cache for t in self.tasks)

    def unmet_anon(self) -> int:
        """Anonymous pages demanded but neither resident nor swapped (a killed task's, until it restarts)."""
        return sum(t.unmet_anon for t in self.tasks)

    def unmet_cache(self) -> int:
        """Page-cache demand not resident."""
        return max(0, sum(t.demand_cache for t in self.tasks) - self.mm.page_cache.total)

    def unmet_demand(self) -> int:
        """Demand not held: anonymous pages neither resident nor swapped, page cache not resident."""
        return self.unmet_anon() + self.unmet_cache()

    def row_values(self) -> tuple[int, ...]:
        # anon_pages, demand_pages, unmet_anon and unmet_cache in one pass: a row is taken at every event
        resident = demand = cache_demand = unmet_anon = 0
        for t in self.tasks:
            held = t.anon.low + t.anon.high
            resident += held
            demand += t.demand_anon + t.demand_cache
            cache_demand += t.demand_cache
            short = t.demand_anon - held - t.swapped
            if short > 0:
                unmet_anon += short
        unmet_cache = max(0, cache_demand - self.mm.page_cache.total)
        programs = self.mm.programs.pages
        return (programs + resident, demand, unmet_anon + unmet_cache, unmet_anon, unmet_cache, self.oom_kills)

    def cache_demand(self) -> int:
        """The page cache the live tasks read."""
        return sum(t.demand_cache for t in self.tasks if not t.killed)

    # -- demand ----------------------------------------------------------------------------

    def set_demand(self, task: Task, anon: int, cache: int) -> None:
        task.demand_anon = anon
        task.demand_cache = cache

    def revive(self, task: Task) -> None:
        """A killed task is started again (its demand is faulted in at the next settle)."""
        task.killed = False

    def settle(self) -> None:
        # (the tests inline skip what would do nothing: this runs at every workload step)
        for task in self.tasks:
            if not task.killed and task.anon.low + task.anon.high + task.swapped > task.demand_anon:
                self._shrink_to_demand(task)
        for task in self.tasks:
            if not task.killed:  # (an earlier task's fault may have killed it)
                if task.swapped:
                    self._swap_in(task)
                short = task.demand_anon - task.anon.low - task.anon.high - task.swapped
                if short > 0:
                    self._fault(task, short)
        self._fill_cache()

    def _shrink_to_demand(self, task: Task) -> None:
        excess = task.anon.total + task.swapped - task.demand_anon
        if excess <= 0:
            return
        dropped = min(excess, task.swapped)
        task.swapped -= dropped
        self.mm.swap_used -= dropped
        self._free_anon(task, excess - dropped)

    def _free_anon(self, task: Task, count: int) -> None:
        low, high = task.anon.remove(count)
        self.mm.free_low += low
        self.mm.free_high += high

    def _take(self, task: Task, count: int) -> int:
        room = self.mm.alloc_room(GFP_HIGHUSER_MOVABLE)
        low, high = self.mm.take_free(min(count, room), GFP_HIGHUSER_MOVABLE)
        task.anon.add(low, high)
        return low + high

    def _fault(self, task: Task, count: int) -> None:
        """Fault in ``count`` new anonymous pages: free, reclaim, then make room."""
        while count > 0:
            count -= self._take(task, count)
            if not count or self.mm.shrink_caches(count):
                continue
            if not self.make_room(count):
                self._on_out_of_memory(task, count)
                return
            if task.killed:
                return

    def make_room(self, count: int, lowmem_only: bool = False, may_oom: bool = True) -> int:
        """When cache and slab are gone: swap anonymous pages out, else OOM-kill a task; pages freed.

        (A lowmem-only request is helped by the swap and kills as the kernel
        would try them; the pages they free may be highmem.)
        """
        freed = self.swap_out(count)
        if freed or not may_oom:
            return freed
        victim = select_bad_process(self.tasks, self.mm.managed_pages + self.mm.swap_total)
        return self._kill(victim) if victim is not None else 0

    def swap_out(self, count: int) -> int:
        """Move up to ``count`` anonymous pages to swap, from the task with the most resident; the pages freed."""
        freed = 0
        while freed < count and self.mm.swap_used < self.mm.swap_total:
            holder = max(self.tasks, key=lambda t: t.anon.total, default=None)
            if holder is None or not holder.anon.total:
                break
            n = min(count - freed, self.mm.swap_total - self.mm.swap_used, holder.anon.total)
            self._free_anon(holder, n)
            holder.swapped += n
            self.mm.swap_used += n
            freed += n
        return freed

    def _swap_in(self, task: Task) -> None:
        room = max(0, self.mm.free_pages - self.mm.high_floor)
        n = min(task.swapped, room, max(0, task.demand_anon - task.anon.total))
        if n:
            task.swapped -= n
            self.mm.swap_used -= n
            low, high = self.mm.take_free(n, GFP_HIGHUSER_MOVABLE)
            task.anon.add(low, high)

    def _kill(self, victim: Task) -> int:
        if self._before_oom_kill is not None:
            self._before_oom_kill(victim)
        freed = victim.anon.total + victim.swapped
        self._free_anon(victim, victim.anon.total)
        self.mm.swap_used -= victim.swapped
        victim.swapped = 0
        victim.killed = True
        self.oom_kills += 1
        self._on_oom_kill(victim, freed)
        return freed

    def _fill_cache(self) -> None:
        want = self.cache_demand() - self.mm.page_cache.total
        room = max(0, self.mm.free_pages - max(self.mm.low_floor, self.mm.floor[GFP_HIGHUSER_MOVABLE]))
        n = min(want, room)
        if n > 0:
            low, high = self.mm.take_free(n, GFP_HIGHUSER_MOVABLE)
            self.mm.page_cache.add(low, high)
