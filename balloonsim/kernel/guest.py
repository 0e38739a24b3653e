"""One guest kernel: the environment a balloon driver runs in, assembled from a scenario.

``GuestKernel`` is the ``BalloonKernel`` of ``kernel/interface.py``: the page
allocator and MemAvailable (``mm``), hypercalls, the workqueue, memory
hotplug, sysctl and printk, for the driver version the scenario names
(``registry.DRIVERS``).  It talks to Xen only as a real guest does, through
hypercalls on its own domain and xenstore.  What it does is told to a
``KernelObserver`` (the engine): rows due, events, ends of worker passes;
the observer records and never changes the model.  It also says whether
anything is still to come in the run, which a spinning worker needs to know.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from functools import partial
from typing import Protocol

import simpy

from balloonsim.arch import ARCHES, zone_layout
from balloonsim.errors import SimulationError
from balloonsim.kernel.costs import BalloonActivity, CostMeter
from balloonsim.kernel.hotplug import MemoryHotplug
from balloonsim.kernel.interface import BalloonDriver, Gfp, Resource
from balloonsim.kernel.kswapd import Kswapd
from balloonsim.kernel.kthread import (
    GuestStopped,
    KernelPanic,
    KThread,
    ThreadState,
    schedule_timeout,
    wait_event_timeout,
)
from balloonsim.kernel.lazy_turns import TurnPlan, plan_turns
from balloonsim.kernel.mm import GFP_HIGHUSER_MOVABLE, GuestMemory, Pages
from balloonsim.kernel.tasks import Task, Tasks
from balloonsim.kernel.watermarks import Reserves, compute_reserves, init_per_zone_wmark_min, zones_now
from balloonsim.kernel.workqueue import LIVELOCK_RUNS, DelayedWork, Mutex, WaitQueue, wait_event_interruptible
from balloonsim.kernel.xen_balloon import XenBalloonFrontend
from balloonsim.registry import DRIVERS
from balloonsim.scenario.model import Domain as DomainSpec
from balloonsim.sim import EVENT, WORK, Process, Timer, run_now
from balloonsim.units import PAGE_SHIFT, PAGE_SIZE, Clock, format_pages
from balloonsim.workload import demand_points, drive, workload_rng
from balloonsim.xen.hypervisor import Domain, Host
from balloonsim.xen.xenstore import XenStore


class DomainCrashed(GuestStopped):
    """Xen crashed the domain (out of PoD memory): whatever the guest was doing ends there."""


class KernelObserver(Protocol):
    """Who records what a guest kernel does (the engine)."""

    def row(self, guest: GuestKernel, cause: str, only_if_due: bool = False) -> None:
        """A timeline row now; ``only_if_due``: unless one was recorded lately (a long pass, kswapd)."""

    def next_row_due(self, guest: GuestKernel) -> int:
        """When a row ``only_if_due`` would next be recorded for ``guest`` (ns)."""

    def event(self, guest: GuestKernel, kind: str, pages: int, value: int, message: str) -> None:
        """One row of the events table."""

    def pass_done(self, guest: GuestKernel) -> None:
        """A worker pass has ended (a balloon_process() run, or a pass of the balloon thread)."""

    def guest_crashed(self, guest: GuestKernel) -> None:
        """The guest stopped (its kernel panicked, or Xen crashed it): the toolstack destroys its
        domain (xl's default on_crash)."""

    def still_to_come(self, guest: GuestKernel) -> bool:
        """Whether anything besides ``guest``'s balloon worker is still to happen in the run (a
        scripted event, a manager's next look, a workload, kswapd, another guest's worker)."""


class GuestKernel:
    def __init__(
        self,
        env: simpy.Environment,
        spec: DomainSpec,
        *,
        host: Host,
        domain: Domain,
        xenstore: XenStore,
        observer: KernelObserver,
        bulk_iterations: bool = True,
        rows_every_pass: bool = False,
        stoppable: bool = False,
        work_priority: float = WORK,
    ):
        self.env = env
        self.work_priority = work_priority  # of its kernel work's timers (sim.work_priority)
        self.spec = spec
        self.name = spec.name
        self.host = host
        self.domain = domain
        self.xenstore = xenstore
        self.observer = observer
        kconf = spec.kernel
        hotplug_conf = kconf.hotplug

        base = ARCHES[kconf.arch]
        lowmem = kconf.lowmem if kconf.lowmem is not None else base.lowmem_pages
        section = hotplug_conf.section if hotplug_conf.section is not None else base.section_pages
        self.arch = dataclasses.replace(base, lowmem_pages=lowmem, section_pages=section)
        self.frame_list_size = self.arch.frame_list
        self.section_pages = section
        self.hz = kconf.hz
        self.clock = Clock(kconf.hz)

        # What the guest was booted with.
        self.xen_pv_domain = spec.type == "pv"
        self.xen_initial_domain = spec.initial_domain
        self.config_xen_unpopulated_alloc = kconf.unpopulated_alloc
        ram = self.ram_pages = spec.ram_pages
        self.xen_start_info_nr_pages = ram
        self.xen_released_pages = 0
        static_max = spec.memory if spec.static_max_pages is None else spec.static_max_pages
        if self.xen_pv_domain:  # E820 RAM up to static-max; beyond nr_pages it is extra memory
            self.max_pfn = max(ram, static_max)
            self.xen_extra_mem = [(ram, self.max_pfn - ram)]
        else:
            self.max_pfn = ram
            self.xen_extra_mem = []
        self.xen_scrub_pages = spec.balloon.scrub_pages
        self.activity = BalloonActivity()
        self.meter = CostMeter(spec.costs, self.activity)
        self.plan: TurnPlan | None = None  # steady loop turns being done lazily (lazy_turns.py)
        self.iterations_take_no_time = self.meter.timeless
        # a row after every pass of a balloon thread (progress_every 0s), as the oracle prints them
        self.rows_every_pass = rows_every_pass
        self.passes_unobserved = self.iterations_take_no_time and not rows_every_pass

        self.boot_zones = zone_layout(self.arch, spec.type, ram)
        self.reserves = compute_reserves(
            self.boot_zones,
            min_free_kbytes=kconf.min_free_kbytes,
            watermark_scale_factor=kconf.watermark_scale_factor,
            thp=kconf.thp,
        )
        # values the scenario (or a later override) fixes: kept when the reserves are computed again
        self._fixed = {
            name: int(value)
            for name in ("totalreserve_pages", "floor_balloon", "floor_user")
            if (value := getattr(kconf, name)) != "auto"
        }
        self._onlined = Pages()  # hot-added pages onlined, by zone class
        struct_page = kconf.struct_page_bytes
        self.struct_page_bytes = self.arch.struct_page_bytes if struct_page is None else struct_page
        low_boot, high_boot = self.arch.split_by_zone(0, ram)
        self.mm = GuestMemory(
            free_low=low_boot,
            free_high=high_boot,
            managed=ram,
            **self._reserves_in_force(self.reserves),
            swap=kconf.swap,
            mem_available=None if kconf.mem_available == "auto" else int(kconf.mem_available),
            on_alloc=self._allocated,
        )
        # PoD (xen/pod.py): the free pages never touched since boot are Xen's PoD entries.  The
        # allocator is taken to hand out touched pages first, so an allocation touches untouched
        # pages only when free memory falls below their count.
        self.untouched = domain.pod.entries
        self._untouched_out = 0  # untouched pages the balloon allocated and has not handed back yet
        self._untouched_scrubbed = 0  # of those, the ones it zeroed (faulted in)
        self.crashed = False  # gone: crashed, panicked or stopped; nothing in it runs again
        self.stoppable = stoppable  # the scenario stops it (xl shutdown) at some point
        self.mm.boot_alloc(self.mm.kernel, kconf.used_at_boot)
        self.mm.boot_alloc(self.mm.slab, kconf.slab_reclaimable)
        self._fault_in_untouched()
        self.tasks = Tasks(
            self.mm,
            on_oom_kill=self._oom_killed,
            on_out_of_memory=self._out_of_memory,
            before_oom_kill=self._before_oom_kill,
        )

        self._task_specs = {w.name: w for w in spec.workloads}
        self._pages_in_seen = 0
        self._reached_at_last_turn = False  # current_pages == target_pages after the last costed turn
        self._moved_at_last_pass = 0
        self._passes_spinning = 0
        self._spinning_since = 0  # ns: the first pass of the present spin
        self._works: list[DelayedWork] = []
        self._threads: list[KThread] = []
        self._late_initcalls: list[Callable[[], Process]] = []
        self._init_tasks: list[KThread] = []  # the init task, while it runs the late initcalls
        self._after_boot: Callable[[], None] | None = None  # starts the programs once boot is done
        self.current: KThread | None = None  # the kernel thread running now
        self._passes_seen = 0  # activity.iterations when a balloon thread last waited
        self._module_params = {"xen.balloon_boot_timeout": spec.balloon.boot_timeout}
        self._drives: list[simpy.Process] = []  # the workloads' processes
        self._restarts_due = 0  # killed tasks that will start again
        self.kswapd = Kswapd(
            env,
            self.mm,
            self.tasks,
            kconf.kswapd_rate,
            on_step=lambda: self.crashed or observer.row(self, "kswapd", True),
            before_step=self.touch,
        )
        self.hotplug = MemoryHotplug(
            boot_end_pfn=self.max_pfn,
            section_pages=section,
            auto_online=hotplug_conf.auto_online,
            split_by_zone=self.arch.split_by_zone,
            max_added=hotplug_conf.max_added,
            pluggable_end_pfn=1 << (self.arch.physmem_bits - PAGE_SHIFT),
            on_event=self._hotplug_event,
            alloc_memmap=self._alloc_memmap,
            on_online=self._memory_onlined,
        )
        self._sysctl: dict[str, Callable[[str], int]] = {}

        driver_class: type[BalloonDriver] = DRIVERS.load(spec.balloon.driver)
        self.driver = driver_class(self, memory_hotplug=hotplug_conf.enabled, bulk_iterations=bulk_iterations)
        self.frontend = XenBalloonFrontend(self, self.driver)

    def boot(self) -> None:
        """subsys_initcall(balloon_init): the driver starts and xen_balloon_init() registers its
        sysfs files and xenstore watch.  The scenario's tunables are written as a boot script would,
        before the watch's first event."""
        self.driver.balloon_init()
        tunables = self.spec.balloon
        self.frontend.sysfs_store("max_retry_count", str(tunables.max_retry_count))
        self.frontend.sysfs_store("max_schedule_delay", str(tunables.max_schedule_delay))
        if tunables.hotplug_unpopulated:
            self.sysctl_write("xen/balloon/hotplug_unpopulated", str(tunables.hotplug_unpopulated))
        self.frontend.xen_balloon_init()
        for initcall in self._late_initcalls:  # run in the init task, which may sleep
            self._init_tasks.append(self._new_thread(partial(self._boot_task, initcall), "init"))
        self._threads += self._init_tasks

    def row_sources(self) -> list:
        """The components whose named columns make this guest's timeline rows, in column order."""
        return [self.driver, self.host, self.domain, self.mm, self.tasks, self.hotplug]

    @staticmethod
    def column_sources(spec: DomainSpec) -> list[type]:
        """The classes of ``row_sources()``: the columns of a guest that is not built yet."""
        return [DRIVERS.load(spec.balloon.driver), Host, Domain, GuestMemory, Tasks, MemoryHotplug]

    # -- the page allocator and MemAvailable ------------------------------------------

    def alloc_pages(self, count: int, gfp: Gfp) -> tuple[int, int]:
        got = self.mm.alloc_pages(count, gfp)
        if self.untouched:
            taken = self.untouched - min(self.untouched, self.mm.free_pages)
            self.untouched -= taken
            self._untouched_out += taken
        return got

    def free_reserved_pages(self, low: int, high: int) -> None:
        self.mm.free_reserved_pages(low, high)

    def adjust_managed_page_count(self, delta: int) -> None:
        self.mm.adjust_managed_page_count(delta)

    def si_mem_available(self) -> int:
        return self.mm.si_mem_available()

    @property
    def totalreserve_pages(self) -> int:
        return self.mm.totalreserve_pages

    def get_num_physpages(self) -> int:
        return self.ram_pages

    def split_by_zone(self, start_pfn: int, end_pfn: int) -> tuple[int, int]:
        return self.arch.split_by_zone(start_pfn, end_pfn)

    def alloc_room(self, gfp: Gfp) -> int:
        room = self.mm.alloc_room(gfp)
        if self.untouched and self.xen_scrub_pages and self.domain.pod.cache < self.frame_list_size:
            # zeroing a batch of untouched pages may run the PoD cache dry and crash the domain:
            # turns done at once (the driver's only use of this) stop at the touched free pages
            room = min(room, self.mm.free_pages - self.untouched)
        return room

    def mem_available_falls_with_free(self) -> bool:
        return self.mm.mem_available_falls_with_free()

    def _allocated(self, gfp: Gfp, wanted: int, got: int, reclaimed: int) -> None:
        """After the driver's alloc_page() calls: count the work, note a failure."""
        self.activity.allocated += got
        self.activity.reclaimed += reclaimed
        if got < wanted:
            self.trace("alloc_failed", wanted, got, gfp.name)
        self.kswapd.wakeup_kswapd()

    # -- memory hotplug ------------------------------------------------------------------

    def allocate_resource(self, pages: int) -> Resource | None:
        return self.hotplug.allocate_resource(pages)

    def release_resource(self, resource: Resource) -> None:
        self.hotplug.release_resource(resource)

    def add_memory_resource(self, resource: Resource) -> int:
        return self.hotplug.add_memory_resource(resource)

    def set_online_page_callback(self, callback: Callable[[int, int], None]) -> None:
        self.hotplug.set_online_page_callback(callback)

    def register_memory_notifier(self, notifier: Callable[[int], None]) -> None:
        self.hotplug.register_memory_notifier(notifier)

    def _hotplug_event(self, kind: str, pages: int, pfn: int) -> None:
        if kind == "hotplug_add":
            self.activity.hotplugged += pages
        self.trace(kind, pages, pfn)

    def _alloc_memmap(self, pages: int) -> bool:
        """sparse_add_section(): the struct pages of hot-added memory come from the guest's memory
        already online (the balloon's add_memory_resource() does not ask for MHP_MEMMAP_ON_MEMORY),
        as unreclaimable kernel memory; without it the add fails (-ENOMEM)."""
        memmap = -(-pages * self.struct_page_bytes // PAGE_SIZE)
        if not memmap:
            return True
        if not self.mm.alloc_kernel(memmap):
            self.trace("memmap_failed", memmap, pages, f"no {format_pages(memmap)} for the memmap of {pages} pages")
            return False
        self.trace("memmap", memmap, pages, f"the memmap of {pages} hot-added pages takes {format_pages(memmap)}")
        return True

    def _memory_onlined(self, low: int, high: int) -> None:
        """online_pages() calls init_per_zone_wmark_min(): the reserves from the zones as they are now
        (the onlined pages are present but, in the balloon, not yet managed)."""
        self._onlined.add(low, high)
        kconf = self.spec.kernel
        managed_change = self.mm.managed_pages - self.ram_pages
        zones = zones_now(self.boot_zones, self._onlined.low, self._onlined.high, managed_change)
        before = self.mm.totalreserve_pages
        self.reserves = init_per_zone_wmark_min(
            zones,
            self.reserves,
            user_min_free_kbytes=kconf.min_free_kbytes,
            watermark_scale_factor=kconf.watermark_scale_factor,
            khugepaged=kconf.thp,
        )
        self.mm.set_reserves(**self._reserves_in_force(self.reserves))
        after = self.mm.totalreserve_pages
        fixed = " (fixed)" if "totalreserve_pages" in self._fixed else ""
        message = f"min_free_kbytes {self.reserves.min_free_kbytes}, totalreserve_pages {before} -> {after}{fixed}"
        self.trace("reserves_recomputed", after, self.reserves.min_free_kbytes, message)

    def _reserves_in_force(self, reserves: Reserves) -> dict[str, int]:
        """What the page allocator works with: the reserves, but where the scenario fixed a value."""
        fixed = self._fixed
        return {
            "totalreserve_pages": fixed.get("totalreserve_pages", reserves.totalreserve_pages),
            "wmark_low_total": reserves.wmark_low_total,
            "floor_balloon": fixed.get("floor_balloon", reserves.alloc_floor(highmem_ok=True)),
            "floor_user": fixed.get("floor_user", reserves.alloc_floor(highmem_ok=False)),
            "low_floor": reserves.alloc_floor(highmem_ok=True, mark="low"),
            "high_floor": reserves.alloc_floor(highmem_ok=True, mark="high"),
        }

    # -- hypercalls -------------------------------------------------------------------------

    def xenmem_reservation_increase(self, count: int, calls: int = 1) -> int:
        self.activity.hypercalls += calls
        granted = self.host.populate_physmap(self.domain, count)
        if granted < count:
            self.trace("populate_partial" if granted else "populate_refused", count, granted)
        self.activity.pages_in += granted
        return granted

    def xenmem_reservation_decrease(self, count: int, calls: int = 1) -> int:
        self.activity.hypercalls += calls
        faulted, self._untouched_scrubbed = self._untouched_scrubbed, 0
        if faulted:  # zeroed untouched pages: faulted in from the PoD cache batch by batch, then released
            if not self.host.pod_release_scrubbed(self.domain, count - faulted, faulted, self.frame_list_size):
                self._crash(faulted)
            released = count
        else:
            released = self.host.decrease_reservation(self.domain, count, pod_entries=self._untouched_out)
        self._untouched_out = 0
        self.activity.pages_out += released
        return released

    def populate_headroom(self) -> int:
        return self.host.populate_headroom(self.domain)

    def xenmem_reservation_scrub_pages(self, count: int) -> None:
        """Zero each page before Xen gets it back (when xen_scrub_pages).

        Zeroing an untouched page of a PoD guest first faults it in from the PoD cache (the boot
        slow-down of commit 197ecb3802c0's message; Xen's side is counted at the hypercall);
        unscrubbed, it goes back as a PoD entry.
        """
        if self.xen_scrub_pages:
            self.activity.scrubbed += count
            self.activity.pod_faults += self._untouched_out
            self._untouched_scrubbed, self._untouched_out = self._untouched_out, 0

    def xenmem_reservation_va_mapping_update(self, count: int) -> None:
        """PV: set the p2m entry and kernel mapping of each page (auto-translated guests: nothing)."""
        if self.xen_pv_domain:
            self.activity.pv_updates += count

    def xenmem_reservation_va_mapping_reset(self, count: int) -> None:
        """PV: clear the kernel mapping and p2m entry of each page (auto-translated guests: nothing)."""
        if self.xen_pv_domain:
            self.activity.pv_updates += count

    # -- scheduling -------------------------------------------------------------------------

    def delayed_work(self, func: Callable[[], Process], name: str) -> DelayedWork:
        def until_crash() -> Process:
            return self._until_crash(func())

        # only a guest with untouched PoD pages can crash, and only a stopped one stops; either ends the
        # work function where it is
        run = until_crash if self.untouched or self.stoppable else func
        work = DelayedWork(
            self.env, self.clock, run, f"{self.name}/{name}", lambda: self._work_finished(work), self.work_priority
        )
        self._works.append(work)
        return work

    def schedule_delayed_work(self, work: DelayedWork, delay: int) -> bool:
        return False if self.crashed else work.schedule(delay)

    def mutex(self, name: str) -> Mutex:
        return Mutex(name)

    def wait_queue(self) -> WaitQueue:
        return WaitQueue(self.env)

    def wait_event_interruptible(
        self, wq: WaitQueue, condition: Callable[[], bool], signal_after: int | None
    ) -> Process:
        return wait_event_interruptible(self.env, wq, condition, signal_after)

    def cond_resched(self) -> Iterable[simpy.Event]:
        """Give up the CPU between batches: the events to wait for, none when work is free.

        The time of the turn just done passes here (see ``costs``); a long
        pass also gets a timeline row now and then, but not at the turn that
        reaches the target: the target is reached when that turn's time has
        passed, which the next row shows, whenever rows happen to be due.
        """
        self.activity.iterations += 1
        if self.meter.timeless:
            return ()
        self._use_pages_in()  # memory came in: waiting demand may use it
        stats = self.driver.balloon_stats
        reached = stats.current_pages == stats.target_pages
        if not reached or self._reached_at_last_turn:
            self.observer.row(self, "progress", True)
        self._reached_at_last_turn = reached
        ns = self.meter.charge()
        return (Timer(self.env, ns, self.work_priority),) if ns else ()

    def cond_resched_turns(self, turns: int) -> None:
        """The cond_resched() calls of ``turns`` loop turns done at once."""
        self.activity.iterations += turns

    # -- steady loop turns done at once (balloon.py steady_turns, lazy_turns.py) -------------

    def steady_turns(self, driver: BalloonDriver) -> Iterable[simpy.Event]:
        """The coming steady loop turns of the worker, done at once: at once when they take no time,
        lazily as time reaches them when they do.  The events the worker waits on meanwhile."""
        if self.meter.timeless:
            driver._run_steady_iterations()
            return ()
        return plan_turns(self, driver) or ()

    def planned_turns(self, driver: BalloonDriver) -> tuple[simpy.Event, ...] | None:
        """The coming steady turns (each a pass of a balloon thread) done lazily, when they take time:
        the events to wait for, or None when none was done."""
        return plan_turns(self, driver)

    def may_plan(self) -> bool:
        """Whether the coming steady turns may be done lazily at all: no progress row due now, no PoD
        page to touch, no backend asleep on the balloon's wait queue."""
        if self.untouched or self.driver.balloon_wq.has_sleepers():
            return False
        return self.observer.next_row_due(self) > self.env.now

    def steady_turn(self, driver: BalloonDriver, direction: int) -> int:
        """One steady turn now, with its cond_resched() (no row due: see ``may_plan``); the nanoseconds
        its work costs."""
        before = self.meter.counts()
        driver.do_steady_turns(direction, 1)
        self.activity.iterations += 1
        self._reached_at_last_turn = False
        self._use_pages_in()
        return self.meter.ns_since(before)

    def _use_pages_in(self) -> None:
        """cond_resched()'s look at the pages the balloon populated since the last: demand waiting for
        them takes them now."""
        if self.activity.pages_in > self._pages_in_seen:
            self._pages_in_seen = self.activity.pages_in
            self.use_freed_memory()

    def quiet_turns(self, direction: int, first: int, cost: int) -> int:
        """How many turns of ``cost`` ns from ``first`` no one but the worker would notice one by one:
        no progress row falls due, kswapd stays asleep, and demand waiting for the pages coming in
        takes each batch alike (``filled_turns``)."""
        row_due = self.observer.next_row_due(self)
        turns = -(-(row_due - first) // cost) if row_due > first else 0  # first + j*cost < row_due
        mm, kswapd = self.mm, self.kswapd
        if direction < 0 and not kswapd.running and kswapd.rate > 0:  # each allocation looks at the low floor
            turns = min(turns, max(0, mm.free_pages - mm.low_floor) // self.frame_list_size)
        elif direction > 0 and self.tasks.tasks and self.tasks.unmet_demand():
            turns = min(turns, self._filled_turns())
        return turns

    def _filled_turns(self) -> int:
        """Balloon-in turns after each of which the tasks' settle() does the same: nothing, or grow the
        page cache by the batch.

        Demand that waits without a live task lacking anonymous pages or any in swap is page cache
        (or a killed task's, which settle() passes over).  With the live tasks' cache met, each settle
        does nothing.  Else, when free memory is down at the cache's floor (the last settle filled
        all it could) and the cache wants a batch per turn, each batch is taken whole and free memory
        stays at the floor (kswapd sleeps): one settle after n batches takes n batches, the same."""
        tasks, mm = self.tasks, self.mm
        if any(t.swapped or (t.unmet_anon and not t.killed) for t in tasks.tasks):
            return 0
        want = tasks.cache_demand() - mm.page_cache.total
        if want <= 0:
            return 1 << 62  # no bound of theirs
        if mm.free_pages != max(mm.low_floor, mm.floor[GFP_HIGHUSER_MOVABLE]):
            return 0
        return want // self.frame_list_size

    def turns_done_at_once(self, turns: int) -> None:
        """``turns`` steady turns of a plan applied: their cond_resched() calls, their time paid for as
        planned; a thread's turns are passes, each told at the wait before it (``_thread_waits``)."""
        a = self.activity
        a.iterations += turns
        self.meter.mark_charged()
        self._reached_at_last_turn = False
        self._use_pages_in()
        if self.driver.turns_are_passes:
            a.passes += turns  # each wait told the pass before it: requeued at once, DONE, pages moved
            self._passes_seen = a.iterations - 1  # the last wait came before the last turn
            self._moved_at_last_pass = a.pages_in + a.pages_out + a.hotplugged - self.frame_list_size
            self._passes_spinning = 0

    def touch(self) -> None:
        """Something is about to change this guest: turns planned ahead end at the present instant."""
        if self.plan is not None:
            self.plan.cut()

    def catch_up(self) -> None:
        """Something is about to read this guest: the planned turns due by now are applied."""
        if self.plan is not None:
            self.plan.catch_up()

    # -- kernel threads (kthread.py) ----------------------------------------------------------

    @property
    def jiffies(self) -> int:
        return self.clock.jiffies(self.env.now)

    def kthread_run(self, threadfn: Callable[[], Process], name: str) -> KThread:
        thread = self._new_thread(threadfn, name)
        self._threads.append(thread)
        return thread

    def _new_thread(self, threadfn: Callable[[], Process], name: str) -> KThread:
        return KThread(
            self.env,
            self.clock,
            f"{self.name}/{name}",
            threadfn,
            on_stop=self._thread_stopped,
            on_switch=self._switch,
            priority=self.work_priority,
        )

    def _switch(self, thread: KThread | None) -> None:
        self.current = thread

    def late_initcall_sync(self, initcall: Callable[[], Process]) -> None:
        self._late_initcalls.append(initcall)

    def _boot_task(self, initcall: Callable[[], Process]) -> Process:
        """The init task running a late initcall; a row when it returns after having waited."""
        task = self.current
        yield from initcall()
        if task is not None and task.slept:
            self.observer.row(self, "boot_done")
            if self._after_boot is not None:  # userspace starts now
                self._after_boot()

    def module_param(self, name: str, default: int) -> int:
        """A module parameter: the kernel command line's value (the scenario's), else the default."""
        value = self._module_params.get(name)
        return default if value is None else value

    def wait_event_freezable_timeout(self, wq: WaitQueue, condition: Callable[[], bool], timeout: int) -> Process:
        assert self.current is not None, "wait_event_freezable_timeout outside a kernel thread"
        return wait_event_timeout(self.current, wq, condition, timeout, self._thread_waits)

    def schedule_timeout_interruptible(self, timeout: int) -> Process:
        assert self.current is not None, "schedule_timeout outside a kernel thread"
        return schedule_timeout(self.current, timeout)

    def _thread_waits(self, thread: KThread, sleeping: bool, woken: bool) -> None:
        """The balloon thread is back at its wait: the pass that just ended is told, and recorded
        when the thread sleeps now (a pass that goes on at once only with rows_every_pass: a long
        run of them gets progress rows as a delayed work's long pass does); a thread woken for
        nothing, which sleeps again, gets a ``resleep`` row."""
        if self.activity.iterations != self._passes_seen:
            passes = self.activity.iterations - self._passes_seen  # more than 1 after steady turns at once
            self._passes_seen = self.activity.iterations
            self._pass_finished(thread.name, requeued_at_once=not sleeping, passes=passes)
            if sleeping or self.rows_every_pass:
                self.observer.pass_done(self)
        elif sleeping and woken:
            self.observer.row(self, "resleep")

    def panic(self, message: str) -> None:
        """panic(): never returns."""
        self.trace("panic", message=f"Kernel panic - not syncing: {message}")
        raise KernelPanic(message)

    def _thread_stopped(self, thread: KThread, stop: GuestStopped) -> None:
        """A thread ran into a panic (this kernel stops) or the domain's crash (already told)."""
        if isinstance(stop, KernelPanic):
            self.observer.row(self, "panic")
            self._stop()

    def _stop(self) -> None:
        """The guest is gone: no thread, task or kswapd runs again, and the toolstack destroys the domain
        (xl's default on_crash)."""
        self.shut_down()
        self.observer.guest_crashed(self)

    def shut_down(self) -> None:
        """The guest stops running (a crash, or ``xl shutdown``): no thread, task or kswapd runs again."""
        self.crashed = True
        for thread in self._threads:
            thread.stop()

    def _work_finished(self, work: DelayedWork) -> None:
        """A worker pass ended: memory it populated may meet waiting demand; its outcome is told
        (not for a pass the domain's end cut short: nothing of it is left to tell)."""
        if self.crashed:
            return
        self._pass_finished(work.name, work.pending and work.expiry <= self.jiffies)
        self.observer.pass_done(self)

    def _pass_finished(self, name: str, requeued_at_once: bool, passes: int = 1) -> None:
        """``passes`` worker passes ended.  Memory they populated may meet waiting demand when the
        worker stops (a thread's passes that follow at once are one run, like a delayed work's turns)."""
        self.activity.passes += passes
        if not requeued_at_once:
            self._unless_crashed(self.use_freed_memory)
        outcome = self.driver.pass_outcome()
        if outcome is not None:
            self.trace(*outcome)
        self._check_spinning(name, requeued_at_once)

    def _check_spinning(self, name: str, requeued_at_once: bool) -> None:
        """Not in the kernel: stop a worker that moves no page and requeues itself at once when
        nothing can end its spin.

        Without costs the passes come at one instant, where nothing else can happen; with costs
        each takes a little time, and the spin may end when something else happens (a new target,
        memory freed on the host or in the guest): only when nothing is still to come is it one.
        """
        a = self.activity
        moved = a.pages_in + a.pages_out + a.hotplugged
        if moved != self._moved_at_last_pass or not requeued_at_once:
            self._moved_at_last_pass = moved
            self._passes_spinning = 0
            return
        if self._passes_spinning == 0:
            self._spinning_since = self.env.now
        self._passes_spinning += 1
        if self._passes_spinning < LIVELOCK_RUNS:
            return
        time_passed = self.env.now > self._spinning_since
        if time_passed and self.observer.still_to_come(self):
            self._passes_spinning = 0  # look again after as many passes
            return
        why = "and nothing still to come in the run can change that" if time_passed else "at one instant"
        raise SimulationError(
            f"livelock: {name} ran {LIVELOCK_RUNS} times in a row without moving a page, "
            f"each time requeuing itself at once (max_schedule_delay "
            f"{self.driver.balloon_stats.max_schedule_delay}), {why}; the modelled kernel code spins like "
            "this until something else changes"
        )

    def busy(self, *, worker: bool) -> bool:
        """Whether anything in this guest is still to happen: a workload's next step, a killed task's
        restart, kswapd reclaiming, and (``worker``) its balloon worker pending or running."""
        if self.crashed:
            return False
        if self.kswapd.running or self._restarts_due or any(p.is_alive for p in self._drives):
            return True
        if not worker:
            return False
        # a sleeping thread wakes by itself (hourly, or the boot wait's polls), but then only acts on credit
        stats = self.driver.balloon_stats
        credit = stats.target_pages != stats.current_pages
        return any(w.pending or w.running for w in self._works) or any(
            t.state is not ThreadState.SLEEPING or credit for t in self._threads if t.state is not ThreadState.DONE
        )

    # -- sysctl, xenstore, printk -----------------------------------------------------------

    def register_sysctl(self, path: str, handler: Callable[[str], int]) -> None:
        self._sysctl[path] = handler

    def register_xenbus_watch(self, path: str, callback: Callable[[str], None]) -> None:
        self.xenstore.watch(self.domain.domid, path, callback)

    def xenbus_read(self, path: str) -> str | None:
        return self.xenstore.read(self.domain.domid, path)

    def printk(self, level: str, message: str) -> None:
        self.trace("printk", message=f"[{level}] {message}")

    def trace(self, kind: str, pages: int = -1, value: int = -1, message: str = "") -> None:
        self.observer.event(self, kind, pages, value, message)

    # -- what users, programs and the toolstack do ------------------------------------------

    def program_take(self, pages: int) -> None:
        """A scripted program's allocation (regardless of watermarks); kswapd wakes if it left memory short."""
        self._unless_crashed(lambda: self._take(pages))

    def _take(self, pages: int) -> None:
        taken = self.mm.take(pages)
        if taken < pages:
            self.trace("take_short", pages, taken, f"the guest had only {taken} free pages")
        self._fault_in_untouched()
        self.kswapd.wakeup_kswapd()

    def program_give(self, pages: int) -> None:
        """A scripted program frees the pages it took most recently."""
        given = self.mm.give(pages)
        if given < pages:
            self.trace("give_short", pages, given, f"the workload held only {given} pages")

    def set_totalreserve_pages(self, pages: int) -> None:
        """An override of totalreserve_pages (the oracle's ``totalreserve`` verb), kept from then on."""
        self._fixed["totalreserve_pages"] = pages
        self.mm.totalreserve_pages = pages

    def set_mem_available(self, value: int | str) -> None:
        """Fix si_mem_available() at ``value``, or ``"auto"``: computed again."""
        self.mm.mem_available_fixed = None if value == "auto" else int(value)

    def start_workloads(self, seed: int, domain_index: int, until: int) -> None:
        """One task per workload, its demand applied over time by a process of its own.

        Programs run once userspace starts: after the late initcalls have returned, so a guest
        held in v5.16's boot wait starts them when the wait ends (init/main.c runs the initcalls
        before the init process), and one that panics never does.  Their times count from then.
        """
        start = partial(self._start_workloads, seed, domain_index, until)
        if self._booting():
            self._after_boot = start
        else:
            start()

    def _booting(self) -> bool:
        return any(t.state is not ThreadState.DONE for t in self._init_tasks)

    def _start_workloads(self, seed: int, domain_index: int, until: int) -> None:
        started = self.env.now
        for i, spec in enumerate(self.spec.workloads):
            task = self.tasks.add(spec.name, spec.oom_score_adj)
            points = demand_points(spec, workload_rng(seed, domain_index, i))
            self._drives.append(self.env.process(drive(self.env, points, until, partial(self._demand, task), started)))

    def _demand(self, task: Task, anon: int, cache: int) -> None:
        if not self.crashed:
            self.touch()
            self.tasks.set_demand(task, anon, cache)
            self._settle("workload")

    def _settle(self, cause: str) -> None:
        """The tasks fault in what they demand; kswapd wakes if that left memory short; a row."""
        if not self.crashed:
            try:
                self.tasks.settle()
                self._fault_in_untouched()
            except DomainCrashed:  # it ends there
                pass
        self.kswapd.wakeup_kswapd()
        self.observer.row(self, cause)

    def use_freed_memory(self) -> None:
        """Memory the balloon populated may meet demand that was waiting for it."""
        if self.tasks.tasks and self.tasks.unmet_demand():
            self.tasks.settle()
            self._fault_in_untouched()
            self.kswapd.wakeup_kswapd()

    # -- populate-on-demand and a crash ----------------------------------------------------

    def _fault_in_untouched(self) -> None:
        """Untouched pages that programs or the kernel took are faulted in from the PoD cache."""
        if self.untouched > self.mm.free_pages:
            touched = self.untouched - self.mm.free_pages
            self.untouched -= touched
            self._demand_populate(touched)

    def _demand_populate(self, pages: int) -> None:
        """The guest touches ``pages`` PoD entries; with too small a cache Xen crashes the domain."""
        if not self.host.pod_demand_populate(self.domain, pages):
            self._crash(pages)

    def _crash(self, pages: int) -> None:
        """Out of PoD memory: domain_crash(), then the toolstack destroys the domain; the guest stops here."""
        cache = self.domain.pod.cache
        self.trace(
            "domain_crashed",
            pages,
            cache,
            f"out of populate-on-demand memory: {pages} untouched pages touched, {cache} in the PoD cache; "
            "Xen crashed the domain",
        )
        self._stop()
        raise DomainCrashed

    def _unless_crashed(self, action: Callable[[], object]) -> None:
        """Run ``action`` unless the domain has crashed; a crash during it ends it there."""
        if self.crashed:
            return
        try:
            action()
        except DomainCrashed:
            pass

    def _until_crash(self, process: Process) -> Process:
        """A kernel process that ends where the domain crashes, in it or while it waits for the time
        its work takes: its vCPUs never run again."""
        if self.crashed:
            return None
        try:
            event = next(process)
            while True:
                value = yield event
                if self.crashed:
                    process.close()
                    return None
                event = process.send(value)
        except StopIteration as done:
            return done.value
        except DomainCrashed:
            return None

    def _before_oom_kill(self, victim: Task) -> None:
        """The OOM killer was called: what it saw, before the kill frees the victim's memory.

        Swap fills and the kill frees it within one step, so no timeline row
        shows that swap: this event does (``pages``: swap in use, ``value``: free pages).
        """
        mm = self.mm
        swap = format_pages(mm.swap_used)
        message = f"out of memory: {swap} in swap, {mm.free_pages} pages free; killing {victim.name}"
        self.trace("oom_invoked", mm.swap_used, mm.free_pages, message)

    def _oom_killed(self, victim: Task, freed: int) -> None:
        message = f"killed {victim.name}, freeing {format_pages(freed)}"
        self.trace("oom_kill", freed, self.tasks.oom_kills, message)
        restart = self._task_specs[victim.name].restart_after
        if restart is not None:
            self._restarts_due += 1
            Timer(self.env, restart, EVENT).callbacks.append(lambda _: self._restart(victim))

    def _restart(self, task: Task) -> None:
        self._restarts_due -= 1
        if self.crashed:
            return
        self.touch()
        self.tasks.revive(task)
        self.trace("restart", task.demand_anon, -1, f"{task.name} started again")
        self._settle("restart")

    def _out_of_memory(self, task: Task, short: int) -> None:
        self.trace("out_of_memory", short, -1, f"{task.name} is short of memory and no task can be killed")

    def sysctl_write(self, path: str, text: str) -> int:
        handler = self._sysctl.get(path)
        if handler is None:
            self.trace("sysctl_missing", message=f"/proc/sys/{path} does not exist in this kernel build")
            return -2  # -ENOENT
        rc = handler(text)
        if rc:
            self.trace("sysctl_rejected", message=f"/proc/sys/{path}: {text!r} rejected ({rc})")
        return rc

    def sysfs_write(self, attribute: str, text: str) -> int:
        rc = self.frontend.sysfs_store(attribute, text)
        if rc:
            self.trace("sysfs_rejected", message=f"{attribute}: {text!r} rejected ({rc})")
        return rc

    def alloc_xenballooned_pages(
        self, pages: int, signal_after: int | None, on_sleep: Callable[[], None], on_return: Callable[[int], None]
    ) -> None:
        """A backend's call; ``on_return(rc)`` runs when it returns, ``on_sleep()`` if it sleeps first."""

        def call() -> Process:
            rc = yield from self.driver.alloc_xenballooned_pages(pages, signal_after)
            self.meter.charge()  # a backend's call takes no simulated time: its work is not the worker's
            self.trace("alloc_ballooned", pages, rc)
            return rc

        run_now(self.env, self._until_crash(call()), on_return, on_wait=on_sleep)

    def free_xenballooned_pages(self, pages: int) -> None:
        held = self.driver.backend_pages
        if pages > held:
            self.trace("free_short", pages, held, f"only {held} pages are held by backends")
            pages = held
        self.driver.free_xenballooned_pages(pages)

    def online_hotplugged_memory(self) -> None:
        if not self.hotplug.online_waiting():
            self.trace("online_nothing", message="no hot-added memory is waiting to be onlined")

    # -- what the summary and the checks read -------------------------------------------

    def counters(self) -> dict[str, int]:
        """For the summary: the balloon's activity, kswapd's work, the low watermark, and the domain's
        static-max (xl's maxmem, or memory without one: the most it may hold, for the overcommit ratio)."""
        spec = self.spec
        static_max = spec.memory if spec.static_max_pages is None else spec.static_max_pages
        return {
            **vars(self.activity),
            "kswapd_reclaimed": self.kswapd.reclaimed,
            "wmark_low_pages": self.mm.low_floor,
            "static_max_pages": static_max,
        }

    def used_pages(self) -> int:
        return self.mm.used_pages() + self.tasks.anon_pages

    def present_pages(self) -> int:
        return self.hotplug.present_pages

    def conservation_problem(self) -> str | None:
        """None when every page of the guest is accounted for once; else what is wrong.

        A PoD guest's untouched pages are Xen's PoD entries, and Xen holds its PoD cache and the
        video RAM besides the pages the guest touched.  A crashed guest has no pages left to count.
        """
        if self.crashed:
            return None
        # this runs at every row: each count is read once, the tasks in one pass
        stats = self.driver.balloon_stats
        mm = self.mm
        domain = self.domain
        lent = self.driver.backend_pages
        offline = self.hotplug.offline_pages
        free_low, free_high = mm.free_low, mm.free_high
        balloon_low, balloon_high = stats.balloon_low, stats.balloon_high
        cache, slab, programs, swap_used = mm.page_cache, mm.slab, mm.programs.pages, mm.swap_used
        anon = swapped = 0
        anon_ok = True
        for t in self.tasks.tasks:
            held = t.anon.low + t.anon.high
            anon += held
            swapped += t.swapped
            if held < 0:
                anon_ok = False
        page_cache, reclaimable_slab = cache.low + cache.high, slab.low + slab.high
        populated = free_low + free_high + mm.used_pages() + anon  # used_pages(), with the anon of the pass above
        unpopulated_extra = self.max_pfn - self.ram_pages if self.config_xen_unpopulated_alloc else 0
        if (
            populated + balloon_low + balloon_high + lent + offline + unpopulated_extra == self.present_pages()
            and populated - self.untouched + domain.pod.cache + self.spec.videoram == domain.tot_pages
            and self.untouched == domain.pod.entries
            and swapped == swap_used <= mm.swap_total
            and anon_ok
            and free_low >= 0
            and free_high >= 0
            and balloon_low >= 0
            and balloon_high >= 0
            and lent >= 0
            and offline >= 0
            and programs >= 0
            and page_cache >= 0
            and reclaimable_slab >= 0
            and swap_used >= 0
        ):
            return None
        backed = populated - self.untouched + domain.pod.cache + self.spec.videoram
        ballooned = balloon_low + balloon_high
        accounted = populated + ballooned + lent + offline + unpopulated_extra
        tasks = self.tasks.tasks
        counts = {
            "free_low": mm.free_low,
            "free_high": mm.free_high,
            "balloon_low": stats.balloon_low,
            "balloon_high": stats.balloon_high,
            "lent": lent,
            "offline": offline,
            "programs": mm.programs.pages,
            "page_cache": mm.page_cache.total,
            "slab": mm.slab.total,
            "swap_used": mm.swap_used,
            **{f"task {t.name} anon": t.anon.total for t in tasks},
        }
        negative = [f"{k}={v}" for k, v in counts.items() if v < 0]
        if negative:
            return f"negative page counts: {', '.join(negative)}"
        if backed != self.domain.tot_pages or self.untouched != self.domain.pod.entries:
            return (
                f"the guest has {populated} pages ({self.untouched} untouched) but Xen counts tot_pages "
                f"{self.domain.tot_pages} ({self.domain.pod.cache} PoD cache, {self.domain.pod.entries} PoD "
                f"entries, {self.spec.videoram} video RAM)"
            )
        if accounted != self.present_pages():
            return (
                f"guest pages not conserved: free {mm.free_pages} + used {self.used_pages()} + ballooned "
                f"{ballooned} + lent {lent} + offline {offline} + unpopulated extra {unpopulated_extra} = "
                f"{accounted}, but the guest has {self.present_pages()} pages"
            )
        return f"swap: tasks hold {swapped} entries, {mm.swap_used} in use of {mm.swap_total}"
