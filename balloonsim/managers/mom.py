"""oVirt MoM (Memory Overcommitment Manager) running vdsm's balloon policy.

The policy is oVirt/vdsm ``static/etc/vdsm/mom.d/02-balloon.policy`` (the
rules MoM evaluates on an oVirt host), in KiB as MoM and vdsm count.  It
runs every ``policy_engine_interval`` over what MoM's monitors sampled every
5 s, keeping the last ``sample_history_length`` samples per entity
(``mom/Monitor.py``): ``StatAvg`` is the mean of a field over the retained
samples, a plain field (``guest.balloon_cur``) the latest sample
(``mom/Entity.py``).  So the host's free memory and a guest's unused memory
are moving averages over about 50 s.

``policy: balloon-rules`` runs MoM's own sample rules instead
(oVirt/mom ``doc/balloon.rules``, stored version ``e0f3d3b``): no
balloonEnabled switch, no missing-data guard and no guaranteed-memory pass,
and a guest grows to keep a fixed 20 % free.

On a Xen host the samples are the Xen counterparts of what MoM reads on KVM:

* host ``mem_free``: Xen's free memory (``xl info`` free_memory), KiB.  MoM's
  ``HostMemory`` collector reads MemFree + Buffers + Cached of the host kernel,
  the memory a new guest could get after dropping caches; on Xen that is the
  hypervisor's free pool.  ``mem_available``: the host's total memory, KiB
  (MoM's MemTotal);
* guest ``balloon_cur``: tot_pages in KiB (libvirt's current memory);
  ``mem_unused``: the guest's MemFree, KiB (its balloon statistics);
  ``balloon_min``: its ``dynamic_min`` (oVirt's guaranteed memory);
  ``balloon_max``: its ``dynamic_max`` (the VM's memory).

Each request is a ``MemSet``: vdsm's ``setVmBalloonTarget`` calls libvirt's
``virDomainSetMemory``, which the libxl driver carries out with
``libxl_set_memory_target(ctx, domid, kib, 0, /* force */ 1)``
(libvirt ``src/libxl/libxl_driver.c``, ``libxlDomainSetMemoryFlags``), so Xen's
max_pages follows the target as with ``xl mem-set``, not a bare xenstore write.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from balloonsim.managers.base import DomainView, HostView, MemSet, PeriodicManager, Process
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import Nanoseconds
from balloonsim.units import pages_to_kib

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO

#: the policy's own shift under critical pressure: a guest's free share goes negative below 5 %
#: host free, which forces it to swap (02-balloon.policy: ``(+ -0.05 host_free_percent)``)
CRITICAL_FREE_SHIFT = -0.05


class MomParams(ManagerParams):
    policy: Literal["vdsm", "balloon-rules"] = Field(
        "vdsm",
        description="vdsm: vdsm's 02-balloon.policy (oVirt's); balloon-rules: MoM's own sample doc/balloon.rules "
        "(no balloon_enabled switch, no missing-data guard, no guaranteed-memory pass)",
    )
    balloon_enabled: bool = Field(
        True,
        description="the cluster's memory balloon optimization (vdsm's balloonEnabled, which 00-defines.policy "
        "leaves at 0 until the engine sets it; on here, as for a cluster with ballooning): off, guests only grow",
    )
    pressure_threshold: float = Field(
        0.20, ge=0, le=1, description="host free memory (fraction of its total) below which guests shrink"
    )
    pressure_critical: float = Field(
        0.05, ge=0, le=1, description="host free memory (fraction) at or below which guests are pushed to swap"
    )
    min_guest_free_percent: float = Field(
        0.20, ge=0, le=1, description="the free memory (fraction of its size) a guest keeps when the host has room"
    )
    max_balloon_change_percent: float = Field(
        0.05, ge=0, le=1, description="the most a guest's size changes in one policy run (fraction of its size)"
    )
    min_balloon_change_percent: float = Field(
        0.0025, ge=0, le=1, description="a smaller change than this (fraction of its size) is not made"
    )
    host_monitor_interval: Nanoseconds = Field("5s", gt=0, description="how often the host is sampled")
    guest_monitor_interval: Nanoseconds = Field("5s", gt=0, description="how often each guest is sampled")
    policy_engine_interval: Nanoseconds = Field(
        "10s", gt=0, description="how often the policy runs (first run one interval after start)"
    )
    sample_history_length: int = Field(10, ge=1, description="samples kept per host and guest for the averages")
    start_timeout: Nanoseconds = Field(
        "0s", ge=0, description="how long a VM start waits for the free memory (MoM frees none on request)"
    )


# -- what the monitors keep ------------------------------------------------------------------


@dataclass(frozen=True)
class HostSample:
    """One HostMonitor sample, KiB."""

    mem_free: int
    mem_available: int


@dataclass(frozen=True)
class GuestSample:
    """One GuestMonitor sample, KiB.  balloon_* are GuestBalloon's mandatory fields (a sample without
    them is not kept); mem_unused is an optional field, None when the guest did not report it."""

    balloon_cur: int
    balloon_min: int
    balloon_max: int
    mem_unused: int | None


def stat_avg(samples: Sequence[HostSample] | Sequence[GuestSample], name: str) -> float:
    """``Entity.StatAvg``: the mean over the retained samples that have the field; 0.0 if none has it.
    A true division, as MoM computes it under Python 3 (the Python 2 MoM floored the integer mean)."""
    values = [v for v in (getattr(s, name) for s in samples) if v is not None]
    return sum(values) / len(values) if values else 0.0


# -- the policy ------------------------------------------------------------------------------


def balloon_policy(
    host: Sequence[HostSample], guests: Mapping[str, Sequence[GuestSample]], p: MomParams
) -> dict[str, int]:
    """One policy run: the balloon target (KiB) MoM's Balloon controller sets, per guest.

    ``host`` and each guest's history: the retained samples, oldest first.  Requests are a map per
    guest, so the last one a run makes wins; the controller truncates each to int
    (``mom/Controllers/Balloon.py``).
    """
    host_free = stat_avg(host, "mem_free") / host[-1].mem_available
    under_pressure = host_free < p.pressure_threshold
    requests: dict[str, float] = {}
    if p.policy == "balloon-rules":
        for name, history in guests.items():
            g = history[-1]
            size = (
                _shrink(g, history, host_free, p) if under_pressure else _grow(g, history, p.min_guest_free_percent, p)
            )
            if size is not None:
                requests[name] = size
        return {name: int(size) for name, size in requests.items()}

    for name, history in guests.items():
        g = history[-1]
        if g.mem_unused is None:  # (valid guest.balloon_cur (guest.Stat "mem_unused")): "ballooning disabled"
            continue
        if under_pressure and p.balloon_enabled:
            size = _shrink(g, history, host_free, p)
        else:  # also every guest when ballooning is off: balloons only deflate
            size = _grow(g, history, guest_free_percent(host_free, p), p)
        if size is not None:
            requests[name] = size
    for name, history in guests.items():  # the guaranteed-memory rule runs second and overwrites
        g = history[-1]
        if g.balloon_cur < g.balloon_min:
            requests[name] = g.balloon_min
    return {name: int(size) for name, size in requests.items()}


def guest_free_percent(host_free: float, p: MomParams) -> float:
    """The free share a guest keeps, scaled back with the host's (negative at critical pressure)."""
    if host_free <= p.pressure_critical:
        return CRITICAL_FREE_SHIFT + host_free
    return p.min_guest_free_percent * (host_free / p.pressure_threshold)


def _floor(g: GuestSample, history: Sequence[GuestSample], free_percent: float) -> float:
    """The size a guest needs: what it uses (averaged) plus its free share, at least its guaranteed memory."""
    used = stat_avg(history, "balloon_cur") - stat_avg(history, "mem_unused")
    return max(g.balloon_min, used + free_percent * g.balloon_cur)


def _big_enough(g: GuestSample, size: float, p: MomParams) -> bool:
    """``change_big_enough``: a change worth a balloon operation."""
    return abs(size - g.balloon_cur) > p.min_balloon_change_percent * g.balloon_cur


def _shrink(g: GuestSample, history: Sequence[GuestSample], host_free: float, p: MomParams) -> float | None:
    """``shrink_guest``: at most max_balloon_change_percent down, never below the floor, never up."""
    floor = _floor(g, history, guest_free_percent(host_free, p))
    size = g.balloon_cur * (1 - p.max_balloon_change_percent)
    if size < floor:
        size = floor
    return size if size <= g.balloon_cur and _big_enough(g, size, p) else None


def _grow(g: GuestSample, history: Sequence[GuestSample], free_percent: float, p: MomParams) -> float | None:
    """``grow_guest``: a ballooned guest grows by max_balloon_change_percent, or to its floor, up to its max."""
    if g.balloon_cur >= g.balloon_max:
        return None
    size = g.balloon_cur * (1 + p.max_balloon_change_percent)
    floor = _floor(g, history, free_percent)
    if size < floor:
        size = floor
    if size > g.balloon_max:
        size = g.balloon_max
    return size if _big_enough(g, size, p) else None


# -- the daemon ------------------------------------------------------------------------------


def host_sample(view: HostView) -> HostSample:
    return HostSample(mem_free=pages_to_kib(view.free_pages), mem_available=pages_to_kib(view.total_pages))


def guest_sample(d: DomainView) -> GuestSample:
    return GuestSample(
        balloon_cur=pages_to_kib(d.tot_pages),
        balloon_min=pages_to_kib(d.dynamic_min_pages),
        balloon_max=pages_to_kib(d.dynamic_max_pages),
        mem_unused=pages_to_kib(d.mem_free),
    )


class Mom(PeriodicManager):
    """MoM's threads: a host monitor and one monitor per guest sampling every 5 s, and the policy
    engine, which sleeps 10 s and then runs the policy (``mom/PolicyEngine.py``: the sleep comes
    first, so the first run is at 10 s).  The threads are independent; at an instant they share,
    the monitors sample first, so a run averages every sample retained up to and including that
    instant.  MoM frees no memory on request: a VM start waits ``start_timeout`` for it."""

    Params = MomParams

    def __init__(self, params: MomParams):
        self.params = params
        self.period_ns = params.policy_engine_interval
        self.start_timeout_ns = params.start_timeout

    def daemon(self, io: HostIO) -> Process:
        p = self.params
        host: deque[HostSample] = deque(maxlen=p.sample_history_length)
        guests: dict[str, deque[GuestSample]] = {}
        view = io.view()
        shrink_below = int(p.pressure_threshold * view.total_pages)
        io.report("goal", None, shrink_below, message="guests shrink while the host's averaged free memory is below")
        next_host = next_guest = 0
        next_policy = p.policy_engine_interval
        while True:
            view = io.view()
            if io.now == next_host:
                host.append(host_sample(view))
                next_host += p.host_monitor_interval
            if io.now == next_guest:
                # a guest's monitor ends with the guest; a new guest's monitor starts sampling
                guests = {d.name: guests.get(d.name, deque(maxlen=p.sample_history_length)) for d in view.domains}
                for d in view.domains:
                    guests[d.name].append(guest_sample(d))
                next_guest += p.guest_monitor_interval
            if io.now == next_policy:
                running = {d.name for d in view.domains}
                sampled = {name: h for name, h in guests.items() if name in running}
                requests = balloon_policy(host, sampled, p)
                io.apply_all(MemSet(name, kib) for name, kib in requests.items())
                next_policy += p.policy_engine_interval
            yield io.sleep(min(next_host, next_guest, next_policy) - io.now)
