"""The Xen hypervisor's memory accounting: one host, its free pool, its domains.

Only what ballooning touches is modelled (xen/common/memory.c,
xen/common/page_alloc.c): each domain's ``tot_pages`` and
``max_pages``, the host's free pages, and the two memory_op calls a balloon
driver makes.  Memory that is neither free nor held by a simulated domain
belongs to "other" consumers (Xen's heap, dom0, unsimulated guests), so that
``free + Σ tot_pages + other`` is the host's total at every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from balloonsim.columns import Column
from balloonsim.errors import SimulationError


@dataclass(eq=False)
class Domain:
    """Xen's ``struct domain``, the memory part."""

    COLUMNS: ClassVar[tuple[Column, ...]] = (Column("dom_pages"), Column("max_pages"))

    domid: int
    name: str
    tot_pages: int
    max_pages: int

    def row_values(self) -> tuple[int, ...]:
        return (self.tot_pages, self.max_pages)


class Host:
    COLUMNS = (Column("host_free"),)

    def __init__(self, total_pages: int, free_pages: int):
        self.total_pages = total_pages
        self.free_pages = free_pages
        self.domains: list[Domain] = []
        self.domain_pages = 0  # Σ tot_pages, kept as domains change
        self.other_pages = total_pages - free_pages

    def row_values(self) -> tuple[int, ...]:
        return (self.free_pages,)

    def create_domain(self, name: str, tot_pages: int, max_pages: int) -> Domain:
        """A domain built with ``tot_pages`` already allocated to it (from the other pool)."""
        dom = Domain(len(self.domains) + 1, name, tot_pages, max_pages)
        self.domains.append(dom)
        self.domain_pages += tot_pages
        self.other_pages -= tot_pages
        return dom

    def destroy_domain(self, dom: Domain) -> int:
        """domain_kill(): every page of the domain goes back to the heap; returns how many."""
        freed = dom.tot_pages
        dom.tot_pages = 0
        dom.max_pages = 0
        self.domain_pages -= freed
        self.free_pages += freed
        return freed

    # XENMEM_populate_physmap with order-0 extents
    def populate_physmap(self, dom: Domain, nr_extents: int) -> int:
        """Allocate up to ``nr_extents`` pages to ``dom``; return how many were done.

        Xen stops at the first extent it cannot allocate: when the domain
        would exceed ``max_pages`` (``assign_pages``) or the heap has no free
        page.  The guest sees 0..n, never an error code.
        """
        done = min(nr_extents, self.populate_headroom(dom))
        if done <= 0:
            return 0
        self.free_pages -= done
        dom.tot_pages += done
        self.domain_pages += done
        return done

    def populate_headroom(self, dom: Domain) -> int:
        """Pages ``populate_physmap`` would grant ``dom`` in full right now."""
        return max(0, min(self.free_pages, dom.max_pages - dom.tot_pages))

    # XENMEM_decrease_reservation
    def decrease_reservation(self, dom: Domain, nr_extents: int) -> int:
        """Give ``nr_extents`` of the domain's pages back to the heap; always all of them."""
        if nr_extents > dom.tot_pages:
            raise SimulationError(f"domain {dom.name} releases {nr_extents} pages but holds only {dom.tot_pages}")
        dom.tot_pages -= nr_extents
        self.domain_pages -= nr_extents
        self.free_pages += nr_extents
        return nr_extents

    # XEN_DOMCTL_max_mem
    def set_max_pages(self, dom: Domain, max_pages: int) -> None:
        dom.max_pages = max_pages

    def set_free_pages(self, free_pages: int) -> None:
        """Other consumers take or release memory until ``free_pages`` are free."""
        other = self.total_pages - self.domain_pages - free_pages
        if other < 0:
            raise SimulationError(
                f"host_free {free_pages}: the host has {self.total_pages} pages and its domains hold "
                f"{self.domain_pages}, so at most {self.total_pages - self.domain_pages} can be free"
            )
        self.free_pages = free_pages
        self.other_pages = other

    def conservation_problem(self, full: bool = False) -> str | None:
        """None when free + Σ tot_pages + other equals the total; else what is wrong.

        ``full`` re-adds every domain's pages instead of trusting the running sum.
        """
        domain_pages = sum(d.tot_pages for d in self.domains) if full else self.domain_pages
        if full and domain_pages != self.domain_pages:
            return f"Σ tot_pages is {domain_pages} but the host counted {self.domain_pages}"
        if self.free_pages < 0 or self.other_pages < 0:
            return f"negative host memory: free {self.free_pages}, other {self.other_pages}"
        if self.free_pages + domain_pages + self.other_pages != self.total_pages:
            return (
                f"host pages not conserved: free {self.free_pages} + domains {domain_pages} + "
                f"other {self.other_pages} != total {self.total_pages}"
            )
        return None
