"""The toolstack (libxl) side of memory: the domain build, and what ``xl`` writes, and where.

A guest learns its target only from xenstore's ``memory/target`` (KiB).  The
toolstack writes it plainly (``xenstore-write``), or through ``xl mem-set``
= ``libxl_set_memory_target(domid, kb, relative=0, enforce=1)``
(tools/libs/light/libxl_mem.c), which also lowers or raises Xen's
``max_pages`` to the new target plus ``LIBXL_MAXMEM_CONSTANT`` (1 MiB on x86),
so a guest can populate at most about 1 MiB above its target, and for a
non-PV guest sets the populate-on-demand target.

The build follows libxl with ``memory`` = xl's ``memory=`` (``target_memkb``), ``static-max`` =
``maxmem=`` (``max_memkb``) and ``videoram`` (``video_memkb``, part of both):

* Xen's ``max_pages`` = memory + LIBXL_MAXMEM_CONSTANT (``libxl__build_pre``, libxl_dom.c;
  ``libxl__arch_extra_memory``, libxl_x86.c);
* ``memory/target`` = memory - fudge, the fudge being the video RAM, plus LIBXL_MAXMEM_CONSTANT
  for an HVM guest whose maxmem is above its memory (``libxl__build_post``,
  ``libxl__get_targetmem_fudge``, libxl_internal.h); ``memory/static-max`` = maxmem;
  ``memory/videoram``;
* an HVM/PVH guest has maxmem - videoram of RAM, populated in full, or with PoD
  (``xen/pod.py``) when memory < maxmem: its PoD cache is memory - videoram pages
  (``libxl__build_hvm``); the device model populates the video RAM besides, so ``tot_pages``
  starts at ``memory`` either way.
"""

from __future__ import annotations

from balloonsim.units import kib_to_pages, pages_to_kib
from balloonsim.xen.hypervisor import Domain, Host
from balloonsim.xen.pod import PodPool
from balloonsim.xen.xenstore import XenStore

TARGET = "memory/target"
STATIC_MAX = "memory/static-max"
XEND_STATIC_MAX = "memory/memory_static_max"
VIDEORAM = "memory/videoram"
#: where each toolstack writes static-max
STATIC_MAX_KEY = {"libxl": STATIC_MAX, "xend": XEND_STATIC_MAX}
LIBXL_MAXMEM_CONSTANT_KIB = 1024
LIBXL_MAXMEM_CONSTANT_PAGES = kib_to_pages(LIBXL_MAXMEM_CONSTANT_KIB)


def libxl_max_pages(memory: int) -> int:
    """Xen's max_pages at build: memory= plus LIBXL_MAXMEM_CONSTANT (libxl__build_pre)."""
    return memory + LIBXL_MAXMEM_CONSTANT_PAGES


def libxl_targetmem_fudge(domain_type: str, memory: int, static_max: int, videoram: int) -> int:
    """What the build's memory/target leaves out of memory=, in pages (libxl__get_targetmem_fudge)."""
    hvm_pod_slack = LIBXL_MAXMEM_CONSTANT_PAGES if domain_type == "hvm" and static_max > memory else 0
    return videoram + hvm_pod_slack


def libxl_uses_pod(domain_type: str, memory: int, static_max: int) -> bool:
    """libxl__domain_config_setdefault: a non-PV guest with target_memkb < max_memkb is built with PoD."""
    return domain_type != "pv" and memory < static_max


class Toolstack:
    def __init__(self, host: Host, xenstore: XenStore):
        self.host = host
        self.xenstore = xenstore
        self._static_max_key: dict[int, str] = {}  # domid -> its toolstack's key

    def create_domain(
        self,
        name: str,
        *,
        memory_pages: int,
        max_pages: int,
        static_max_pages: int | None,
        initial_target_kib: int | None,
        videoram_pages: int = 0,
        pod_entries: int = 0,
        pv: bool = False,
        kind: str = "libxl",
        from_free: bool = False,
    ) -> Domain:
        """Build a domain with its memory, then write its memory keys to xenstore as the toolstack does.

        ``pod_entries``: the guest's RAM when it is built with PoD (0: populated in full); its PoD
        cache is then memory less the video RAM the device model populates.  libxl writes
        ``memory/static-max``, ``memory/target`` and ``memory/videoram`` (libxl__build_post,
        tools/libs/light/libxl_dom.c); xend (``kind="xend"``) wrote static-max as
        ``memory/memory_static_max``.  None leaves a key unwritten.

        ``from_free``: a domain built during the run takes its pages from Xen's free memory (the
        domains of t=0 from the host's total; see ``Host.create_domain``).
        """
        pod = PodPool(pod_entries, memory_pages - videoram_pages) if pod_entries else None
        dom = self.host.create_domain(name, memory_pages, max_pages, pod, pv, from_free)
        self._static_max_key[dom.domid] = STATIC_MAX_KEY[kind]
        if static_max_pages is not None:
            self.xenstore.write(dom.domid, STATIC_MAX_KEY[kind], str(pages_to_kib(static_max_pages)))
        if kind == "libxl":
            self.xenstore.write(dom.domid, VIDEORAM, str(pages_to_kib(videoram_pages)))
        if initial_target_kib is not None:
            self.write_target(dom, initial_target_kib)
        return dom

    def static_max_kib(self, dom: Domain) -> int | None:
        """The domain's static-max (KiB) where its toolstack wrote it; None if it did not."""
        return self._read_kib(dom, self._static_max_key[dom.domid])

    def target_kib(self, dom: Domain) -> int | None:
        """The domain's ``memory/target`` (KiB); None if none was written."""
        return self._read_kib(dom, TARGET)

    def _read_kib(self, dom: Domain, key: str) -> int | None:
        text = self.xenstore.read(dom.domid, key)
        return int(text) if text is not None and text.isdigit() else None

    def write_target(self, dom: Domain, target_kib: int) -> None:
        """xenstore-write memory/target (KiB)."""
        self.xenstore.write(dom.domid, TARGET, str(target_kib))

    def set_memory_target(self, dom: Domain, target_kib: int, *, enforce: bool = True) -> str | None:
        """``xl mem-set``: returns None on success, else libxl's error message."""
        if dom.destroyed:
            return f"domain {dom.domid} does not exist: it crashed and was destroyed"
        static_max = self.xenstore.read(dom.domid, STATIC_MAX)
        if self.xenstore.read(dom.domid, TARGET) is None:
            return f"Cannot get target memory info from {TARGET}"
        if static_max is None:
            return f"Cannot get memory info from {STATIC_MAX}"
        videoram = int(self.xenstore.read(dom.domid, VIDEORAM) or 0)
        new_target_kib = target_kib - videoram
        if new_target_kib > int(static_max):
            return "memory_dynamic_max must be less than or equal to memory_static_max"
        if enforce:  # xc_domain_setmaxmem takes KiB; Xen keeps pages
            self.host.set_max_pages(dom, kib_to_pages(new_target_kib + videoram + LIBXL_MAXMEM_CONSTANT_KIB))
        if not dom.pv:  # xc_domain_set_pod_target takes pages: (KiB + size) / 4
            self.host.pod_set_target(dom, kib_to_pages(new_target_kib + LIBXL_MAXMEM_CONSTANT_KIB))
        self.write_target(dom, new_target_kib)
        return None

    def destroy_domain(self, dom: Domain) -> int:
        """``xl destroy`` (also xl's default ``on_crash``): Xen frees the domain's pages; returns how many."""
        self.xenstore.remove_domain(dom.domid)
        return self.host.destroy_domain(dom)
