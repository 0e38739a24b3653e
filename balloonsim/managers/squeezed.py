"""squeezed, XenServer/XCP-ng's host memory manager, as a balloonsim manager (``host.manager.kind: squeezed``).

The policy and the control loop are ``managers.squeeze`` (squeeze.ml); this
module is the daemon around them (xen-api ``ocaml/squeezed/src``):

* ``XenIO`` is ``squeeze_xen.ml``'s io, simplified: a domain's ``actual`` is
  Xen's tot_pages (upstream subtracts a memory-offset it records when the guest
  first advertises feature-balloon; a guest here holds its target exactly, video
  RAM aside), its ``target`` is xenstore's memory/target, dynamic_min/max are the
  scenario's, every running domain can balloon, and host free is Xen's free memory
  (no scrubbing, no reservations).  ``memory_max`` is max_pages less
  ``MAXMEM_OFFSET_KIB`` (``maxmem_of_dominfo``), and a maxmem is written as target
  + that offset: 1 MiB, ``xen_max_offset`` of HVM and PVH guests (``Memory.HVM``; 0
  for PV) and libxl's LIBXL_MAXMEM_CONSTANT, so a domain squeezed sets has the
  max_pages ``xl mem-set`` would give it.  ``execute_action`` raises maxmem before
  a raised target and sets the target before a lowered maxmem, and writes nothing
  that is already so (upstream's caches); ``domain_setmaxmem`` *is*
  ``execute_action``, target included.  ``make_host`` lowers a maxmem that is above
  the target (CA-36316).
* ``Squeezed.daemon`` is the balance thread (``memory_server.ml``): every
  ``balance_check_interval``, if the host is unbalanced, balance it (failures are
  swallowed, as upstream's ``balance_memory`` does; here each is reported).
* ``Squeezed.make_room`` is ``reserve_memory``: ``free_memory`` of the VM's size.
  Both hold one lock, upstream's ``big_server_mutex``.
"""

from __future__ import annotations

from collections.abc import Sequence

import simpy
from pydantic import Field

from balloonsim.managers.base import DomainView, Process, SetMaxPages, SetTarget
from balloonsim.managers.process import HostIO
from balloonsim.managers.squeeze import (
    CannotFreeThisMuchMemory,
    Domain,
    DomainsRefusedToCooperate,
    Host,
    IterationLimit,
    Loop,
    Settings,
    SqueezeFailure,
    balance_memory,
    free_memory,
    is_host_memory_unbalanced,
)
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import KiB, Nanoseconds
from balloonsim.units import NS_PER_S, kib_to_pages, pages_to_kib

#: added to a target to make the maxmem written to Xen (see the module's docstring)
MAXMEM_OFFSET_KIB = 1024


class SqueezedParams(ManagerParams):
    host_free_target: KiB = Field(
        "73728KiB",
        description="the free memory squeezed keeps on the host: low_mem_emergency_pool (64MiB, Xen's "
        "low_mem_virq_limit) + extra_mem_to_keep (8MiB); older squeezed versions keep 9216KiB (a 1MiB pool)",
    )
    free_memory_tolerance: KiB = Field(
        "512KiB", description="free memory this far above the target still counts as balanced"
    )
    balance_check_interval: Nanoseconds = Field(
        "10s", gt=0, description="how often the balance thread looks for an unbalanced host (balance-check-interval)"
    )
    manage_domain_zero: bool = Field(
        False,
        description="squeezed's manage-domain-zero: balloon dom0 (the initial_domain) too; off, as upstream's "
        "default, dom0 is never asked to move",
    )
    wait: Nanoseconds = Field("1s", gt=0, description="the control loop's wait between iterations")
    stuck_after: Nanoseconds = Field(
        "5s", description="a driver with no progress towards its target for longer than this is stuck"
    )
    inaccuracy: KiB = Field("4KiB", description="how far from its target a domain may stay and count as there")
    max_iterations: int = Field(
        1000,
        ge=1,
        description="ours (upstream's loop has no bound): a loop that neither succeeds nor fails in this many "
        "iterations gives up; a VM start then fails, a balance is abandoned until the next check",
    )


class XenIO:
    """squeeze_xen's io over the simulated host (KiB): what the control loop reads and does."""

    def __init__(self, io: HostIO, params: SqueezedParams):
        self.io = io
        self.target_host_free_mem = params.host_free_target
        self.free_memory_tolerance = params.free_memory_tolerance
        self.inaccuracy = params.inaccuracy
        self.manage_domain_zero = params.manage_domain_zero
        self._names: dict[int, str] = {}
        self._targets: dict[int, int] = {}  # what squeezed last read or wrote, KiB
        self._maxmems: dict[int, int] = {}  # in target terms (less the offset), KiB

    def gettimeofday(self) -> float:
        return self.io.now / NS_PER_S

    def make_host(self) -> Host:
        view = self.io.view()
        self._names = {d.domid: d.name for d in view.domains}
        # squeeze_xen's per-domain cache: maxmem read from Xen once, then what squeezed set (Xen
        # keeps whole pages, so reading it back would lose the KiB squeezed wrote)
        self._maxmems = {d.domid: self._maxmems.get(d.domid, _maxmem_of(d)) for d in view.domains}
        domains = tuple(self._domain(d) for d in view.domains)
        self._targets = {d.domid: d.target for d in domains}
        for d in domains:  # CA-36316: lowering a maxmem towards the target is always safe
            if d.target < d.memory_max:
                self._set_maxmem(d.domid, d.target)
        return Host(domains, pages_to_kib(view.free_pages))

    def _domain(self, d: DomainView) -> Domain:
        actual = pages_to_kib(d.tot_pages)
        target = actual if d.target_kib is None else d.target_kib  # no target written: where it is
        return Domain(
            d.domid,
            not d.initial_domain or self.manage_domain_zero,  # can_balloon
            pages_to_kib(d.dynamic_min_pages),
            target,
            pages_to_kib(d.dynamic_max_pages),
            actual,
            self._maxmems[d.domid],
            self.inaccuracy,
        )

    def execute_action(self, domid: int, target: int) -> None:
        if target < 0 or domid not in self._names:  # upstream: logged, nothing done
            return
        if target > self._maxmems[domid]:
            self._set_maxmem(domid, target)
            self._set_target(domid, target)
        else:
            self._set_target(domid, target)
            self._set_maxmem(domid, target)

    def domain_setmaxmem(self, domid: int, kib: int) -> None:
        self.execute_action(domid, kib)  # squeeze_xen's io: the target goes with it

    def _set_target(self, domid: int, kib: int) -> None:
        if self._targets[domid] != kib:
            self.io.apply(SetTarget(self._names[domid], kib))
            self._targets[domid] = kib

    def _set_maxmem(self, domid: int, kib: int) -> None:
        if self._maxmems[domid] != kib:
            self.io.apply(SetMaxPages(self._names[domid], kib_to_pages(kib + MAXMEM_OFFSET_KIB)))
            self._maxmems[domid] = kib

    def declared(self, inactive: Sequence[int], active: Sequence[int]) -> None:
        for domid, kind in [(i, "declared_stuck") for i in inactive] + [(i, "declared_active") for i in active]:
            self.io.report(kind, self._names[domid], message=f"squeezed: domid {domid} {kind.replace('_', ' ')}")


def _maxmem_of(d: DomainView) -> int:
    """``maxmem_of_dominfo``: Xen's max_pages in KiB, less the offset squeezed adds."""
    return max(0, pages_to_kib(d.max_pages) - MAXMEM_OFFSET_KIB)


class Squeezed:
    """squeezed's balance thread and its reserve_memory, over the simulated host."""

    Params = SqueezedParams

    def __init__(self, params: SqueezedParams):
        self.params = params
        self.settings = Settings(
            stuck_after=params.stuck_after / NS_PER_S,
            wait=params.wait / NS_PER_S,
            max_iterations=params.max_iterations,
        )
        self._xen: XenIO | None = None  # one, as squeeze_xen's caches are one
        self._lock: simpy.Resource | None = None  # upstream's big_server_mutex
        self._goal_kib: int | None = None

    def daemon(self, io: HostIO) -> Process:
        xen = self._xen_io(io)
        self._aim(io, self.params.host_free_target)
        while True:
            yield io.sleep(self.params.balance_check_interval)
            with self._mutex(io).request() as held:
                yield held
                if is_host_memory_unbalanced(xen, self.settings):
                    failure = yield from self._waits(io, balance_memory(xen, self.settings))
                    if failure is not None:
                        self._failed(io, failure, "balance")

    def make_room(self, io: HostIO, pages: int) -> Process:
        """``reserve_memory``: free the VM's memory on top of the host's free target; False when
        squeezed gives up (a failure is reported with the domains it blames)."""
        xen = self._xen_io(io)
        with self._mutex(io).request() as held:
            yield held
            required = pages_to_kib(pages)
            self._aim(io, required + self.params.host_free_target)
            try:
                yield from self._waits(io, free_memory(xen, required, self.settings))
            except SqueezeFailure as failure:
                self._failed(io, failure, f"reserve_memory of {required} KiB")
                return False
            finally:
                self._aim(io, self.params.host_free_target)
        return True

    def _xen_io(self, io: HostIO) -> XenIO:
        if self._xen is None:
            self._xen = XenIO(io, self.params)
        return self._xen

    def _mutex(self, io: HostIO) -> simpy.Resource:
        if self._lock is None:
            self._lock = simpy.Resource(io.env, capacity=1)
        return self._lock

    @staticmethod
    def _waits(io: HostIO, loop: Loop) -> Process:
        """Run a control loop in simulated time: each wait it asks for is a sleep."""
        try:
            while True:
                seconds = next(loop)
                yield io.sleep(round(seconds * NS_PER_S))
        except StopIteration as stop:
            return stop.value

    def _aim(self, io: HostIO, kib: int) -> None:
        """Report the host free memory squeezed aims at (``goal``), when it changes."""
        if kib != self._goal_kib:
            self._goal_kib = kib
            io.report("goal", None, kib_to_pages(kib), kib, "squeezed: host free memory aimed at (value: KiB)")

    def _failed(self, io: HostIO, failure: SqueezeFailure, what: str) -> None:
        """Report a failure as the memory server does: required and free less the host's free target."""
        if isinstance(failure, DomainsRefusedToCooperate):
            names = [d.name for d in io.view().domains if d.domid in failure.domids]
            io.report(failure.kind, None, message=f"squeezed {what}: domains {', '.join(names)} refused to cooperate")
            for name in names:
                io.report("blamed", name, message=f"squeezed {what}: refused to cooperate")
        elif isinstance(failure, CannotFreeThisMuchMemory | IterationLimit):
            need = failure.required - self.params.host_free_target
            free = failure.free - self.params.host_free_target
            message = f"squeezed {what}: {failure.kind}: needs {need} KiB, {free} KiB free above the host's target"
            io.report(failure.kind, None, kib_to_pages(max(0, free)), free, message)
