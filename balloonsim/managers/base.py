"""What a host memory manager sees and does: snapshots in, toolstack actions out.

A manager is a pure decision, as squeezed's ``Squeeze`` module is kept apart
from the effects of ``squeeze_xen``: it reads a ``HostView`` (the host's free
memory, each domain's Xen accounting and xenstore keys, and what the guest
reports of itself) and returns actions; it never touches the simulation, so
a unit test can feed it numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

from balloonsim.scenario.model import ManagerParams


@dataclass(frozen=True)
class DomainView:
    name: str
    domid: int
    tot_pages: int  # Xen's accounting
    max_pages: int
    target_kib: int | None  # xenstore memory/target (None: not written)
    static_max_kib: int | None  # xenstore memory/static-max
    # what the guest itself reports (a guest agent, qmemman's meminfo): pages
    mem_available: int
    guest_free: int


@dataclass(frozen=True)
class HostView:
    time_ns: int
    total_pages: int
    free_pages: int
    domains: tuple[DomainView, ...]


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


Action = SetTarget | MemSet | SetMaxPages


class Manager(Protocol):
    """One host memory manager: its settings model, its cadence, its decision."""

    Params: ClassVar[type[ManagerParams]]

    def __init__(self, params: ManagerParams): ...

    @property
    def period_ns(self) -> int:
        """How often the daemon wakes to decide."""

    def decide(self, view: HostView) -> Sequence[Action]: ...
