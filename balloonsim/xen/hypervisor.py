"""The Xen hypervisor's memory accounting: one host, its free pool, its domains.

Only what ballooning touches is modelled (xen/common/memory.c,
xen/common/page_alloc.c): each domain's ``tot_pages`` and
``max_pages``, its populate-on-demand pool (``xen/pod.py``), the host's free
pages, the two memory_op calls a balloon driver makes, and a crashed domain's
destruction.  Memory that is neither free nor held by a simulated domain
belongs to "other" consumers (Xen's heap, dom0, unsimulated guests), so that
``free + Σ tot_pages + other`` is the host's total at every step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from balloonsim.columns import Column
from balloonsim.errors import SimulationError
from balloonsim.xen.pod import PodPool

if TYPE_CHECKING:
    from balloonsim.kernel.lazy_turns import TurnPlan


@dataclass(eq=False)
class Domain:
    """Xen's ``struct domain``, the memory part."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (
        Column("dom_pages"),
        Column("max_pages"),
        Column("pod_entries"),
        Column("pod_cache"),
    )

    domid: int
    name: str
    tot_pages: int
    max_pages: int
    pod: PodPool = field(default_factory=PodPool)
    pv: bool = False  # not an HVM container (XEN_DOMINF_hvm_guest clear)
    destroyed: bool = False

    def row_values(self) -> tuple[int, ...]:
        return (self.tot_pages, self.max_pages, self.pod.entries, self.pod.cache)


class Host:
    COLUMNS = (Column("host_free"),)

    def __init__(self, total_pages: int, free_pages: int):
        self.total_pages = total_pages
        self._free = free_pages
        self.domains: list[Domain] = []
        self.domain_pages = 0  # Σ tot_pages, kept as domains change (planned turns applied so far)
        self.other_pages = total_pages - free_pages
        # guests' loop turns being done lazily (kernel/lazy_turns.py): their turns due so far are
        # applied before anyone reads the free pool, and what they will take from it is kept free
        self._plans: list[TurnPlan] = []
        self.applying = 0  # a plan's turns are being applied
        self._changes = 0  # counts every change of the pool or the plans, for the snapshot's cache
        self._snapshot: tuple[tuple[int, float, int], tuple[int, int, int]] | None = None

    @property
    def free_pages(self) -> int:
        """Xen's free pages now."""
        if self._plans:
            self.sync()
        return self._free

    def row_values(self) -> tuple[int, ...]:
        return (self.snapshot()[0],)

    def snapshot(self) -> tuple[int, int, int]:
        """(free, Σ tot_pages, other) now, without applying planned turns: their pages are added."""
        plans = self._plans
        if not plans:
            return self._free, self.domain_pages, self.other_pages
        env = plans[0].guest.env
        key = (env.now, env.reached, self._changes)  # a row's timeline and host parts read it twice
        if self._snapshot is None or self._snapshot[0] != key:
            moved = sum(plan.pending_pages() for plan in plans)
            self._snapshot = key, (self._free + moved, self.domain_pages - moved, self.other_pages)
        return self._snapshot[1]

    # -- planned loop turns (kernel/lazy_turns.py) -----------------------------------------

    def add_plan(self, plan: TurnPlan) -> None:
        self._plans.append(plan)
        self._changes += 1

    def forget_plan(self, plan: TurnPlan) -> None:
        self._plans.remove(plan)
        self._changes += 1

    def sync(self) -> None:
        """Apply every plan's turns due by now."""
        for plan in tuple(self._plans):
            plan.catch_up()

    def free_for_plan(self) -> int:
        """Free pages a new balloon-in plan may count on: what the others' plans will not take."""
        self.sync()
        return self._free - sum(plan.remaining_in() for plan in self._plans)

    def _keep_room_for_plans(self) -> None:
        """After free memory was taken: balloon-in plans that could no longer all be granted end now."""
        if sum(plan.remaining_in() for plan in self._plans) > self._free:
            for plan in [p for p in self._plans if p.direction > 0]:
                plan.cut()

    def create_domain(
        self,
        name: str,
        tot_pages: int,
        max_pages: int,
        pod: PodPool | None = None,
        pv: bool = False,
        from_free: bool = False,
    ) -> Domain:
        """A domain built with ``tot_pages`` already allocated to it: from the other pool for the
        domains running at t=0 (the host's total holds them), from the free pool for a domain built
        during the run (the caller checked there are that many free).

        A PoD build (``pod``: xc_domain_set_pod_target, then populate_physmap with
        XENMEMF_populate_on_demand, tools/libs/guest/xg_dom_x86.c meminit_hvm) holds ``pod.cache``
        of its pages in the cache, and its RAM is ``pod.entries`` PoD entries.
        """
        dom = Domain(len(self.domains) + 1, name, tot_pages, max_pages, pod or PodPool(), pv)
        self.domains.append(dom)
        if from_free:
            self.sync()
            self.domain_pages += tot_pages
            self._free -= tot_pages
            self._changes += 1
            self._keep_room_for_plans()
        else:
            self.domain_pages += tot_pages
            self.other_pages -= tot_pages
            self._changes += 1
        return dom

    # XENMEM_populate_physmap with order-0 extents
    def populate_physmap(self, dom: Domain, nr_extents: int) -> int:
        """Allocate up to ``nr_extents`` pages to ``dom``; return how many were done.

        Xen stops at the first extent it cannot allocate: when the domain
        would exceed ``max_pages`` (``assign_pages``) or the heap has no free
        page.  The guest sees 0..n, never an error code.
        """
        if self.applying:  # a plan's own turns: their pages were kept free for them
            self._adjust_tot_pages(dom, nr_extents)
            return nr_extents
        done = min(nr_extents, self.populate_headroom(dom))
        if done <= 0:
            return 0
        self._adjust_tot_pages(dom, done)
        if self._plans:
            self._keep_room_for_plans()
        return done

    def populate_headroom(self, dom: Domain) -> int:
        """Pages ``populate_physmap`` would grant ``dom`` in full right now."""
        return max(0, min(self.free_pages, dom.max_pages - dom.tot_pages))

    # XENMEM_decrease_reservation
    def decrease_reservation(self, dom: Domain, nr_extents: int, pod_entries: int = 0) -> int:
        """Give ``nr_extents`` of the domain's pages back, ``pod_entries`` of them PoD entries; always all.

        p2m_pod_decrease_reservation (xen/arch/x86/mm/p2m-pod.c) drops the entries and may keep
        real pages for the PoD cache; the rest go back to the heap.
        """
        if pod_entries > dom.pod.entries or nr_extents - pod_entries > dom.tot_pages - dom.pod.cache:
            raise SimulationError(
                f"domain {dom.name} releases {nr_extents} pages ({pod_entries} PoD entries) but holds only "
                f"{dom.tot_pages - dom.pod.cache} populated pages and {dom.pod.entries} PoD entries"
            )
        self._adjust_tot_pages(dom, -dom.pod.decrease_reservation(pod_entries, nr_extents - pod_entries))
        return nr_extents

    def _adjust_tot_pages(self, dom: Domain, delta: int) -> None:
        """Pages move between the heap and the domain (domain_adjust_tot_pages)."""
        dom.tot_pages += delta
        self.domain_pages += delta
        self._free -= delta
        self._changes += 1

    # XEN_DOMCTL_set_pod_target (xc_domain_set_pod_target)
    def pod_set_target(self, dom: Domain, target: int) -> None:
        """p2m_pod_set_mem_target: size the PoD cache for a target of ``target`` pages.

        The cache grows from the heap as far as the free pages and max_pages allow
        (p2m_pod_set_cache_target allocates domain pages), and shrinks back to it.
        """
        wanted = dom.pod.cache_target(target, dom.tot_pages)
        if wanted is None or dom.destroyed:
            return
        change = min(wanted - dom.pod.cache, self.populate_headroom(dom))
        dom.pod.cache += change
        self._adjust_tot_pages(dom, change)
        if change > 0 and self._plans:
            self._keep_room_for_plans()

    def pod_release_scrubbed(self, dom: Domain, touched: int, faulted: int, batch: int) -> bool:
        """decrease_reservation of ``touched`` real pages and ``faulted`` PoD entries the guest zeroed
        first, in calls of ``batch`` pages (``PodPool.release_scrubbed``); False: out of PoD memory."""
        freed = dom.pod.release_scrubbed(touched, faulted, batch)
        if freed is None:
            return False
        self._adjust_tot_pages(dom, -freed)
        return True

    def pod_demand_populate(self, dom: Domain, pages: int) -> bool:
        """The guest touches ``pages`` PoD entries; False when the cache cannot back them all
        (p2m_pod_demand_populate: "out of PoD memory", then domain_crash)."""
        return dom.pod.demand_populate(pages)

    def destroy_domain(self, dom: Domain) -> int:
        """domain_kill(), when the toolstack destroys a domain: all its pages go back to the heap
        (returns how many)."""
        freed = dom.tot_pages
        self._adjust_tot_pages(dom, -freed)
        dom.pod = PodPool()
        dom.destroyed = True
        return freed

    # XEN_DOMCTL_max_mem
    def set_max_pages(self, dom: Domain, max_pages: int) -> None:
        dom.max_pages = max_pages

    def set_free_pages(self, free_pages: int) -> None:
        """Other consumers take or release memory until ``free_pages`` are free."""
        self.sync()
        other = self.total_pages - self.domain_pages - free_pages
        if other < 0:
            raise SimulationError(
                f"host_free {free_pages}: the host has {self.total_pages} pages and its domains hold "
                f"{self.domain_pages}, so at most {self.total_pages - self.domain_pages} can be free"
            )
        self._free = free_pages
        self.other_pages = other
        self._changes += 1
        self._keep_room_for_plans()

    def conservation_problem(self, full: bool = False) -> str | None:
        """None when free + Σ tot_pages + other equals the total; else what is wrong.

        ``full`` re-adds every domain's pages instead of trusting the running sum.
        """
        domain_pages = sum(d.tot_pages for d in self.domains) if full else self.domain_pages
        if full and domain_pages != self.domain_pages:
            return f"Σ tot_pages is {domain_pages} but the host counted {self.domain_pages}"
        free = self._free  # planned turns move pages between the two sides as they are applied
        if free < 0 or self.other_pages < 0:
            return f"negative host memory: free {free}, other {self.other_pages}"
        if free + domain_pages + self.other_pages != self.total_pages:
            return (
                f"host pages not conserved: free {free} + domains {domain_pages} + "
                f"other {self.other_pages} != total {self.total_pages}"
            )
        return None
