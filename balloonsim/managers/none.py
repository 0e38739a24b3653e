"""No host memory manager: what plain ``xl`` does with ``autoballoon=0`` (the advice for hosts whose
dom0 has a fixed ``dom0_mem``; docs/man/xl.conf.5.pod).

Nothing sets the guests' targets but the scenario's own events.  A VM start asks Xen for the
domain's memory at once: the domain build populates it or fails with ENOMEM
(libxl__build_pre → xc_domain_setmaxmem, then the populate_physmap calls of the build), so
the start succeeds exactly when the host has that much free.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from balloonsim.managers.base import Process
from balloonsim.scenario.model import ManagerParams

if TYPE_CHECKING:
    from balloonsim.managers.process import HostIO


class NoManager:
    Params = ManagerParams

    def __init__(self, params: ManagerParams):
        self.params = params

    def daemon(self, io: HostIO) -> Process:
        return
        yield

    def make_room(self, io: HostIO, pages: int) -> Process:
        return io.free_pages >= pages
        yield
