"""Column buffers for the timeline, host and events tables.

A row is a tuple of ints appended to one flat ``array('q')`` (names and
states are small integer codes), so recording costs one call and no Python
object per row; the DataFrames are built once, at the end.
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import numpy as np

from balloonsim.kernel.balloon import BpState

if TYPE_CHECKING:
    from balloonsim.kernel.guest import GuestKernel
    from balloonsim.xen.hypervisor import Host

#: The timeline's recorded columns, in order (derived ones are added later).
TIMELINE_FIELDS = (
    "time_ns",
    "domain",
    "cause",
    "current_pages",
    "target_pages",
    "target_unpopulated",
    "total_pages",
    "balloon_low",
    "balloon_high",
    "schedule_delay",
    "retry_count",
    "state",
    "work_pending",
    "work_expiry",
    "host_free",
    "dom_pages",
    "max_pages",
    "guest_free",
    "mem_available",
    "mem_total",
    "kernel_pages",
    "anon_pages",
    "page_cache",
    "slab_reclaimable",
    "swap_pages",
    "demand_pages",
    "unmet_demand",
    "oom_count",
    "backend_pages",
    "offline_pages",
    "present_pages",
)
HOST_FIELDS = ("time_ns", "domain", "cause", "host_free", "domain_pages", "other_pages")
EVENT_FIELDS = ("time_ns", "domain", "kind", "pages", "value")

#: ``state``: the value update_schedule() last returned, NONE before the first pass.
STATES = ("NONE", *(s.value for s in BpState))
_STATE_CODE = {None: 0, **{s: i + 1 for i, s in enumerate(BpState)}}


class Codes:
    """Strings interned as small ints, in order of first use."""

    def __init__(self, initial: tuple[str, ...] = ()):
        self.names: list[str] = list(initial)
        self._index = {name: i for i, name in enumerate(initial)}

    def __call__(self, name: str) -> int:
        code = self._index.get(name)
        if code is None:
            code = self._index[name] = len(self.names)
            self.names.append(name)
        return code


class Recorder:
    def __init__(self, domain_names: list[str]):
        self.domains = list(domain_names)
        self.causes = Codes(("init", "work", "end"))
        self.kinds = Codes()
        self.timeline = array("q")
        self.host = array("q")
        self.events = array("q")
        self.messages: list[str] = []
        self.rows = 0

    def row(self, now: int, index: int, cause: int, guest: GuestKernel, host: Host) -> None:
        """One timeline row (and one host row) after an event or a worker pass."""
        stats = guest.driver.balloon_stats
        pending, expiry = guest.driver.worker_schedule()
        mm = guest.mm
        tasks = guest.tasks
        if tasks.tasks:
            anon, demand, unmet = tasks.anon_pages, tasks.demand_pages(), tasks.unmet_demand()
        else:
            anon = demand = unmet = 0
        self.timeline.extend(
            (
                now,
                index,
                cause,
                stats.current_pages,
                stats.target_pages,
                stats.target_unpopulated,
                stats.total_pages,
                stats.balloon_low,
                stats.balloon_high,
                stats.schedule_delay,
                stats.retry_count,
                _STATE_CODE[guest.driver.state],
                pending,
                expiry,
                host.free_pages,
                guest.domain.tot_pages,
                guest.domain.max_pages,
                mm.free_low + mm.free_high,
                mm.si_mem_available(),
                mm.managed_pages,
                mm.kernel.total,
                mm.programs.pages + anon,
                mm.page_cache.total,
                mm.slab.total,
                mm.swap_used,
                demand,
                unmet,
                tasks.oom_kills,
                guest.driver.backend_pages,
                guest.hotplug.offline_pages,
                guest.present_pages(),
            )
        )
        self.host.extend((now, index, cause, host.free_pages, host.domain_pages, host.other_pages))
        self.rows += 1

    def event(self, now: int, index: int, kind: str, pages: int, value: int, message: str) -> None:
        self.events.extend((now, index, self.kinds(kind), pages, value))
        self.messages.append(message)

    @staticmethod
    def matrix(buffer: array, width: int) -> np.ndarray:
        return (
            np.frombuffer(buffer, dtype=np.int64).reshape(-1, width) if len(buffer) else np.zeros((0, width), np.int64)
        )
