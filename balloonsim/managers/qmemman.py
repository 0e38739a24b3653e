"""Qubes OS qmemman's decision: who should hold how much memory (``qubes/qmemman/algo.py``).

Pure functions over qmemman's own domain records, in bytes, as upstream computes them:
Python floats where it multiplies, ``int()`` (truncation toward zero) where it rounds, and the
records in dict insertion order, which decides the order of the requests.  The daemon around
them (reading Xen and xenstore, the guests' meminfo-writer, mem-set) is ``qmemman_daemon``.

A domain's preferred memory is what it uses (its meminfo-writer's MemTotal - MemFree - Buffers -
Cached + swap in use) times ``cache_factor``, within [``min_prefmem``, its maximum]; dom0 gets
``dom0_mem_boost`` on top instead of the floor.  ``balance`` shares out Xen's free memory in
proportion to the preferred sizes when there is enough for everyone, else brings the donors down
to their preference; ``balloon`` takes what a starting VM needs from the donors, in proportion to
what each holds beyond its preference.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MiB = 1024 * 1024

#: a request: (domain id, the memory target to set, bytes)
Request = tuple[str, int]


@dataclass(frozen=True)
class Constants:
    """algo.py's module constants, which qmemmand overrides from qmemman.conf."""

    cache_factor: float = 1.3  # CACHE_FACTOR (cache-margin-factor)
    min_prefmem: int = 200 * MiB  # MIN_PREFMEM (vm-min-mem)
    dom0_mem_boost: int = 350 * MiB  # DOM0_MEM_BOOST (dom0-mem-boost)
    req_safety_net_factor: float = 1.05  # REQ_SAFETY_NET_FACTOR


DEFAULTS = Constants()


@dataclass
class DomainState:
    """One domain as qmemman tracks it (``qubes/qmemman/domainstate.py``), bytes."""

    domid: str  # "0" is dom0
    mem_used: int | None = None  # from the guest's memory/meminfo; None: none published (or malformed)
    mem_current: int = 0  # Xen's tot_pages
    mem_actual: int | None = None  # max(mem_current, last_target): what it holds or may take at any time
    mem_max: int | None = None  # memory/static-max (all the host's memory when there is none)
    last_target: int = 0  # the last mem-set (from memory/target when qmemman first saw it)
    no_progress: bool = False  # did not react to a mem-set: no donor until it does
    slow_memset_react: bool = False  # reacted, but is still above what it was asked

    @property
    def balanced(self) -> bool:
        """Taken into account by every function here: it publishes meminfo and reacts to mem-sets."""
        return self.mem_used is not None and not self.no_progress


def sanitize_and_parse_meminfo(untrusted: bytes) -> int | None:
    """memory/meminfo as the guest wrote it (KiB, digits only) in bytes; None when empty or malformed."""
    if not untrusted or not untrusted.isdigit():
        return None
    return int(untrusted) * 1024


def pref_mem(dom: DomainState, k: Constants = DEFAULTS) -> int:
    """The memory the domain should have: its use plus a cache margin, within its maximum."""
    used = dom.mem_used * k.cache_factor
    if dom.domid == "0":  # dom0 holds the disks' cache: a boost, and no floor
        return int(min(used + k.dom0_mem_boost, dom.mem_max))
    return int(max(min(used, dom.mem_max), k.min_prefmem))


def needed_mem(dom: DomainState, k: Constants = DEFAULTS) -> int:
    """How far the domain is below its preference (negative: what it could give)."""
    return pref_mem(dom, k) - dom.mem_actual


def balloon(size: int, doms: Mapping[str, DomainState], k: Constants = DEFAULTS) -> list[Request]:
    """Targets that free ``size`` bytes from the domains above their preference, each giving in
    proportion to its surplus (5% more, for rounding); [] when their surplus is too small."""
    donors = []
    available = 0
    for domid, dom in doms.items():
        if not dom.balanced:
            continue
        need = needed_mem(dom, k)
        if need < 0:
            donors.append((domid, -need))
            available -= need
    if available < size:
        return []
    scale = 1.0 * size / available
    return [(domid, int(doms[domid].mem_actual - offer * scale * k.req_safety_net_factor)) for domid, offer in donors]


@dataclass(frozen=True)
class MemInfo:
    """``mem_info``'s first pass over the domains: totals, donors and acceptors."""

    total_available: int  # xen_free - Σ need: what is left once everyone is at its preference
    total_pref: int
    total_pref_acceptors: int
    donors: list[str]
    acceptors: list[str]


def mem_info(xen_free: int, doms: Mapping[str, DomainState], k: Constants = DEFAULTS) -> MemInfo:
    total_need = total_pref = total_pref_acceptors = 0
    donors, acceptors = [], []
    for domid, dom in doms.items():
        if not dom.balanced:
            continue
        need = needed_mem(dom, k)
        pref = pref_mem(dom, k)
        if need < 0 or dom.mem_actual >= dom.mem_max:
            donors.append(domid)
        else:
            acceptors.append(domid)
            total_pref_acceptors += pref
        total_need += need
        total_pref += pref
    return MemInfo(xen_free - total_need, total_pref, total_pref_acceptors, donors, acceptors)


def balance(xen_free: int, doms: Mapping[str, DomainState], k: Constants = DEFAULTS) -> list[Request]:
    """The targets that share ``xen_free`` bytes (Xen's free memory less what qmemman keeps free)
    out among the domains: donors' requests first, so that memory is freed before it is given."""
    info = mem_info(xen_free, doms, k)
    if info.total_available > 0:
        return balance_when_enough_mem(doms, xen_free, info.total_pref, info.total_available, k)
    return balance_when_low_on_mem(doms, xen_free, info.total_pref_acceptors, info.donors, info.acceptors, k)


def balance_when_enough_mem(
    doms: Mapping[str, DomainState], xen_free: int, total_pref: int, total_available: int, k: Constants = DEFAULTS
) -> list[Request]:
    """Everyone can have its preference: share ``total_available`` in proportion to the preferences
    (0.999 of it, against rounding), capped at each maximum, handing what a cap leaves to the others.

    ``xen_free`` is unused, as upstream's."""
    targets: dict[str, int] = {}
    left = 0  # what the maximums did not let us give
    acceptors = 0
    for domid, dom in doms.items():
        if not dom.balanced:
            continue
        pref = pref_mem(dom, k)
        target = int(0.999 * (pref + 1.0 * pref / total_pref * total_available))
        if target > dom.mem_max:
            left += target - dom.mem_max
            target = dom.mem_max
        else:
            acceptors += 1
        targets[domid] = target
    while left > 0 and acceptors > 0:
        # each pass hands out an even share of what is left, as it stood when the pass began
        next_left, next_acceptors = 0, acceptors
        for domid, target in targets.items():
            mem_max = doms[domid].mem_max
            if target < mem_max:
                bonus = int(0.999 * (left / acceptors))
                if target + bonus >= mem_max:
                    next_left += target + bonus - mem_max
                    targets[domid] = mem_max
                    next_acceptors -= 1
                else:
                    targets[domid] = target + bonus
        left, acceptors = next_left, next_acceptors
    donors = [(d, t) for d, t in targets.items() if t < doms[d].mem_actual]
    takers = [(d, t) for d, t in targets.items() if t >= doms[d].mem_actual]
    return donors + takers


def balance_when_low_on_mem(
    doms: Mapping[str, DomainState],
    xen_free: int,
    total_pref_acceptors: int,
    donors: list[str],
    acceptors: list[str],
    k: Constants = DEFAULTS,
) -> list[Request]:
    """Not enough for every preference: each donor with 10 MiB or more to spare goes down to its
    preference, and what remains of ``xen_free`` is shared among the acceptors by preference.

    Upstream *subtracts* the donors' surplus from the pool (its comment reads as if it meant to
    add it), so the acceptors get nothing unless Xen's free memory covers the donors' surplus too;
    the port keeps that (test_250 pins it)."""
    requests = []
    squeezed = xen_free
    for domid in donors:
        dom = doms[domid]
        spare = -needed_mem(dom, k)
        if spare < 10 * MiB:  # probably already asked to be at its preference
            continue
        squeezed -= spare
        requests.append((domid, pref_mem(dom, k)))
    if squeezed < 0:
        return requests
    for domid in acceptors:
        dom = doms[domid]
        share = 1.0 * pref_mem(dom, k) / total_pref_acceptors * squeezed
        requests.append((domid, min(int(0.999 * (dom.mem_actual + share)), dom.mem_max)))
    return requests
