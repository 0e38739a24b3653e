"""The effects of a host memory manager: what its daemon reads of the host, and how it acts.

``HostIO`` is the manager's whole view of the simulation, as dom0's daemon
has it: it reads Xen's accounting, xenstore and the guests' own reports
(``view``), acts through the toolstack (``apply``), waits (``sleep``), and
says what it decided (``report``: a guest declared stuck, its free-memory
goal).  The engine runs ``Manager.daemon`` from t=0 and ``Manager.make_room``
for each VM start.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import simpy

from balloonsim.kernel.guest import GuestKernel
from balloonsim.managers.base import Action, DomainView, HostView, MemSet, SetMaxPages, SetPodTarget, SetTarget
from balloonsim.sim import EVENT, Timer
from balloonsim.units import kib_to_pages
from balloonsim.xen.toolstack import Toolstack

#: told the name of each domain the manager acted on: a timeline row is due
Applied = Callable[[str], None]
#: an event the manager reports: (kind, domain name or None for the host, pages, value, message)
Reported = Callable[[str, str | None, int, int, str], None]


def domain_view(toolstack: Toolstack, guest: GuestKernel) -> DomainView:
    """One domain as dom0 reads it: Xen's accounting, xenstore, and what the guest reports."""
    dom, mm, spec = guest.domain, guest.mm, guest.spec
    return DomainView(
        name=guest.name,
        domid=dom.domid,
        initial_domain=spec.initial_domain,
        tot_pages=dom.tot_pages,
        max_pages=dom.max_pages,
        target_kib=toolstack.target_kib(dom),
        static_max_kib=toolstack.static_max_kib(dom),
        dynamic_min_pages=spec.dynamic_min_pages,
        dynamic_max_pages=spec.dynamic_max_pages,
        shares=spec.shares,
        mem_total=mm.managed_pages,
        mem_free=mm.free_pages,
        mem_cached=mm.reclaimable,
        mem_available=mm.si_mem_available(),
        swap_used=mm.swap_used,
    )


def snapshot(now: int, toolstack: Toolstack, guests: Iterable[GuestKernel]) -> HostView:
    """The host as a manager reads it, with the running ``guests`` (none that crashed or stopped)."""
    host = toolstack.host
    return HostView(
        time_ns=now,
        total_pages=host.total_pages,
        free_pages=host.free_pages,  # first: reading it applies every guest's planned turns due by now
        domains=tuple(domain_view(toolstack, g) for g in guests),
    )


def apply(action: Action, toolstack: Toolstack, guest: GuestKernel) -> bool:
    """Carry out one action through the toolstack, as the manager's daemon would; False when it
    does nothing (a PoD target for a PV guest)."""
    guest.touch()
    if isinstance(action, SetTarget):
        toolstack.write_target(guest.domain, action.kib)
    elif isinstance(action, MemSet):
        error = toolstack.set_memory_target(guest.domain, action.kib)
        if error:
            guest.trace("mem_set_failed", kib_to_pages(action.kib), -1, error)
    elif isinstance(action, SetMaxPages):
        toolstack.host.set_max_pages(guest.domain, action.pages)
    elif isinstance(action, SetPodTarget):
        if guest.domain.pv:
            return False
        toolstack.host.pod_set_target(guest.domain, action.pages)
    else:
        raise TypeError(f"not a manager action: {action!r}")
    return True


class HostIO:
    """A manager daemon's handle on the simulated host."""

    def __init__(
        self,
        env: simpy.Environment,
        toolstack: Toolstack,
        guests: Callable[[], Sequence[GuestKernel]],
        guest: Callable[[str], GuestKernel | None],
        applied: Applied,
        reported: Reported,
    ):
        self.env = env
        self.toolstack = toolstack
        self._guests = guests  # the running guests, in scenario order
        self._guest = guest  # the running guest of that name, if any
        self._applied = applied
        self._reported = reported

    @property
    def now(self) -> int:
        return self.env.now

    @property
    def free_pages(self) -> int:
        """Xen's free memory (``xl info``'s free_memory)."""
        return self.toolstack.host.free_pages

    def view(self) -> HostView:
        return snapshot(self.env.now, self.toolstack, self._guests())

    def apply(self, action: Action) -> None:
        """Act on a running domain; an action on one that is gone does nothing (the daemon's
        write would fail with ENOENT)."""
        guest = self._guest(action.domain)
        if guest is not None and apply(action, self.toolstack, guest):
            self._applied(guest.name)

    def apply_all(self, actions: Iterable[Action]) -> None:
        for action in actions:
            self.apply(action)

    def sleep(self, ns: int) -> simpy.Event:
        """``yield io.sleep(ns)``: the daemon waits."""
        return Timer(self.env, max(0, ns), EVENT)

    def report(self, kind: str, domain: str | None = None, pages: int = -1, value: int = -1, message: str = "") -> None:
        """An event in the run's events table: ``declared_stuck``, ``goal`` (pages: the host free
        memory the manager aims at), ...; ``domain`` None for the host."""
        self._reported(kind, domain, pages, value, message)
