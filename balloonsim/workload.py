"""What the guest's programs do with memory.

This is the minimal workload of the core model: scripted ``take`` and
``give`` of pages.  Programs allocate highmem first (GFP_HIGHUSER), and give
back the pages they took most recently.  Richer workloads (anonymous memory,
page cache, demand over time) will implement the same two operations.
"""

from __future__ import annotations

from balloonsim.kernel.mm import GuestMemory


class Workload:
    def __init__(self, mm: GuestMemory):
        self.mm = mm
        self._runs: list[tuple[int, int]] = []  # (lowmem, highmem) per allocation, oldest first
        self.pages = 0

    def take(self, count: int) -> int:
        """Allocate up to ``count`` pages (fewer if the guest runs out); the number taken."""
        low, high = self.mm.take(count)
        # highmem pages were taken before lowmem ones, so lowmem is the most recent
        if high:
            self._runs.append((0, high))
        if low:
            self._runs.append((low, 0))
        self.pages += low + high
        return low + high

    def give(self, count: int) -> int:
        """Free the ``count`` most recently taken pages (fewer if fewer are held)."""
        given = 0
        while given < count and self._runs:
            low, high = self._runs.pop()
            n = min(count - given, low + high)
            rest = low + high - n
            if rest:
                self._runs.append((rest, 0) if low else (0, rest))
            self.mm.give(n if low else 0, 0 if low else n)
            given += n
        self.pages -= given
        return given
