"""Build the simulated world from a scenario and run it.

The world is one SimPy environment holding the Xen host, xenstore and the
toolstack, one ``GuestKernel`` per domain and, if the scenario names one, a
host memory manager.  The engine only builds that world, applies the
scenario's events at their times, and records: it is every guest's
``KernelObserver``, turning what they report into timeline rows and events,
and it checks conservation at every row.  It never changes the model.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import simpy

from balloonsim import __version__
from balloonsim.errors import SimulationError
from balloonsim.kernel.guest import GuestKernel
from balloonsim.managers.base import MemSet, SetMaxPages, SetTarget
from balloonsim.managers.process import HostIO, apply
from balloonsim.progress import RunProgress
from balloonsim.registry import MANAGERS, NO_MANAGER
from balloonsim.results.recorder import ROW_GROUP, Recorder
from balloonsim.results.result import Result, build_result
from balloonsim.results.settings import run_settings
from balloonsim.results.spool import identity_of
from balloonsim.scenario import load_scenario
from balloonsim.scenario.model import Event, ManagerParams, Scenario
from balloonsim.sim import END, EVENT, Environment, Process, Timer, work_priority
from balloonsim.units import format_ns, format_pages
from balloonsim.xen.hypervisor import Host
from balloonsim.xen.toolstack import Toolstack
from balloonsim.xen.xenstore import XenStore


class ProgressSink(Protocol):
    def simulated(self, now_ns: int, end_ns: int) -> None: ...


def host_size(scenario: Scenario) -> tuple[int, int]:
    """The host's (total, free) pages at t=0, from whichever the scenario gives."""
    booted = sum(d.memory for d in scenario.domains if d.start is None)
    host = scenario.host
    if host.total is not None:
        free = host.free if host.free is not None else host.total - booted
        return host.total, free
    assert host.free is not None
    # only free given: leave room for every host_free event (memory of "other" consumers)
    released = sum(e.host_free for e in scenario.events if e.host_free is not None)
    return host.free + booted + released, host.free


class Simulation:
    def __init__(
        self,
        scenario: Scenario | str | Path,
        seed: int | None = None,
        *,
        bulk_iterations: bool = True,
        spool: Path | None = None,
        row_group: int = ROW_GROUP,
    ):
        """``spool``: the folder the tables are streamed to (default: a temporary one the Result owns);
        ``row_group``: rows per Parquet row group (the most the recorder holds of each table)."""
        if not isinstance(scenario, Scenario):
            scenario = load_scenario(scenario)
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.env = Environment()
        total, free = host_size(scenario)
        self.host = Host(total, free)
        self.xenstore = XenStore()
        self.toolstack = Toolstack(self.host, self.xenstore)
        self.guests: list[GuestKernel] = []  # built so far, in the order they were built
        self._slots: list[GuestKernel | None] = [None] * len(scenario.domains)  # by scenario index
        self._index: dict[GuestKernel, int] = {}
        self._names = {d.name: i for i, d in enumerate(scenario.domains)}
        self.step = 0
        self._bulk_iterations = bulk_iterations

        for i, spec in enumerate(scenario.domains):
            if spec.start is None:
                self._build(i)
        sources = [
            g.row_sources() if g else GuestKernel.column_sources(d)  # a domain started later: its columns
            for g, d in zip(self._slots, scenario.domains, strict=True)
        ]
        self._digest = scenario.digest()
        self.recorder = Recorder(
            [d.name for d in scenario.domains],
            sources,
            self.host,
            hz=[d.kernel.hz for d in scenario.domains],
            spool=spool,
            identity=identity_of(self._identity()),
            row_group=row_group,
        )
        self._cause_work = self.recorder.causes("work")
        self._cause_sleep = self.recorder.causes("alloc_ballooned_sleep")
        self._cause_manager = self.recorder.causes("manager")
        self._last_row_ns = [0] * len(scenario.domains)

        problem = self.host.conservation_problem(full=True)
        if problem:
            raise SimulationError(f"at boot: {problem}")
        for guest in self.guests:
            guest.boot()
            self._record(self._index[guest], self.recorder.causes("init"))
        for guest in self.guests:
            guest.start_workloads(self.seed, self._index[guest], scenario.duration)
        self.io = HostIO(
            self.env, self.toolstack, self._running, self._running_guest, self._manager_acted, self._manager_reported
        )
        params = scenario.host.manager or ManagerParams(kind=NO_MANAGER)
        self.manager = MANAGERS.load(params.kind)(params)
        self._manager_runs = params.kind != NO_MANAGER
        self.env.process(self.manager.daemon(self.io))
        self._starts_due = sum(spec.start is not None for spec in scenario.domains)
        for i, spec in enumerate(scenario.domains):
            if spec.start is not None:
                Timer(self.env, spec.start, EVENT).callbacks.append(lambda _, i=i: self._start(i))

    def _build(self, index: int) -> GuestKernel:
        """libxl's domain build: the domain gets its memory from Xen's free pool, its kernel is set up."""
        spec = self.scenario.domains[index]
        dom = self.toolstack.create_domain(
            spec.name,
            memory_pages=spec.memory,
            max_pages=spec.max_pages_at_boot,
            static_max_pages=spec.static_max_pages,
            kind=spec.toolstack,
            initial_target_kib=spec.initial_target_kib,
            videoram_pages=spec.videoram,
            pod_entries=spec.ram_pages if spec.pod_enabled else 0,
            pv=spec.type == "pv",
            from_free=spec.start is not None,
        )
        guest = GuestKernel(
            self.env,
            spec,
            host=self.host,
            domain=dom,
            xenstore=self.xenstore,
            observer=self,
            bulk_iterations=self._bulk_iterations,
            rows_every_pass=self.scenario.progress_every == 0,
            stoppable=any(e.stop and e.domain == spec.name for e in self.scenario.events),
            work_priority=work_priority(index, len(self.scenario.domains)),
        )
        self.guests.append(guest)
        self._slots[index] = guest
        self._index[guest] = index
        return guest

    def _start(self, index: int) -> None:
        """``xl create`` during the run: the manager makes room (its own rules and timeouts), then the
        domain is built and boots; a start that gets no room, or not within its deadline, fails.
        Events ``start_asked``, then ``started`` or ``start_failed`` (value: the latency, ns)."""
        spec, env = self.scenario.domains[index], self.env
        self._starts_due -= 1
        self.recorder.event(env.now, index, "start_asked", spec.memory, -1, f"xl create {spec.name}")
        attempt = env.process(self._attempt(index, env.now))
        if spec.start_deadline is not None:  # the manager is stopped where it is (its locks released)
            Timer(env, spec.start_deadline, EVENT).callbacks.append(
                lambda _: attempt.is_alive and attempt.interrupt("deadline")
            )

    def _attempt(self, index: int, asked: int) -> Process:
        """The manager's make_room, then at once, in the same step, the build: nothing (the manager's
        own daemon, a guest) can take the room between the two."""
        spec, env = self.scenario.domains[index], self.env
        try:
            room = yield from self.manager.make_room(self.io, spec.memory)
        except simpy.Interrupt:
            room, why = False, f"not running within its deadline ({format_ns(spec.start_deadline or 0)})"
        else:
            free = self.host.free_pages
            why = f"the host has {format_pages(free)} free, the domain needs {format_pages(spec.memory)}"
            room = room and free >= spec.memory
        if not room:
            self.recorder.event(env.now, index, "start_failed", spec.memory, env.now - asked, why)
            return
        guest = self._build(index)
        self.recorder.attach(index, guest.row_sources())
        guest.boot()
        latency = env.now - asked
        self.recorder.event(env.now, index, "started", spec.memory, latency, f"started after {format_ns(latency)}")
        self._record(index, self.recorder.causes("started"))
        guest.start_workloads(self.seed, index, self.scenario.duration)

    # -- running -------------------------------------------------------------------------

    def run(self, progress: bool | None | ProgressSink = None) -> Result:
        """Run to the end and build the Result.

        ``progress``: None shows a bar on a terminal, True/False forces it on/off; an object with
        ``simulated(now_ns, end_ns)`` is told as simulated time passes instead.
        """
        try:
            return self._run(progress)
        except BaseException:
            self.recorder.abort()  # nothing half-written is left in a temporary folder
            raise

    def _run(self, progress: bool | None | ProgressSink) -> Result:
        started = time.perf_counter()
        self._start_script()
        end = Timer(self.env, self.scenario.duration, END)
        if progress is None or isinstance(progress, bool):
            with RunProgress(self.scenario.name, progress) as bar:
                self._run_until(end, bar.simulated if bar.shown else None)
        else:
            self._run_until(end, progress.simulated)
        for i, guest in enumerate(self._slots):
            if guest is not None:  # a domain whose start failed has no rows
                self._record(i, self.recorder.causes("end"))
        problem = self.host.conservation_problem(full=True)
        if problem:
            raise SimulationError(f"at the end of the run: {problem}")
        wall = time.perf_counter() - started
        return build_result(
            self.recorder,
            [d.kernel.hz for d in self.scenario.domains],
            {g.name: g.counters() for g in self.guests},
            self.metadata(wall),
        )

    def _run_until(self, end: simpy.Event, simulated: Callable[[int, int], None] | None) -> None:
        """env.run(until=end); in slices when ``simulated(now_ns, end_ns)`` is to be told after each."""
        if simulated is None:
            self.env.run(until=end)
            return
        duration = self.scenario.duration
        slices = 200
        for k in range(1, slices + 1):
            stop = Timer(self.env, max(0, duration * k // slices - self.env.now), END)
            self.env.run(until=stop)
            simulated(self.env.now, duration)
        self.env.run(until=end)
        simulated(self.env.now, duration)

    def _identity(self) -> dict[str, Any]:
        """What names the run (every result file carries it)."""
        return {
            "scenario": self.scenario.name,
            "scenario_sha256": self._digest,
            "seed": self.seed,
            "balloonsim_version": __version__,
        }

    def metadata(self, wall_s: float) -> dict[str, Any]:
        return {
            **self._identity(),
            "duration_ns": self.scenario.duration,
            "host_needed_pages": self.scenario.host.needed,
            "domains": len(self.scenario.domains),
            "domains_run": len(self.guests),  # fewer when a start failed
            "timeline_rows": self.recorder.rows,
            "wall_s": round(wall_s, 3),
            "settings": run_settings(self.scenario),
        }

    # -- the script ----------------------------------------------------------------------

    def _start_script(self) -> None:
        """Apply the scenario's events in order, each at its time (one timer per instant).

        Once a domain is destroyed only the toolstack's actions still go to it (and fail there)."""
        self._toolstack_handlers = {self._on_target, self._on_mem_set, self._on_max_pages}  # fail on a gone domain
        self._plan = [self._compile(e, self._names) for e in self.scenario.events]
        self._next = 0
        self._apply_due()

    def _apply_due(self, _event: Any = None) -> None:
        """Apply every event due now, then wait for the next one."""
        plan, env = self._plan, self.env
        while self._next < len(plan) and plan[self._next][0] <= env.now:
            _, index, handler, value, cause = plan[self._next]
            self._next += 1
            guest = self._slots[index] if index >= 0 else None
            if index < 0:  # a host event: every running domain gets a row
                handler(value)
                for running in self._running():
                    self._record(self._index[running], cause)
            elif guest is None:
                self.recorder.event(env.now, index, "domain_gone", -1, -1, "the domain is not running: nothing ran")
            elif guest.crashed and handler not in self._toolstack_handlers:
                self.recorder.event(env.now, index, "domain_gone", -1, -1, "the domain was destroyed: nothing ran")
            else:
                guest.touch()
                if handler(guest, value, index, cause):
                    self._record(index, cause)
        if self._next < len(plan):
            Timer(env, plan[self._next][0] - env.now, EVENT).callbacks.append(self._apply_due)

    def _compile(self, event: Event, index: dict[str, int]) -> tuple[int, int, Callable[..., Any], Any, int]:
        domain = -1 if event.domain is None else index[event.domain]
        action, value, cause = event.parts()
        return event.at, domain, getattr(self, f"_on_{action}"), value, self.recorder.causes(cause)

    # Handlers of domain events return True when the event's row is due now.

    def _on_host_free(self, pages: int) -> None:
        self.host.set_free_pages(pages)

    # a scripted target, mem-set or max_pages is the toolstack action a manager would take

    def _on_target(self, guest: GuestKernel, kib: int, *_: Any) -> bool:
        apply(SetTarget(guest.name, kib), self.toolstack, guest)
        return True

    def _on_mem_set(self, guest: GuestKernel, kib: int, *_: Any) -> bool:
        apply(MemSet(guest.name, kib), self.toolstack, guest)
        return True

    def _on_max_pages(self, guest: GuestKernel, pages: int, *_: Any) -> bool:
        apply(SetMaxPages(guest.name, pages), self.toolstack, guest)
        return True

    def _on_stop(self, guest: GuestKernel, _: Any, index: int, cause: int) -> bool:
        """``xl shutdown`` (or destroy): the guest stops and Xen takes its pages back."""
        guest.shut_down()
        freed = self.toolstack.destroy_domain(guest.domain)
        self.recorder.event(self.env.now, index, "domain_stopped", freed, -1, "its memory went back to the host")
        return True

    def _on_take(self, guest: GuestKernel, pages: int, *_: Any) -> bool:
        guest.program_take(pages)
        return True

    def _on_give(self, guest: GuestKernel, pages: int, *_: Any) -> bool:
        guest.program_give(pages)
        return True

    def _on_alloc_ballooned(self, guest: GuestKernel, call: Any, index: int, cause: int) -> bool:
        guest.alloc_xenballooned_pages(
            call.pages,
            call.signal_after,
            on_sleep=lambda: self._record(index, self._cause_sleep),
            on_return=lambda rc: self._record(index, cause),
        )
        return False  # its row comes when the call returns

    def _on_free_ballooned(self, guest: GuestKernel, pages: int, *_: Any) -> bool:
        guest.free_xenballooned_pages(pages)
        return True

    def _on_online(self, guest: GuestKernel, *_: Any) -> bool:
        guest.online_hotplugged_memory()
        return True

    def _on_hotplug_unpopulated(self, guest: GuestKernel, text: str, *_: Any) -> bool:
        guest.sysctl_write("xen/balloon/hotplug_unpopulated", text)
        return True

    def _on_sysfs(self, guest: GuestKernel, write: Any, *_: Any) -> bool:
        guest.sysfs_write(write.attribute, write.text)
        return True

    def _on_totalreserve(self, guest: GuestKernel, pages: int, *_: Any) -> bool:
        guest.set_totalreserve_pages(pages)
        return True

    def _on_mem_available(self, guest: GuestKernel, value: int | str, *_: Any) -> bool:
        guest.set_mem_available(value)
        return True

    # -- the guests' observer: rows, events, passes ----------------------------------------

    def row(self, guest: GuestKernel, cause: str, only_if_due: bool = False) -> None:
        index = self._index[guest]
        if not only_if_due or self.env.now - self._last_row_ns[index] >= self.scenario.progress_every:
            self._record(index, self.recorder.causes(cause))

    def next_row_due(self, guest: GuestKernel) -> int:
        return self._last_row_ns[self._index[guest]] + self.scenario.progress_every

    def event(self, guest: GuestKernel, kind: str, pages: int, value: int, message: str) -> None:
        self.recorder.event(self.env.now, self._index[guest], kind, pages, value, message)

    def _running(self) -> list[GuestKernel]:
        """The domains running now, in scenario order."""
        return [g for g in self._slots if g is not None and not g.crashed]

    def _running_guest(self, name: str) -> GuestKernel | None:
        index = self._names.get(name)
        guest = None if index is None else self._slots[index]
        return guest if guest is not None and not guest.crashed else None

    def _manager_acted(self, name: str) -> None:
        self._record(self._names[name], self._cause_manager)

    def _manager_reported(self, kind: str, domain: str | None, pages: int, value: int, message: str) -> None:
        self.recorder.event(self.env.now, -1 if domain is None else self._names[domain], kind, pages, value, message)

    def pass_done(self, guest: GuestKernel) -> None:
        self._record(self._index[guest], self._cause_work)

    def guest_crashed(self, guest: GuestKernel) -> None:
        index = self._index[guest]
        freed = self.toolstack.destroy_domain(guest.domain)
        self.recorder.event(
            self.env.now, index, "domain_destroyed", freed, -1, "the toolstack destroyed the crashed domain"
        )
        self._record(index, self.recorder.causes("destroyed"))

    def still_to_come(self, guest: GuestKernel) -> bool:
        if self._next < len(self._plan) or self._manager_runs or self._starts_due:
            return True
        return any(g.busy(worker=g is not guest) for g in self.guests)

    def _record(self, index: int, cause: int) -> None:
        """A timeline row for one domain, then the conservation checks of that step."""
        self.step += 1
        guest = self._slots[index]
        guest.catch_up()
        self._last_row_ns[index] = self.env.now
        self.recorder.row(self.env.now, index, cause)
        problem = guest.conservation_problem() or self.host.conservation_problem()
        if problem:
            raise SimulationError(
                f"step {self.step} (t={format_ns(self.env.now)}, domain {guest.name}, after "
                f"{self.recorder.causes.names[cause]}): {problem}"
            )


def run(
    scenario: Scenario | str | Path, seed: int | None = None, *, progress: bool | None | ProgressSink = None
) -> Result:
    """Run a scenario (or the scenario file at a path) and return its Result.  ``seed`` overrides the scenario's."""
    return Simulation(scenario, seed).run(progress=progress)
