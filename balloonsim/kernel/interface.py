"""The seam between a balloon driver and the guest kernel it runs in.

``BalloonKernel`` lists everything balloon.c calls outside itself: the page
allocator and MemAvailable (<linux/mm.h>), memory hotplug
(<linux/memory_hotplug.h>), the hypercalls of <xen/mem-reservation.h>, the
workqueue or kernel threads, mutexes and wait queues, sysctl, printk and panic.  A driver version is
given one object with these and nothing else; ``GuestKernel`` is that
object.  ``BalloonDriver`` is what the kernel, the xenstore watch and the
timeline ask of a driver version.  The constants and structs here are the
ones balloon.c takes from kernel headers, so every driver version shares them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Protocol

from balloonsim.columns import Column

if TYPE_CHECKING:
    import simpy

    from balloonsim.kernel.kthread import KThread
    from balloonsim.kernel.workqueue import DelayedWork, Mutex, WaitQueue
    from balloonsim.sim import Process

# include/uapi/asm-generic/errno-base.h
E2BIG = 7
ENOMEM = 12
EINVAL = 22

# include/linux/memory.h: memory notifier actions
MEM_ONLINE = 1
MEM_GOING_ONLINE = 2


@dataclass(frozen=True)
class Gfp:
    """Allocation flags (include/linux/gfp.h), as far as the model tells them apart."""

    name: str
    highmem: bool  # __GFP_HIGHMEM: may use highmem (and prefers it)
    noretry: bool = False  # __GFP_NORETRY: light reclaim only, never the OOM killer


# balloon.c: GFP_HIGHUSER | __GFP_NOWARN | __GFP_NORETRY | __GFP_NOMEMALLOC
GFP_BALLOON = Gfp("GFP_BALLOON", highmem=True, noretry=True)
GFP_USER = Gfp("GFP_USER", highmem=False)
GFP_HIGHUSER_MOVABLE = Gfp("GFP_HIGHUSER_MOVABLE", highmem=True)  # a program's page faults

RETRY_UNLIMITED = 0


@dataclass
class BalloonStats:
    """struct balloon_stats (include/xen/balloon.h)."""

    current_pages: int = 0  # pages in the guest (populated)
    target_pages: int = 0
    target_unpopulated: int = 0  # pages lent to backends (alloc_xenballooned_pages)
    total_pages: int = 0  # boot pages + hot-added pages
    balloon_low: int = 0  # lowmem pages on the ballooned list
    balloon_high: int = 0  # highmem pages on the ballooned list
    schedule_delay: int = 1
    max_schedule_delay: int = 32
    retry_count: int = 1
    max_retry_count: int = RETRY_UNLIMITED


#: the timeline columns of struct balloon_stats, which every driver version keeps
BALLOON_STATS_COLUMNS = (
    Column("current_pages"),
    Column("target_pages"),
    Column("target_unpopulated"),
    Column("total_pages"),
    Column("balloon_low"),
    Column("balloon_high"),
    Column("schedule_delay"),
    Column("retry_count"),
)


def balloon_stats_values(stats: BalloonStats) -> tuple[int, ...]:
    """The values of ``BALLOON_STATS_COLUMNS``."""
    return (
        stats.current_pages,
        stats.target_pages,
        stats.target_unpopulated,
        stats.total_pages,
        stats.balloon_low,
        stats.balloon_high,
        stats.schedule_delay,
        stats.retry_count,
    )


@dataclass
class Resource:
    """struct resource: a range of physical address space, in pages."""

    start_pfn: int
    pages: int

    @property
    def end_pfn(self) -> int:
        return self.start_pfn + self.pages


class BalloonKernel(Protocol):
    """What balloon.c calls in the kernel around it."""

    hz: int
    frame_list_size: int  # ARRAY_SIZE(frame_list): pages per reservation batch
    section_pages: int  # PAGES_PER_SECTION
    max_pfn: int
    xen_pv_domain: bool
    config_xen_unpopulated_alloc: bool
    xen_start_info_nr_pages: int
    xen_released_pages: int
    xen_extra_mem: list[tuple[int, int]]  # PV boot: (start pfn, pages) of each extra region
    iterations_take_no_time: bool  # costs none: the driver's work takes no simulated time
    passes_unobserved: bool  # and no row after each pass: a thread's passes may be done at once

    # the page allocator (mm/page_alloc.c) and MemAvailable
    def alloc_pages(self, count: int, gfp: Gfp) -> tuple[int, int]: ...
    def free_reserved_pages(self, low: int, high: int) -> None: ...
    def adjust_managed_page_count(self, delta: int) -> None: ...
    def si_mem_available(self) -> int: ...
    @property
    def totalreserve_pages(self) -> int: ...
    def get_num_physpages(self) -> int: ...
    def split_by_zone(self, start_pfn: int, end_pfn: int) -> tuple[int, int]: ...

    # memory hotplug (kernel/resource.c, mm/memory_hotplug.c)
    def allocate_resource(self, pages: int) -> Resource | None: ...
    def release_resource(self, resource: Resource) -> None: ...
    def add_memory_resource(self, resource: Resource) -> int: ...
    def set_online_page_callback(self, callback: Callable[[int, int], None]) -> None: ...
    def register_memory_notifier(self, notifier: Callable[[int], None]) -> None: ...

    # hypercalls (include/xen/mem-reservation.h)
    # (``calls``: a move of several batches done at once counts one call per batch)
    def xenmem_reservation_increase(self, count: int, calls: int = 1) -> int: ...
    def xenmem_reservation_decrease(self, count: int, calls: int = 1) -> int: ...
    def xenmem_reservation_scrub_pages(self, count: int) -> None: ...
    def xenmem_reservation_va_mapping_update(self, count: int) -> None: ...
    def xenmem_reservation_va_mapping_reset(self, count: int) -> None: ...

    # scheduling: delayed work, cond_resched, mutexes, wait queues
    def delayed_work(self, func: Callable[[], Process], name: str) -> DelayedWork: ...
    def schedule_delayed_work(self, work: DelayedWork, delay: int) -> bool: ...
    def cond_resched(self) -> Iterable[simpy.Event]: ...
    def mutex(self, name: str) -> Mutex: ...
    def wait_queue(self) -> WaitQueue: ...
    def wait_event_interruptible(
        self, wq: WaitQueue, condition: Callable[[], bool], signal_after: int | None
    ) -> Process: ...

    # kernel threads (v5.15 on): kthread_run, their sleeps and wake-ups (wait_queue().wake_up()),
    # the late initcalls and module parameters of the boot wait, and panic()
    @property
    def jiffies(self) -> int: ...
    def kthread_run(self, threadfn: Callable[[], Process], name: str) -> KThread: ...
    def wait_event_freezable_timeout(self, wq: WaitQueue, condition: Callable[[], bool], timeout: int) -> Process: ...
    def schedule_timeout_interruptible(self, timeout: int) -> Process: ...
    def late_initcall_sync(self, initcall: Callable[[], Process]) -> None: ...
    def module_param(self, name: str, default: int) -> int: ...
    def panic(self, message: str) -> None: ...

    # sysctl, printk, and the observer's event table
    def register_sysctl(self, path: str, handler: Callable[[str], int]) -> None: ...
    def printk(self, level: str, message: str) -> None: ...
    def trace(self, kind: str, pages: int = -1, value: int = -1, message: str = "") -> None: ...

    # not in balloon.c: what a shortcut over many identical loop turns must know
    def steady_turns(self, driver: BalloonDriver) -> Iterable[simpy.Event]: ...
    def planned_turns(self, driver: BalloonDriver) -> tuple[simpy.Event, ...] | None: ...
    def cond_resched_turns(self, turns: int) -> None: ...
    def populate_headroom(self) -> int: ...
    def alloc_room(self, gfp: Gfp) -> int: ...
    def mem_available_falls_with_free(self) -> bool: ...


class BalloonDriver(Protocol):
    """A driver version, as the kernel, the xenstore watch (xen-balloon.c) and the recorder see it."""

    COLUMNS: ClassVar[tuple[Column, ...]]  # its timeline columns (see ``row_values``)
    balloon_stats: BalloonStats
    backend_pages: int  # pages lent to backends by alloc_xenballooned_pages()

    def __init__(self, kernel: BalloonKernel, *, memory_hotplug: bool, bulk_iterations: bool = True): ...
    def balloon_init(self) -> None: ...
    def balloon_set_new_target(self, target: int) -> None: ...
    def alloc_xenballooned_pages(self, nr_pages: int, signal_after: int | None = None) -> Process: ...
    def free_xenballooned_pages(self, nr_pages: int) -> None: ...
    def row_values(self) -> tuple[int, ...]: ...

    # not in balloon.c: the coming loop turns that are whole batches ending BP_DONE, and their effects
    frame_list_size: int

    def steady_turns(self, leave_a_turn: bool) -> tuple[int, int]: ...
    def do_steady_turns(self, direction: int, turns: int) -> None: ...
    def pass_outcome(self) -> tuple[str, int, int, str] | None:
        """After a worker pass: (kind, pages, value, message) for the events table, or None."""
        ...
