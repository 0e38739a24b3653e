"""Build the simulated world from a scenario and run it.

The world is one SimPy environment holding the Xen host, xenstore and the
toolstack, and one ``GuestKernel`` per domain.  A script process applies the
scenario's events in time order; each guest's balloon worker runs on its own
delayed work.  After every event and every worker pass a timeline row is
recorded and conservation is checked.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import simpy
from tqdm import tqdm

from balloonsim import __version__
from balloonsim.errors import SimulationError
from balloonsim.kernel.guest import GuestKernel
from balloonsim.results.recorder import Recorder
from balloonsim.results.result import Result, build_result
from balloonsim.scenario.model import Event, Scenario
from balloonsim.sim import END, Process, Timer
from balloonsim.units import format_ns
from balloonsim.xen.hypervisor import Host
from balloonsim.xen.toolstack import STATIC_MAX, Toolstack
from balloonsim.xen.xenstore import XenStore

#: progress: None shows a bar on a terminal for runs over this many events
PROGRESS_MIN_EVENTS = 20_000


def host_size(scenario: Scenario) -> tuple[int, int]:
    """The host's (total, free) pages at t=0, from whichever the scenario gives."""
    booted = sum(d.memory for d in scenario.domains)
    host = scenario.host
    if host.total is not None:
        free = host.free if host.free is not None else host.total - booted
        return host.total, free
    assert host.free is not None
    # only free given: leave room for every host_free event (memory of "other" consumers)
    released = sum(e.host_free for e in scenario.events if e.host_free is not None)
    return host.free + booted + released, host.free


class Simulation:
    def __init__(self, scenario: Scenario, seed: int | None = None, *, bulk_iterations: bool = True):
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.env = simpy.Environment()
        total, free = host_size(scenario)
        self.host = Host(total, free)
        self.xenstore = XenStore()
        self.toolstack = Toolstack(self.host, self.xenstore)
        self.recorder = Recorder([d.name for d in scenario.domains])
        self.guests: list[GuestKernel] = []
        self.index: dict[str, int] = {}
        self.step = 0
        self._cause_work = self.recorder.causes("work")

        for i, spec in enumerate(scenario.domains):
            dom = self.host.create_domain(spec.name, spec.memory, spec.max_pages_at_boot)
            static_max = spec.static_max_pages
            if static_max is not None:
                self.xenstore.write(dom.domid, STATIC_MAX, str(static_max * 4))
            if spec.initial_target_kib is not None:
                self.toolstack.write_target(dom, spec.initial_target_kib)
            guest = GuestKernel(
                self.env,
                spec,
                host=self.host,
                domain=dom,
                xenstore=self.xenstore,
                on_work_done=self._work_done,
                on_trace=self._tracer(i),
                bulk_iterations=bulk_iterations,
            )
            self.guests.append(guest)
            self.index[spec.name] = i
        problem = self.host.conservation_problem(full=True)
        if problem:
            raise SimulationError(f"at boot: {problem}")
        for i, guest in enumerate(self.guests):
            guest.boot()
            self._record(i, "init")

    def _tracer(self, index: int) -> Callable[[str, int, int, str], None]:
        def trace(kind: str, pages: int, value: int, message: str) -> None:
            self.recorder.event(self.env.now, index, kind, pages, value, message)

        return trace

    # -- running -------------------------------------------------------------------------

    def run(self, progress: bool | None = None) -> Result:
        started = time.perf_counter()
        self.env.process(self._script())
        end = Timer(self.env, self.scenario.duration, END)
        show = progress if progress is not None else len(self.scenario.events) >= PROGRESS_MIN_EVENTS
        with tqdm(
            total=self.scenario.duration / 1e9, unit="sim s", disable=not show or None, leave=False, desc=self.scenario.name
        ) as bar:
            self._run_until(end, bar)
        for i in range(len(self.guests)):
            self._record(i, "end")
        problem = self.host.conservation_problem(full=True)
        if problem:
            raise SimulationError(f"at the end of the run: {problem}")
        wall = time.perf_counter() - started
        return build_result(
            self.recorder,
            [g.hz for g in self.guests],
            {g.name: vars(g.driver.counters) for g in self.guests},
            self.metadata(wall),
        )

    def _run_until(self, end: simpy.Event, bar: Any) -> None:
        """env.run(until=end), in slices so that a progress bar can follow simulated time."""
        if bar.disable:
            self.env.run(until=end)
            return
        slices = 200
        for k in range(1, slices + 1):
            stop = Timer(self.env, max(0, self.scenario.duration * k // slices - self.env.now), END)
            self.env.run(until=stop)
            bar.update(self.scenario.duration / slices / 1e9)
        self.env.run(until=end)

    def metadata(self, wall_s: float) -> dict[str, Any]:
        return {
            "scenario": self.scenario.name,
            "scenario_sha256": self.scenario.digest(),
            "seed": self.seed,
            "balloonsim_version": __version__,
            "duration_ns": self.scenario.duration,
            "domains": len(self.guests),
            "timeline_rows": self.recorder.rows,
            "wall_s": round(wall_s, 3),
        }

    # -- the script ----------------------------------------------------------------------

    def _script(self) -> Process:
        for event in self.scenario.events:
            if event.at > self.env.now:
                yield self.env.timeout(event.at - self.env.now)
            self.apply(event)

    def apply(self, event: Event) -> None:
        """Carry out one scripted event and record its rows."""
        cause = event.cause
        if event.domain is None:  # a host event
            self.host.set_free_pages(event.host_free)  # type: ignore[arg-type]
            for i in range(len(self.guests)):
                self._record(i, cause)
            return
        i = self.index[event.domain]
        guest = self.guests[i]
        action = event.action
        value = event.value
        if action == "target":
            self.toolstack.write_target(guest.domain, value)
        elif action == "mem_set":
            error = self.toolstack.set_memory_target(guest.domain, value)
            if error:
                guest.trace("mem_set_failed", message=error)
        elif action == "max_pages":
            self.host.set_max_pages(guest.domain, value)
        elif action == "take":
            taken = guest.workload.take(value)
            if taken < value:
                guest.trace("take_short", value, taken, f"the guest had only {taken} free pages")
        elif action == "give":
            given = guest.workload.give(value)
            if given < value:
                guest.trace("give_short", value, given, f"the workload held only {given} pages")
        elif action == "alloc_ballooned":
            guest.alloc_xenballooned_pages(
                value.pages,
                value.signal_after,
                on_sleep=lambda: self._record(i, "alloc_ballooned_sleep"),
                on_return=lambda rc: self._record(i, cause),
            )
            return  # its row is recorded when the call returns
        elif action == "free_ballooned":
            guest.free_xenballooned_pages(value)
        elif action == "online":
            guest.online_hotplugged_memory()
        elif action == "hotplug_unpopulated":
            guest.sysctl_write("xen/balloon/hotplug_unpopulated", str(value))
        elif action == "sysfs":
            guest.sysfs_write(value.attribute, value.text)
        elif action == "totalreserve":
            guest.mm.totalreserve_pages = value
        elif action == "mem_available":
            guest.mm.mem_available_fixed = None if value == "auto" else value
        else:  # pragma: no cover - the schema admits no other action
            raise AssertionError(action)
        self._record(i, cause)

    # -- rows and checks -----------------------------------------------------------------

    def _work_done(self, guest: GuestKernel) -> None:
        self._record(self.index[guest.name], "work")

    def _record(self, index: int, cause: str) -> None:
        self.step += 1
        guest = self.guests[index]
        code = self._cause_work if cause == "work" else self.recorder.causes(cause)
        self.recorder.row(self.env.now, index, code, guest, self.host)
        problem = guest.conservation_problem() or self.host.conservation_problem()
        if problem:
            raise SimulationError(
                f"step {self.step} (t={format_ns(self.env.now)}, domain {guest.name}, after {cause}): {problem}"
            )


def run(scenario: Scenario, seed: int | None = None, *, progress: bool | None = None) -> Result:
    """Run a scenario and return its Result (DataFrames).  ``seed`` overrides the scenario's."""
    return Simulation(scenario, seed).run(progress=progress)
