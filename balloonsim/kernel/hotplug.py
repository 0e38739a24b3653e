"""Memory hotplug, the parts the balloon driver uses (mm/memory_hotplug.c, kernel/resource.c).

* ``allocate_resource`` finds, first-fit and section-aligned, a free range of
  physical address space after boot RAM (and within ``max_added`` pages of
  hot-pluggable space, if limited).
* ``add_memory_resource`` creates the (unpopulated) pages of the range, their
  memmap allocated from the guest's own memory (``alloc_memmap``), and
  onlines them at once when auto-onlining is on; otherwise they wait for an
  ``online`` request.
* Onlining goes one memory block (one section) at a time, like
  ``online_pages``: the memory notifiers hear ``MEM_GOING_ONLINE``, the
  registered online-page callback receives the block's pages (the balloon
  driver's ``xen_online_page`` puts them in the balloon), the zones' reserves
  are computed again (``on_online``: ``init_per_zone_wmark_min``), then the
  notifiers hear ``MEM_ONLINE``.

A page is highmem when its pfn is at or above the lowmem boundary, hot-added
pages included.
"""

from __future__ import annotations

from collections.abc import Callable

from balloonsim.columns import Column
from balloonsim.kernel.interface import E2BIG, EINVAL, ENOMEM, MEM_GOING_ONLINE, MEM_ONLINE, Resource

OnlineCallback = Callable[[int, int], None]  # (lowmem pages, highmem pages) of one chunk
Notifier = Callable[[int], None]


class MemoryHotplug:
    COLUMNS = (Column("offline_pages"), Column("present_pages"))

    def __init__(
        self,
        *,
        boot_end_pfn: int,
        section_pages: int,
        auto_online: bool,
        split_by_zone: Callable[[int, int], tuple[int, int]],
        max_added: int | None,
        pluggable_end_pfn: int,
        on_event: Callable[[str, int, int], None],
        alloc_memmap: Callable[[int], bool],
        on_online: OnlineCallback,
    ):
        self.section_pages = section_pages
        self.auto_online = auto_online
        self.split_by_zone = split_by_zone
        self.boot_end_pfn = boot_end_pfn
        first = -(-boot_end_pfn // section_pages) * section_pages
        self.window_end = None if max_added is None else first + max_added
        self.pluggable_end_pfn = pluggable_end_pfn  # mhp_get_pluggable_range(): MAX_PHYSMEM_BITS
        self.resources: list[Resource] = []  # hot-added ranges, by address
        self.waiting: list[Resource] = []  # added, not yet onlined
        self.added_pages = 0
        self.offline_pages = 0
        self.online_page_callback: OnlineCallback | None = None
        self.notifiers: list[Notifier] = []
        self._on_event = on_event
        self._alloc_memmap = alloc_memmap  # (pages added) -> whether their struct pages could be allocated
        self._on_online = on_online  # (lowmem, highmem) pages of a block just onlined

    @property
    def present_pages(self) -> int:
        """Boot RAM (up to max_pfn) and every hot-added page, online or not."""
        return self.boot_end_pfn + self.added_pages

    def row_values(self) -> tuple[int, ...]:
        return (self.offline_pages, self.present_pages)

    def set_online_page_callback(self, callback: OnlineCallback) -> None:
        self.online_page_callback = callback

    def register_memory_notifier(self, notifier: Notifier) -> None:
        self.notifiers.append(notifier)

    def allocate_resource(self, pages: int) -> Resource | None:
        """First fit, aligned to a section, above boot RAM; None when no range fits (-EBUSY)."""
        align = self.section_pages
        lo = self.boot_end_pfn
        for res in [*self.resources, None]:
            hi = res.start_pfn if res is not None else None
            start = -(-lo // align) * align
            fits_gap = hi is None or start + pages <= hi
            fits_window = self.window_end is None or start + pages <= self.window_end
            if fits_gap and fits_window:
                new = Resource(start, pages)
                self.resources.append(new)
                self.resources.sort(key=lambda r: r.start_pfn)
                return new
            if res is not None:
                lo = res.end_pfn
        return None

    def release_resource(self, res: Resource) -> None:
        self.resources.remove(res)

    def add_memory_resource(self, res: Resource) -> int:
        """Create the range's pages; online them now if auto-onlining.  0 or -errno."""
        if res.start_pfn % self.section_pages or res.pages % self.section_pages:
            return -EINVAL  # check_hotplug_memory_range()
        if res.end_pfn > self.pluggable_end_pfn:
            return -E2BIG  # mhp_range_allowed(): beyond the maximum addressable range (mm/memory_hotplug.c)
        if not self._alloc_memmap(res.pages):
            return -ENOMEM  # arch_add_memory() -> sparse_add_section(): no memory for the memmap
        self.added_pages += res.pages
        self.offline_pages += res.pages
        self._on_event("hotplug_add", res.pages, res.start_pfn)
        if self.auto_online:
            self.online_range(res)
        else:
            self.waiting.append(res)
        return 0

    def online_waiting(self) -> int:
        """Online every range that waits; the number of pages onlined."""
        waiting, self.waiting = self.waiting, []
        for res in waiting:
            self.online_range(res)
        return sum(r.pages for r in waiting)

    def online_range(self, res: Resource) -> None:
        assert self.online_page_callback is not None, "no online-page callback registered"
        for block in range(res.start_pfn, res.end_pfn, self.section_pages):
            end = min(block + self.section_pages, res.end_pfn)
            low, high = self.split_by_zone(block, end)
            for notifier in list(self.notifiers):
                notifier(MEM_GOING_ONLINE)
            self.offline_pages -= end - block
            self.online_page_callback(low, high)
            self._on_event("online", end - block, block)
            self._on_online(low, high)
            for notifier in list(self.notifiers):
                notifier(MEM_ONLINE)
