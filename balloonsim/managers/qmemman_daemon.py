"""Qubes OS qmemman's daemon around its decision (``managers/qmemman.py``).

After qubes-core-admin ``qubes/tools/qmemmand.py`` (the xenstore watcher and the request socket),
``qubes/qmemman/systemstate.py`` (``do_balance``, ``do_balloon``, ``mem_set``, Xen's free memory as
qmemman counts it) and qubes-linux-utils ``qmemman/meminfo-writer.c`` (the guests' side):

* every guest runs ``meminfo-writer 30000 100000``: each 0.1 s it computes its used memory and
  writes it to ``memory/meminfo`` when it moved by more than 30000 KiB, on its first sample, or
  when it grew by more than half that while above about 10/13 of MemTotal (``meminfo_publishes``);
* qmemmand's watcher handles the xenstore watches one at a time: each meminfo write runs
  ``do_balance`` (``balance()`` of Xen's free memory less 50 MiB, applied when significant, each
  gift waiting up to 5 x 0.1 s for the donors' memory); a domain appearing or going runs it too;
* a VM start (``make_room``) is a request on qmemman's socket: ``do_balloon`` asks the donors for
  the memory every 0.1 s until it is free, and gives up when the donors have nothing more to
  offer or freed less than 300 MiB over the last 3 s.
  ``do_balance`` and ``do_balloon`` hold one lock, so neither runs while the other does.

What qmemman cannot see here: the guests' ``memory/hotplug-max`` (a domain's maximum is its
static-max, or all the host's memory without one), and ``/var/run/qubes/do-not-membalance``.
Its mem-set sets Xen's maxmem, the PoD target (``xc.domain_set_target_mem``) and
``memory/target``.  dom0 is not simulated (its memory
is the host's "other" memory); qmemman's dom0 rules (a boost, no floor) apply to the domain
marked ``initial_domain``, which stands for dom0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import simpy
from pydantic import Field

from balloonsim.managers.base import DomainView, HostView, Process, SetMaxPages, SetPodTarget, SetTarget
from balloonsim.managers.qmemman import (
    Constants,
    DomainState,
    MiB,
    Request,
    balance,
    balloon,
    pref_mem,
    sanitize_and_parse_meminfo,
)
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import KiB, Nanoseconds, Pages, PagesPerSecond
from balloonsim.units import KIB_PER_PAGE, NS_PER_S, PAGE_SIZE, format_ns, kib_to_pages

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO

#: Xen's per-page overhead, taken off its free and total memory (systemstate.py, from OpenStack nova)
MEM_OVERHEAD_FACTOR = 1.0 / 1.00781
#: is_balance_req_significant's thresholds
MIN_TOTAL_MEMORY_TRANSFER = 150 * MiB
MIN_MEM_CHANGE_WHEN_UNDER_PREF = 15 * MiB
#: do_balance's tries before it gives up waiting for the donors
BALANCE_TRIES = 5
#: inhibit_balloon_up's margin
BALLOON_UP_MARGIN = 200 * 1024
#: what the guest sees below qmemman's target (mem_set: "VM sees about 16MB memory less")
TARGET_SHORTFALL_KIB = 16 * 1024
#: LIBXL_MAXMEM_CONSTANT, which qmemman adds to Xen's maxmem
MAXMEM_SLACK_KIB = 1024


class QmemmanParams(ManagerParams):
    cache_factor: float = Field(
        1.3, gt=0, description="qmemman.conf cache-margin-factor: a guest's preferred memory is its use times this"
    )
    min_prefmem: Pages = Field("200MiB", description="qmemman.conf vm-min-mem: the least preferred memory of a guest")
    dom0_mem_boost: Pages = Field(
        "350MiB", description="qmemman.conf dom0-mem-boost: added to dom0's preferred memory (the initial_domain)"
    )
    req_safety_net_factor: float = Field(
        1.05, ge=1, description="a VM start asks the donors for this much more than it needs (rounding slack)"
    )
    balloon_delay: Nanoseconds = Field(
        "100ms", gt=0, description="BALOON_DELAY: a VM start's wait between requests, and a gift's wait for donors"
    )
    xen_free_mem_left: Pages = Field(
        "50MiB", description="XEN_FREE_MEM_LEFT: Xen free memory qmemman keeps out of the guests' shares"
    )
    xen_free_mem_min: Pages = Field(
        "25MiB", description="XEN_FREE_MEM_MIN: a VM start succeeds once its memory and this much more are free"
    )
    check_period: Nanoseconds = Field(
        "3s", gt=0, description="a VM start gives up when it freed less than check_rate over the last check_period"
    )
    check_rate: PagesPerSecond = Field("100MiB/s", description="see check_period")
    meminfo_threshold: KiB = Field(
        "30000KiB",
        gt=0,
        description="meminfo-writer's threshold: a guest reports its use when it moved by more than this (or "
        "grew by more than half of it while above 10/13 of MemTotal)",
    )
    meminfo_period: Nanoseconds = Field(
        "100ms", gt=0, description="meminfo-writer's delay: how often each guest samples its use"
    )


def meminfo_publishes(used_kib: int, prev_kib: int, mem_total_kib: int, threshold_kib: int) -> bool:
    """meminfo-writer's ``parse``: is this sample of used memory (KiB) written to memory/meminfo?

    ``prev_kib`` is the last value written (0: none yet).  C integer division throughout."""
    if used_kib < 0:
        return False
    diff = abs(used_kib - prev_kib)
    return (
        diff > threshold_kib
        or prev_kib == 0
        or (used_kib > prev_kib and used_kib // 10 > (mem_total_kib + 12) // 13 and diff > threshold_kib // 2)
    )


def balance_is_significant(
    requests: list[Request], xen_free: int, doms: dict[str, DomainState], free_left: int, k: Constants
) -> bool:
    """``is_balance_req_significant``: act on a balance only when Xen is short of its reserve, a
    domain below its preference would grow by more than 15 MiB, or enough memory moves."""
    if free_left - xen_free > MIN_MEM_CHANGE_WHEN_UNDER_PREF:
        return True
    transfer = 0
    for domid, target in requests:
        last_target = doms[domid].last_target
        change = target - last_target
        transfer += abs(change)
        if 0 < last_target < pref_mem(doms[domid], k) and change > MIN_MEM_CHANGE_WHEN_UNDER_PREF:
            return True
    return transfer + abs(xen_free - free_left) > MIN_TOTAL_MEMORY_TRANSFER


def qmemman_id(d: DomainView) -> str:
    """The domain's key in qmemman's records: its domid, "0" for dom0.

    balloonsim's Xen numbers the simulated domains from 1 (dom0 itself is the host's "other"
    memory), so the domain marked ``initial_domain`` stands for dom0."""
    return "0" if d.initial_domain else str(d.domid)


class Qmemman:
    """qmemmand: the guests' meminfo-writers, the xenstore watcher running do_balance, and
    do_balloon for VM starts, sharing one lock."""

    Params = QmemmanParams

    def __init__(self, params: QmemmanParams):
        self.params = params
        self.k = Constants(
            params.cache_factor,
            params.min_prefmem * PAGE_SIZE,
            params.dom0_mem_boost * PAGE_SIZE,
            params.req_safety_net_factor,
        )
        self.free_left = params.xen_free_mem_left * PAGE_SIZE
        self.free_min = params.xen_free_mem_min * PAGE_SIZE
        self.doms: dict[str, DomainState] = {}  # SystemState.domdict, in the order qmemman met them
        self.names: dict[str, str] = {}  # qmemman id -> domain name
        self.meminfo: dict[str, bytes] = {}  # memory/meminfo of each domain, by name
        self.published: dict[str, int] = {}  # each meminfo-writer's prev_used_mem (KiB)
        self.all_phys_mem = 0  # ALL_PHYS_MEM: the host's memory, less Xen's overhead
        self.refresh_domain_list = False  # force_refresh_domain_list: set when a VM start ends
        self._lock: simpy.Resource | None = None
        self._watches: simpy.Store | None = None

    # -- the processes ----------------------------------------------------------------------

    def daemon(self, io: HostIO) -> Process:
        """The guests' meminfo-writers, sampling every meminfo_period; qmemmand's watcher runs beside."""
        self._start(io)
        threshold, period = self.params.meminfo_threshold, self.params.meminfo_period
        watched: list[str] = []
        while True:
            view = io.view()
            names = [d.name for d in view.domains]
            if names != watched:  # @introduceDomain / @releaseDomain, seen at the next sample
                watched = names
                self._watches.put(None)
            for d in view.domains:
                used_kib = d.used_pages * KIB_PER_PAGE
                if meminfo_publishes(used_kib, self.published.get(d.name, 0), d.mem_total * KIB_PER_PAGE, threshold):
                    self.published[d.name] = used_kib
                    self.meminfo[d.name] = b"%d" % used_kib
                    self._watches.put(d.name)
            yield io.sleep(period)

    def _start(self, io: HostIO) -> None:
        if self._lock is None:
            self._lock = simpy.Resource(io.env, capacity=1)
            self._watches = simpy.Store(io.env)
            self._refresh_domain_list(io.view())  # the watches fire as qmemmand registers them
            io.env.process(self._watch_loop(io))
            self._report_goal(io, self.free_left)

    def _watch_loop(self, io: HostIO) -> Process:
        """XSWatcher.watch_loop: one watch at a time, each under the lock."""
        while True:
            name = yield self._watches.get()
            untrusted = None if name is None else self.meminfo.get(name)  # read before taking the lock
            if name is not None and not untrusted:
                continue
            with self._lock.request() as turn:
                yield turn
                if name is None:  # domain_list_changed
                    self._refresh_domain_list(io.view())
                    yield from self._do_balance(io)
                    continue
                if self.refresh_domain_list:  # a VM start ended: see the new domain first (qubes #1389)
                    self._refresh_domain_list(io.view())
                    self.refresh_domain_list = False
                qid = next((q for q, n in self.names.items() if n == name), None)
                if qid is None:  # just destroyed
                    continue
                self.doms[qid].mem_used = sanitize_and_parse_meminfo(untrusted)
                yield from self._do_balance(io)

    def make_room(self, io: HostIO, pages: int) -> Process:
        """A VM start: qmemman's socket request, do_balloon under the lock."""
        self._start(io)
        size = pages * PAGE_SIZE
        with self._lock.request() as turn:
            yield turn
            self._report_goal(io, size + self.free_left)
            started = io.now
            try:
                failure = yield from self._do_balloon(io, size)
            finally:  # also when the start is given up (its deadline)
                self.refresh_domain_list = True
                self._report_goal(io, self.free_left)
        took = format_ns(io.now - started)
        if failure:
            io.report("do_balloon", None, pages, 0, f"FAIL after {took}: {failure}")
            return False
        io.report("do_balloon", None, pages, 1, f"OK after {took}")
        return True

    # -- SystemState -----------------------------------------------------------------------

    def _refresh_domain_list(self, view: HostView) -> None:
        """domain_list_changed: add the new domains (last_target from memory/target), drop the gone."""
        present = {qmemman_id(d): d for d in view.domains}
        for qid in [q for q in self.doms if q not in present]:
            del self.doms[qid], self.names[qid]
        for qid, d in present.items():
            if qid not in self.doms:
                target = 0 if d.target_kib is None else d.target_kib * 1024
                self.doms[qid] = DomainState(qid, last_target=target)
                self.names[qid] = d.name

    def _refresh_memactual(self, view: HostView) -> None:
        """refresh_memactual: Xen's tot_pages, and the maximum from memory/static-max."""
        self.all_phys_mem = int(view.total_pages * KIB_PER_PAGE * 1024 * MEM_OVERHEAD_FACTOR)
        for d in view.domains:
            dom = self.doms.get(qmemman_id(d))
            if dom is None:
                continue
            dom.mem_current = d.tot_pages * KIB_PER_PAGE * 1024
            dom.mem_actual = max(dom.mem_current, dom.last_target)
            dom.mem_max = self.all_phys_mem if d.static_max_kib is None else d.static_max_kib * 1024

    def _free(self, io: HostIO) -> int:
        """get_free_xen_memory: Xen's free memory less its overhead, less what qmemman promised
        domains that have not taken it yet."""
        xen_free = int(io.free_pages * KIB_PER_PAGE * 1024 * MEM_OVERHEAD_FACTOR)
        promised = sum(max(0, d.last_target - d.mem_current) for d in self.doms.values())
        return xen_free - promised

    def _mem_set(self, io: HostIO, qid: str, val: int) -> None:
        """mem_set: Xen's maxmem 1 MiB above the target, and memory/target 16 MiB below it."""
        self.doms[qid].last_target = val
        name = self.names[qid]
        io.apply(SetMaxPages(name, kib_to_pages(int(val / 1024) + MAXMEM_SLACK_KIB)))
        io.apply(SetPodTarget(name, int(val / 1024) // KIB_PER_PAGE))  # xc.domain_set_target_mem: KiB / 4
        io.apply(SetTarget(name, max(0, int(val / 1024 - TARGET_SHORTFALL_KIB))))  # a target is never negative

    def _clear_outdated_error_markers(self) -> None:
        for dom in self.doms.values():
            if dom.mem_used is None:
                continue
            if dom.mem_actual <= dom.last_target + self.free_left / 2 or dom.mem_actual < pref_mem(dom, self.k):
                dom.no_progress = dom.slow_memset_react = False

    def _do_balance(self, io: HostIO) -> Process:
        """do_balance: share Xen's free memory out; before each gift wait for the donors' memory."""
        self._refresh_memactual(io.view())
        self._clear_outdated_error_markers()
        xen_free = self._free(io)
        requests = balance(xen_free - self.free_left, self.doms, self.k)
        if not balance_is_significant(requests, xen_free, self.doms, self.free_left, self.k):
            return
        before = {qid: d.mem_actual for qid, d in self.doms.items()}
        for qid, target in requests:
            tries = BALANCE_TRIES
            while self._free(io) - (target - self.doms[qid].mem_actual) < 0.9 * self.free_left:
                yield io.sleep(self.params.balloon_delay)
                self._refresh_memactual(io.view())
                tries -= 1
                if tries <= 0:
                    self._mark_laggards(io, requests, qid, before)
                    self._mem_set(io, qid, self._free(io) + self.doms[qid].mem_actual - self.free_left)
                    return
            self._mem_set(io, qid, target)

    def _mark_laggards(self, io: HostIO, requests: list[Request], upto: str, before: dict[str, int | None]) -> None:
        """The donors asked before ``upto`` that still hold more than 12.5 MiB above their target:
        no_progress if they did not move at all, slow_memset_react if they moved too little."""
        for qid, target in requests:
            if qid == upto:
                break
            dom = self.doms[qid]
            if dom.mem_actual > dom.last_target + self.free_left / 4:
                stuck = before[qid] == dom.mem_actual
                kind = "no_progress" if stuck else "slow_memset_react"
                if not getattr(dom, kind):  # an event when the mark is set, not while it stays
                    setattr(dom, kind, True)
                    what = "did not react to" if stuck else "still holds more than"
                    pages = dom.mem_actual // PAGE_SIZE
                    io.report(kind, self.names[qid], pages, target // PAGE_SIZE, f"{what} its target")

    def _do_balloon(self, io: HostIO, size: int) -> Process:
        """do_balloon: ask the donors for ``size`` bytes (and the 50 MiB reserve) every balloon_delay;
        returns None once they are free, else why it gave up."""
        p = self.params
        for dom in self.doms.values():
            dom.no_progress = False
        check_period = max(1, p.check_period // p.balloon_delay)  # iterations
        check_delta = p.check_period * p.check_rate * PAGE_SIZE // NS_PER_S  # bytes
        ring = [0] * check_period  # the free memory check_period iterations ago
        asked: dict[str, int | None] = {}
        niter = 0
        while True:
            self._refresh_memactual(io.view())
            free = self._free(io)
            if free >= size + self.free_min:
                self._inhibit_balloon_up(io)
                return None
            slot = niter % check_period
            if niter >= check_period and free < ring[slot] + check_delta:
                return (
                    f"freed {(free - ring[slot]) // MiB} MiB in the last {format_ns(p.check_period)}, "
                    f"less than {check_delta // MiB} MiB"
                )
            ring[slot] = free
            for qid, actual in asked.items():
                dom = self.doms[qid]
                if actual == dom.mem_actual and not dom.no_progress:  # did not move: no donor any more
                    dom.no_progress = True
                    io.report("no_progress", self.names[qid], actual // PAGE_SIZE, -1, "did not react to its target")
            requests = balloon(size + self.free_left - free, self.doms, self.k)
            if not requests:
                short = (size + self.free_left - free) // MiB
                return f"the guests hold less than the {short} MiB still needed above their preferred memory"
            asked = {}
            for qid, target in requests:
                self._mem_set(io, qid, target)
                asked[qid] = self.doms[qid].mem_actual
            yield io.sleep(p.balloon_delay)
            niter += 1

    def _inhibit_balloon_up(self, io: HostIO) -> None:
        """A start's memory is free: no domain may still grow to a target it has not reached."""
        for qid, dom in self.doms.items():
            if dom.mem_actual is not None and dom.mem_actual + BALLOON_UP_MARGIN < dom.last_target:
                self._mem_set(io, qid, dom.mem_actual)

    def _report_goal(self, io: HostIO, free_bytes: int) -> None:
        io.report("goal", None, free_bytes // PAGE_SIZE, -1, "the free memory qmemman aims at (as it counts it)")
