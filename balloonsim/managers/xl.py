"""``xl`` with ``autoballoon`` on: no daemon; a VM start balloons dom0 down to make room.

xen ``tools/xl/xl_vmcontrol.c`` ``freemem()``, run by ``xl create`` before the domain is built:
up to 3 times, if Xen's free memory (``libxl_get_free_memory``: free + scrub pages) holds what
the domain needs, go on; else ask dom0 for the shortfall (``libxl_set_memory_target(ctx, 0,
free - need, relative=1, enforce=0)``: dom0's target falls by it, its maxmem stays) and wait for
dom0 to get there (``libxl_wait_for_memory_target(ctx, 0, 10)``, tools/libs/light/libxl_mem.c:
every 2 s it reads dom0's memory; a poll without progress costs 2 of the 10 s, a rise fails at
once, reaching the target ends the wait).  If dom0 never gets there the start fails.

dom0 is the domain marked ``initial_domain`` (a guest with a balloon driver like any other here).
What the domain needs is its ``memory`` (libxl_domain_need_memory adds shadow memory and 1-2 MiB
of extra memory, which the simulated build does not take).  Nothing else ever sets a target.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from balloonsim.managers.base import DomainView, Process, SetTarget
from balloonsim.scenario.model import ManagerParams
from balloonsim.units import KIB_PER_PAGE, NS_PER_S

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO

FREEMEM_RETRIES = 3  # freemem(): retries = 3
TARGET_WAIT_S = 10  # libxl_wait_for_memory_target(ctx, 0, 10)
TARGET_POLL_S = 2  # its sleep(2) between looks
LIBXL_MIN_DOM0_MEM_KIB = 128 * 1024  # libxl_internal.h


class XlParams(ManagerParams):
    autoballoon: bool = Field(
        True,
        description="xl.conf autoballoon: balloon dom0 (the initial_domain) down to make room for a new "
        "domain; off, a start needs its memory free at once (the advice when dom0_mem is set)",
    )


class Xl:
    Params = XlParams

    def __init__(self, params: XlParams):
        self.params = params

    def daemon(self, io: HostIO) -> Process:
        return  # xl is a command, not a daemon
        yield

    def make_room(self, io: HostIO, pages: int) -> Process:
        """freemem(): True once ``pages`` are free, False when dom0 cannot give them."""
        if not self.params.autoballoon:
            return io.free_pages >= pages
        need_kib = pages * KIB_PER_PAGE
        for _ in range(FREEMEM_RETRIES):
            free_kib = io.free_pages * KIB_PER_PAGE
            if free_kib >= need_kib:
                return True
            dom0 = _dom0(io)
            if dom0 is None or dom0.target_kib is None:
                io.report("freemem_failed", None, pages, -1, "no dom0 (initial_domain) with a memory/target to balloon")
                return False
            # libxl_set_memory_target(relative=1, enforce=0): the target falls by the shortfall, to 0 at
            # the least, and dom0 is refused one below LIBXL_MIN_DOM0_MEM (ERROR_INVAL: freemem fails)
            target_kib = max(0, dom0.target_kib + free_kib - need_kib)
            if target_kib < LIBXL_MIN_DOM0_MEM_KIB:
                io.report("freemem_failed", dom0.name, pages, -1, f"dom0's new target {target_kib}KiB is below 128MiB")
                return False
            io.apply(SetTarget(dom0.name, target_kib))
            reached = yield from wait_for_memory_target(io, dom0.name, TARGET_WAIT_S)
            if not reached:
                io.report("freemem_failed", dom0.name, pages, -1, "dom0 did not reach its target")
                return False
        return False


def _dom0(io: HostIO) -> DomainView | None:
    return next((d for d in io.view().domains if d.initial_domain), None)


def wait_for_memory_target(io: HostIO, name: str, wait_secs: int) -> Process:
    """libxl_wait_for_memory_target (Xen 4.6+): True when the domain's memory is at or below its
    target; the wait only counts down while it makes no progress, and a rise fails it."""
    target_kib = io.view().domain(name).target_kib or 0
    previous = None
    while True:
        yield io.sleep(TARGET_POLL_S * NS_PER_S)
        dom = next((d for d in io.view().domains if d.name == name), None)
        if dom is None:  # dom0 crashed: libxl_domain_info fails
            return False
        current_kib = dom.tot_pages * KIB_PER_PAGE
        if previous is not None and current_kib > previous:
            return False
        if current_kib == previous:
            wait_secs -= TARGET_POLL_S
        previous = current_kib
        if not (wait_secs > 0 and current_kib > target_kib):
            return current_kib <= target_kib
