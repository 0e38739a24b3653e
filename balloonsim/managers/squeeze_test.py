"""squeezed's own simulator (xen-api ``ocaml/squeezed/test/squeeze_test.ml``), run as upstream runs it.

The harness drives the real control loop (``managers.squeeze``) against
scripted VMs (``kernel.fault_rules``), with upstream's clock and order of
effects, each of which shapes the timelines:

* the clock is a counter: ``gettimeofday`` = i/10; the loop's ``wait`` ignores
  the time it asks for, adds 1 to i, then moves every VM *in the case's list
  order*, each taking its change from the host's free memory before the next
  moves, and writes a timeline row; one iteration is 0.1 simulated seconds;
* the io's host free target is the case's ``required``, its tolerance 0;
  ``execute_action`` raises maxmem before a raised target, else sets the target
  first; ``domain_setmaxmem`` *is* ``execute_action``, so a maxmem change also
  sets the target;
* a VM refuses a target above its maxmem, a maxmem below its target, and a
  rise larger than the host's free memory (upstream's ``failwith``s);
* the phases: (1) free ``required`` (success: free >= required); (2) it must be
  guaranteed free: free - sum over all domains of (target + inaccuracy - actual)
  >= required; (3) 500 KiB are used; (4) give the rest back (success: free <=
  32 KiB; with a non-zero ``required`` the loop's shortcut may return at once);
  (5) guaranteed free again, with 0 required.  Each loop has its own stuckness
  monitor.

Upstream's runner catches every exception and never fails; ``simulate`` returns
the outcome, and the command line and the tests compare it with the expected one.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field, replace

import pandas as pd

from balloonsim.kernel.fault_rules import FaultRule
from balloonsim.managers.squeeze import (
    Domain,
    DomainsRefusedToCooperate,
    Host,
    Settings,
    SqueezeFailure,
    change_host_free_memory,
)
from balloonsim.scenario.squeeze_case import Outcome, SqueezeTestCase

#: the five phases of a case, in order
PHASES = (
    "free the required memory",
    "check it is guaranteed free",
    "use 500 KiB of it",
    "give the rest back",
    "check nothing more is taken",
)
#: phase 3: the memory the test uses between freeing and giving back (KiB)
CONSUMED = 500
#: phase 4's success: at most this much left free (KiB)
GIVE_BACK_SLACK = 32


class HarnessFailure(Exception):
    """One of the simulator's own ``failwith``s: ``outcome`` names it, the message is upstream's."""

    def __init__(self, outcome: Outcome, message: str):
        super().__init__(message)
        self.outcome = outcome


@dataclass
class SimulatedVM:
    """A domain record and the driver that moves its ``actual`` (upstream's ``vm`` class)."""

    domain: Domain
    rule: FaultRule
    time_of_last_update: float = 0.0

    def set_target(self, target: int) -> None:
        d = self.domain
        if target > d.memory_max:
            raise HarnessFailure(
                "target_set_above_max_mem",
                f"Target set above max_mem domid {d.domid}; max_mem = {d.memory_max}; target = {target}",
            )
        self.domain = replace(d, target=target)

    def set_maxmem(self, kib: int) -> None:
        d = self.domain
        if d.target > kib:
            raise HarnessFailure(
                "mem_max_set_below_target",
                f"mem_max set below target domid {d.domid}; max_mem = {kib}; target = {d.target}",
            )
        self.domain = replace(d, memory_max=kib)

    def update(self, host_free: int, time: float) -> int:
        """Move ``actual`` as the driver does from the last update to ``time``; the change, which
        the harness takes from the host's free memory.  Freeing is unlimited."""
        d = self.domain
        dt = time - self.time_of_last_update
        delta = self.rule.delta(d.target, d.actual, d.inaccuracy, self.time_of_last_update, dt)
        if delta > host_free:
            raise HarnessFailure(
                "attempted_to_allocate_more_than_host_free_mem",
                f"Attempted to allocate more than host_free_mem domid = {d.domid}; delta = {delta}; free = {host_free}",
            )
        self.domain = replace(d, actual=d.actual + delta)
        self.time_of_last_update = time
        return delta


@dataclass
class Harness:
    """The io of ``simulate``: the scripted host, its clock, and the timeline it writes."""

    vms: list[SimulatedVM]
    free: int
    target_host_free_mem: int
    free_memory_tolerance: int = 0
    i: int = 0
    rows: list[tuple[float | int, ...]] = field(default_factory=list)
    declarations: list[tuple[float, int, str]] = field(default_factory=list)

    def gettimeofday(self) -> float:
        return self.i / 10

    def make_host(self) -> Host:
        return Host(tuple(vm.domain for vm in self.vms), self.free)

    def execute_action(self, domid: int, target: int) -> None:
        vm = next(vm for vm in self.vms if vm.domain.domid == domid)
        if target > vm.domain.memory_max:
            vm.set_maxmem(target)
            vm.set_target(target)
        else:
            vm.set_target(target)
            vm.set_maxmem(target)

    def domain_setmaxmem(self, domid: int, kib: int) -> None:
        self.execute_action(domid, kib)  # as upstream's simulator does: the target moves too

    def declared(self, inactive: Sequence[int], active: Sequence[int]) -> None:
        now = self.gettimeofday()
        self.declarations += [(now, d, "inactive") for d in inactive] + [(now, d, "active") for d in active]

    def wait(self) -> None:
        """The loop's ``io.wait``, whatever it asked for: 0.1 s pass, every VM moves, a row."""
        self.i += 1
        now = self.gettimeofday()
        for vm in self.vms:
            self.free -= vm.update(self.free, now)
        self.rows.append((now, self.free, *(v for vm in self.vms for v in (vm.domain.actual, vm.domain.target))))

    def drive(self, loop: Generator[float, None, object]) -> None:
        for _seconds in loop:
            self.wait()

    def guaranteed_free(self, kib: int) -> None:
        """``verify_memory_is_guaranteed_free``: ``kib`` stays free even if every domain rose to the
        top of its band (target + inaccuracy)."""
        host = self.make_host()
        total = sum(d.target + d.inaccuracy - d.actual for d in host.domains)
        if host.free - total < kib:
            raise HarnessFailure(
                "memory_not_guaranteed_free",
                f"Memory not guaranteed free: free_mem = {host.free}; total guests could take = {total}; "
                f"required free = {kib}",
            )


@dataclass(frozen=True)
class SqueezeTestResult:
    """How a case ended: ``outcome``, the domains blamed (domains_refused_to_cooperate), upstream's
    message, the ``phase`` (1-5) it ended in, the simulated ``time_s`` then, and the host's free
    memory at the end (KiB).  ``timeline``: upstream's ``.dat``, one row per wait (time_s,
    host_free_kib, then d<domid>_actual_kib and d<domid>_target_kib per domain in list order);
    ``declarations``: (time_s, domid, "inactive" | "active") as the loop declared them."""

    name: str
    outcome: Outcome
    domains: tuple[int, ...]
    message: str
    phase: int
    time_s: float
    host_free_kib: int
    timeline: pd.DataFrame
    declarations: tuple[tuple[float, int, str], ...]


def simulate(case: SqueezeTestCase) -> SqueezeTestResult:
    """Run ``case`` through upstream's five phases; the first failure ends it."""
    required = case.required
    harness = Harness([SimulatedVM(d.record(), d.rule()) for d in case.domains], case.free, required)
    settings = Settings(fistpoints=tuple(case.fistpoints), max_iterations=case.max_iterations)
    outcome: Outcome = "success"
    blamed: tuple[int, ...] = ()
    message = ""
    phase = 1
    try:
        harness.drive(change_host_free_memory(harness, required, lambda free: free >= required, settings))
        phase = 2
        harness.guaranteed_free(required)
        phase = 3
        harness.free -= CONSUMED
        phase = 4
        harness.drive(change_host_free_memory(harness, 0, lambda free: free <= GIVE_BACK_SLACK, settings))
        phase = 5
        harness.guaranteed_free(0)
    except HarnessFailure as failure:
        outcome, message = failure.outcome, str(failure)
    except SqueezeFailure as failure:
        outcome, message = failure.kind, str(failure)  # type: ignore[assignment]
        blamed = failure.domids if isinstance(failure, DomainsRefusedToCooperate) else ()
    return SqueezeTestResult(
        case.name,
        outcome,
        blamed,
        message,
        phase,
        harness.gettimeofday(),
        harness.free,
        _timeline(harness, case),
        tuple(harness.declarations),
    )


def _timeline(harness: Harness, case: SqueezeTestCase) -> pd.DataFrame:
    per_domain = [f"d{d.domid}_{what}_kib" for d in case.domains for what in ("actual", "target")]
    columns = ["time_s", "host_free_kib", *per_domain]
    frame = pd.DataFrame(harness.rows, columns=columns)
    return frame.astype({c: "int64" for c in columns[1:]})


def expected(case: SqueezeTestCase, result: SqueezeTestResult) -> bool:
    """The case ended as it says it should (and blamed the domains it names, if it names any)."""
    blamed = case.expect.domains
    return result.outcome == case.expect.outcome and (blamed is None or list(result.domains) == blamed)
