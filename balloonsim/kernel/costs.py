"""What the balloon driver did, counted, and the simulated time that work takes.

The driver works in synchronous stretches (one loop turn: allocate, scrub,
hypercall) and gives up the CPU at ``cond_resched()``.  The kernel counts
the work (``BalloonActivity``); at each ``cond_resched()`` the ``CostMeter``
turns the work counted since its last charge into nanoseconds.  A turn's
effects therefore happen at its start and its duration passes before the
next turn; events that arrive meanwhile (a new target, a workload step) are
seen at the next turn, as in the kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

from balloonsim.scenario.model import Costs


@dataclass
class BalloonActivity:
    """What the kernel saw the balloon driver do (monotonic counts, for costs and the summary)."""

    passes: int = 0  # balloon_process() runs of the worker
    iterations: int = 0  # turns of its loop (one cond_resched() each)
    pages_out: int = 0  # pages given back to Xen (XENMEM_decrease_reservation)
    pages_in: int = 0  # pages Xen populated (XENMEM_populate_physmap)
    hotplugged: int = 0  # pages hot-added
    hypercalls: int = 0  # XENMEM memory_op calls
    allocated: int = 0  # pages alloc_page() gave the driver
    scrubbed: int = 0  # pages zeroed before release (xen_scrub_pages)
    pv_updates: int = 0  # PV p2m and mapping updates, one per page
    reclaimed: int = 0  # cache pages reclaimed for the driver's allocations
    pod_faults: int = 0  # untouched pages of a PoD guest faulted in from the PoD cache to be scrubbed


#: the costs (Costs fields) of one unit of each count
COSTS_OF = {
    "iterations": ("cond_resched",),
    "pages_out": ("xen_page_out",),
    "pages_in": ("xen_page_in", "free_page"),
    "hypercalls": ("hypercall",),
    "allocated": ("alloc_page",),
    "scrubbed": ("scrub_page",),
    "pv_updates": ("pv_page",),
    "reclaimed": ("reclaim_page",),
    "pod_faults": ("pod_fault",),
}


class CostMeter:
    def __init__(self, costs: Costs, activity: BalloonActivity):
        self.activity = activity
        self.timeless = costs.timeless
        self._counts = attrgetter(*COSTS_OF)
        self._unit_ns = tuple(sum(getattr(costs, c) for c in cs) for cs in COSTS_OF.values())
        self._charged = self._counts(activity)

    def counts(self) -> tuple[int, ...]:
        return self._counts(self.activity)

    def ns_since(self, counts: tuple[int, ...]) -> int:
        """Nanoseconds of the work counted since ``counts`` were read."""
        now = self._counts(self.activity)
        return sum(unit * (d - c) for unit, d, c in zip(self._unit_ns, now, counts, strict=True))

    def mark_charged(self) -> None:
        """The work counted so far is paid for (turns done at once, their time passed as planned)."""
        self._charged = self._counts(self.activity)

    def charge(self) -> int:
        """Nanoseconds of the work counted since the last charge."""
        ns = self.ns_since(self._charged)
        self._charged = self._counts(self.activity)
        return ns
