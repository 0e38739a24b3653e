"""Proxmox VE's automatic ballooning: ``compute_alg1`` and the pvestatd pass that runs it.

The decision is ``compute_alg1`` of proxmox/pve-manager ``PVE/AutoBalloon.pm``, in bytes, with
its integer rules (Perl ``int()`` truncates toward zero; the share is a float division) and its
quirks kept: each VM moves at most ``maxchange`` from its *original* size per call, however many
passes run; one result map is shared by the two ``distribute`` calls; a VM marked done in a later
pass keeps what an earlier pass gave it; a grow request may still shrink a VM whose share fell.

The daemon is pvestatd's status loop (``PVE/Service/pvestatd.pm``: ``run``, ``update_qemu_status``,
``auto_balloning``): every ``update_time``, the first cycle after start-up skipped, it reads the
host's memory, computes the goal and sends QMP ``balloon`` for each VM whose size should change.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pydantic import Field

from balloonsim.managers.base import Action, HostView, MemSet, PeriodicManager, Process
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import Nanoseconds, Pages
from balloonsim.units import PAGE_SIZE

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO

#: compute_alg1's dead band, its literal 10 * 1024 * 1024 bytes
DEAD_BAND_BYTES = 10 * 1024 * 1024
#: a VM's weight when it sets none (``$d->{shares} || 1000``)
DEFAULT_SHARES = 1000


@dataclass(frozen=True)
class VmStatus:
    """One VM as ``PVE::QemuServer::vmstatus`` gives it to compute_alg1, in bytes."""

    balloon: int  # the current size (QMP query-balloon's actual); 0: no balloon driver
    balloon_min: int  # the configured floor (``balloon:``); 0: auto-ballooning off
    maxmem: int  # the configured ``memory:``
    freemem: int = 0  # the guest's free memory (virtio-balloon stat-free-memory); 0: not reported
    shares: int | None = None  # None: the default weight; 0: left out of auto-ballooning
    lock: str | None = None  # "migrate": left out


VmId = Hashable


def compute_alg1(
    vmstatus: Mapping[VmId, VmStatus], goal: int, maxchange: int, dead_band: int = DEAD_BAND_BYTES
) -> dict[VmId, int]:
    """The new size of each VM that should move, for a host that wants to hand out ``goal`` bytes
    (negative: take them back).  Each VM moves at most ``maxchange`` from its current size."""
    eligible = [vmid for vmid, d in vmstatus.items() if _ballooned(d)]
    pressured = [vmid for vmid in eligible if not _comfortable(vmstatus[vmid])]
    comfortable = [vmid for vmid in eligible if _comfortable(vmstatus[vmid])]
    res: dict[VmId, int] = {}
    if goal > dead_band:
        # guests under memory pressure first; all of them when those took nothing
        rest = distribute(vmstatus, res, pressured, goal, maxchange)
        if rest >= goal:
            distribute(vmstatus, res, eligible, rest, maxchange)
    elif goal < -dead_band:
        # guests with free memory to spare first; all of them when those gave nothing
        rest = distribute(vmstatus, res, comfortable, goal, maxchange)
        if rest <= goal:
            distribute(vmstatus, res, eligible, rest, maxchange)
    return res


def _ballooned(d: VmStatus) -> bool:
    """A VM auto-ballooning may move: a driver, a floor set, not migrating, shares not 0."""
    return bool(d.balloon) and bool(d.balloon_min) and d.lock != "migrate" and d.shares != 0


def _comfortable(d: VmStatus) -> bool:
    """Free memory above a quarter of its floor, and not below the floor (AutoBalloon's idlist2)."""
    return bool(d.freemem) and d.freemem > d.balloon_min * 0.25 and d.balloon >= d.balloon_min


def distribute(
    vmstatus: Mapping[VmId, VmStatus], res: dict[VmId, int], ids: Sequence[VmId], amount: int, maxchange: int
) -> int:
    """AutoBalloon's ``$change_func``: share ``amount`` bytes among ``ids`` by their shares, each
    within [balloon_min, maxmem] and ``maxchange`` of its size; record the sizes in ``res``.
    Returns what is left of ``amount``."""
    rest = amount
    done: set[VmId] = set()
    repeat = progress = True
    while rest and repeat and progress:
        repeat = progress = False
        todo = [vmid for vmid in ids if vmid not in done]
        shares_total = sum(vmstatus[v].shares or DEFAULT_SHARES for v in todo)
        alloc_old = sum(res.get(v, vmstatus[v].balloon) - vmstatus[v].balloon_min for v in todo)
        alloc_new = alloc_old + rest
        changes = 0
        for vmid in todo:
            d = vmstatus[vmid]
            desired = d.balloon_min + int(alloc_new / shares_total * (d.shares or DEFAULT_SHARES))
            if desired > d.maxmem:
                desired, repeat = d.maxmem, True
            elif desired < d.balloon_min:
                desired, repeat = d.balloon_min, True
            # the step is from the VM's size before the call, d.balloon, never from res
            if amount > 0 and desired > d.balloon:
                new = min(d.balloon + maxchange, desired)
            elif desired < d.balloon:
                new = max(d.balloon - maxchange, desired)
            else:
                done.add(vmid)
                continue
            if new != d.balloon:
                change = new - res.get(vmid, d.balloon)
                res[vmid] = new
                if change:
                    changes += change
                    progress = True
                    repeat = True
        rest -= changes
    return rest


class AutoBalloonParams(ManagerParams):
    ballooning_target: int = Field(
        80,
        ge=0,
        le=100,
        description="the host memory use, in percent of its total, that auto-ballooning aims at (the node "
        "option ballooning-target; older pvestatd hard-codes 80)",
    )
    update_time: Nanoseconds = Field(
        "10s", gt=0, description="pvestatd's status cycle; the first cycle after start-up does nothing"
    )
    maxchange: Pages = Field("100MiB", description="the most one pass moves a VM from its current size")
    dead_band: Pages = Field("10MiB", description="a goal within this much of zero moves nothing")
    start_timeout: Nanoseconds = Field(
        "0s",
        description="how long a VM start waits for free host memory (Proxmox frees none for a start: its "
        "passes may, by chance)",
    )


class AutoBalloon(PeriodicManager):
    """pvestatd's auto-ballooning over a Xen host.

    Each VM's ``balloon`` is its current size (Xen's tot_pages), its floor and ``maxmem`` the
    domain's dynamic-min and dynamic-max, ``freemem`` the guest's MemFree, the QMP ``balloon``
    command a ``MemSet``.  The host's used memory is its total less Xen's free memory: pve-common
    reads MemTotal - MemAvailable (newer) or MemTotal - MemFree - Buffers - Cached (older), and on
    Xen both are the same figure, since the hypervisor keeps no page cache: its free memory is
    exactly what a VM could be given.
    """

    Params = AutoBalloonParams

    def __init__(self, params: AutoBalloonParams):
        self.params = params
        self.period_ns = params.update_time
        self.start_timeout_ns = params.start_timeout
        self._goal_pages: int | None = None

    def daemon(self, io: HostIO) -> Process:
        # pvestatd's run(): cycle 0 only sleeps ("do not update directly after startup")
        while True:
            yield io.sleep(self.period_ns)
            view = io.view()
            self._report_goal(io, view.total_pages)
            io.apply_all(self.decide(view))

    def decide(self, view: HostView) -> Sequence[Action]:
        """One ``auto_balloning`` pass: the QMP balloon commands, by VM name (pvestatd sorts by vmid)."""
        memtotal = view.total_pages * PAGE_SIZE
        memused = (view.total_pages - view.free_pages) * PAGE_SIZE
        goal = int(memtotal * self.params.ballooning_target / 100 - memused)
        vmstatus = {
            d.name: VmStatus(
                balloon=d.tot_pages * PAGE_SIZE,
                balloon_min=d.dynamic_min_pages * PAGE_SIZE,
                maxmem=d.dynamic_max_pages * PAGE_SIZE,
                freemem=d.mem_free * PAGE_SIZE,
                shares=d.shares,
            )
            for d in view.domains
        }
        res = compute_alg1(vmstatus, goal, self.params.maxchange * PAGE_SIZE, self.params.dead_band * PAGE_SIZE)
        # pvestatd skips a VM whose int(target) is int(current); compute_alg1 records only sizes
        # that differ from the current one, and here every size is whole bytes, so none is skipped
        return [MemSet(name, value // 1024) for name, value in sorted(res.items())]  # QMP bytes, libxl KiB

    def _report_goal(self, io: HostIO, total_pages: int) -> None:
        """The host free memory auto-ballooning aims at: (100 - target)% of the total, when it changes."""
        pages = total_pages * (100 - self.params.ballooning_target) // 100
        if pages != self._goal_pages:
            self._goal_pages = pages
            io.report("goal", None, pages)
