"""The effects of a host memory manager: sample the world at its cadence, apply what it decides."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import simpy

from balloonsim.kernel.guest import GuestKernel
from balloonsim.managers.base import Action, DomainView, HostView, Manager, MemSet, SetMaxPages, SetTarget
from balloonsim.sim import EVENT, Process, Timer
from balloonsim.units import kib_to_pages
from balloonsim.xen.toolstack import Toolstack

#: told the index of each domain the manager acted on: a timeline row is due
Applied = Callable[[int], None]


def snapshot(now: int, toolstack: Toolstack, guests: Sequence[GuestKernel]) -> HostView:
    """The host as a manager reads it: Xen's accounting, xenstore, and the guests' own reports."""
    host = toolstack.host
    return HostView(
        time_ns=now,
        total_pages=host.total_pages,
        free_pages=host.free_pages,
        domains=tuple(
            DomainView(
                name=g.name,
                domid=g.domain.domid,
                tot_pages=g.domain.tot_pages,
                max_pages=g.domain.max_pages,
                target_kib=toolstack.target_kib(g.domain),
                static_max_kib=toolstack.static_max_kib(g.domain),
                mem_available=g.mm.si_mem_available(),
                guest_free=g.mm.free_pages,
            )
            for g in guests
        ),
    )


def apply(action: Action, toolstack: Toolstack, guest: GuestKernel) -> None:
    """Carry out one action through the toolstack, as the manager's daemon would."""
    if isinstance(action, SetTarget):
        toolstack.write_target(guest.domain, action.kib)
    elif isinstance(action, MemSet):
        error = toolstack.set_memory_target(guest.domain, action.kib)
        if error:
            guest.trace("mem_set_failed", kib_to_pages(action.kib), -1, error)
    elif isinstance(action, SetMaxPages):
        toolstack.host.set_max_pages(guest.domain, action.pages)
    else:
        raise TypeError(f"not a manager action: {action!r}")


def run_manager(
    env: simpy.Environment,
    manager: Manager,
    toolstack: Toolstack,
    guests: Sequence[GuestKernel],
    applied: Applied,
) -> Process:
    """The daemon: decide now and every period; ``applied(index)`` after each action on a domain."""
    index = {g.name: i for i, g in enumerate(guests)}
    while True:
        for action in manager.decide(snapshot(env.now, toolstack, guests)):
            i = index[action.domain]
            apply(action, toolstack, guests[i])
            applied(i)
        yield Timer(env, manager.period_ns, EVENT)
