"""What a host memory manager sees and does: snapshots in, toolstack actions out.

A manager is kept in two parts, as squeezed keeps its ``Squeeze`` module apart
from the effects of ``squeeze_xen``:

* a pure decision over a ``HostView`` (the host's free memory, each domain's
  Xen accounting and xenstore keys, and what the guest reports of itself),
  returning actions; it never touches the simulation, so a unit test can
  feed it the upstream project's own numbers;
* a daemon (``Manager.daemon``) and a VM-start request (``Manager.make_room``),
  SimPy processes that read the host through ``managers.process.HostIO`` at
  the real daemon's cadence, apply the decisions, and wait as it waits.

Sizes in the views are pages; each manager converts to its own unit (KiB,
bytes) where its arithmetic needs it.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from balloonsim.scenario.model import ManagerParams
from balloonsim.units import KIB_PER_PAGE

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO


@dataclass(frozen=True)
class DomainView:
    """One running domain, as a manager in dom0 can read it."""

    name: str
    domid: int
    initial_domain: bool  # dom0 (the domain the scenario marks initial_domain)
    # Xen's accounting
    tot_pages: int
    max_pages: int
    # xenstore, as the toolstack wrote it (KiB; None: not written)
    target_kib: int | None
    static_max_kib: int | None
    # the range an administrator lets the manager use (xapi's memory/dynamic-min and -max, Proxmox's
    # balloon floor and maxmem, MoM's guaranteed memory and maximum), and the domain's weight
    dynamic_min_pages: int
    dynamic_max_pages: int
    shares: int
    # what the guest reports of itself (a guest agent, qmemman's meminfo-writer, virtio stats), pages
    mem_total: int  # MemTotal
    mem_free: int  # MemFree
    mem_cached: int  # Buffers + Cached (page cache) + reclaimable slab
    mem_available: int  # MemAvailable
    swap_used: int  # SwapTotal - SwapFree

    @property
    def target_pages(self) -> int | None:
        return None if self.target_kib is None else self.target_kib // KIB_PER_PAGE

    @property
    def used_pages(self) -> int:
        """What qmemman's meminfo-writer publishes: MemTotal - MemFree - Buffers - Cached + swap in use."""
        return self.mem_total - self.mem_free - self.mem_cached + self.swap_used


@dataclass(frozen=True)
class HostView:
    time_ns: int
    total_pages: int
    free_pages: int
    domains: tuple[DomainView, ...]

    def domain(self, name: str) -> DomainView:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(name)


@dataclass(frozen=True)
class SetTarget:
    """Write ``memory/target`` (KiB) in xenstore."""

    domain: str
    kib: int


@dataclass(frozen=True)
class MemSet:
    """``libxl_set_memory_target``: max_pages follows the target, then ``memory/target``."""

    domain: str
    kib: int


@dataclass(frozen=True)
class SetMaxPages:
    """``xc_domain_setmaxmem``."""

    domain: str
    pages: int


@dataclass(frozen=True)
class SetPodTarget:
    """``xc_domain_set_pod_target``: size a PoD guest's cache for a target of ``pages`` (nothing for
    a PV guest, which has no PoD)."""

    domain: str
    pages: int


Action = SetTarget | MemSet | SetMaxPages | SetPodTarget

#: a SimPy process body: yields events, returns a value
Process = Generator[Any, Any, Any]


class Manager(Protocol):
    """One host memory manager: its settings model, its daemon, and how it makes room for a VM."""

    Params: ClassVar[type[ManagerParams]]

    def __init__(self, params: ManagerParams): ...

    def daemon(self, io: HostIO) -> Process:
        """The manager's own loop, from t=0 to the end of the run."""

    def make_room(self, io: HostIO, pages: int) -> Process:
        """A VM start asks for ``pages`` free on the host: free them by the manager's rules and
        return True once they are free, or False when the manager gives up (its own timeouts)."""


class PeriodicManager:
    """A manager whose daemon decides every ``period_ns`` (Proxmox's pvestatd pass, a toy policy),
    and which makes room for a VM only by what its periodic decisions free: a start waits
    ``start_timeout_ns`` for the memory, checking at each period."""

    period_ns: int
    start_timeout_ns: int = 0

    def decide(self, view: HostView) -> Sequence[Action]:
        raise NotImplementedError

    def daemon(self, io: HostIO) -> Process:
        while True:
            io.apply_all(self.decide(io.view()))
            yield io.sleep(self.period_ns)

    def make_room(self, io: HostIO, pages: int) -> Process:
        give_up = io.now + self.start_timeout_ns
        while io.free_pages < pages:
            if io.now >= give_up:
                return False
            yield io.sleep(min(self.period_ns, give_up - io.now))
        return True
