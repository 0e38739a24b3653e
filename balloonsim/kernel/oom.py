"""The OOM killer's choice of victim (mm/oom_kill.c, v5.12).

``oom_badness()`` scores a task by the memory killing it would free: its
resident pages, its swap entries and its page tables, plus
``oom_score_adj`` thousandths of all memory (RAM and swap).  A task with
``oom_score_adj = -1000`` is never chosen; ``1000`` makes it the first
choice.  ``oom_evaluate_task()`` keeps the highest score, and a later task
with an equal score replaces the one chosen so far.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol, TypeVar

OOM_SCORE_ADJ_MIN = -1000
PTRS_PER_PTE = 512  # one page-table page maps 512 pages (x86_64, arm64 4 KiB)


class Victim(Protocol):
    """What the OOM killer reads of a task."""

    killed: bool
    oom_score_adj: int
    swapped: int

    @property
    def resident(self) -> int: ...


V = TypeVar("V", bound=Victim)


def oom_badness(task: Victim, totalpages: int) -> int | None:
    """The task's score, or None when it cannot be killed (no memory, or -1000)."""
    if task.killed or task.oom_score_adj == OOM_SCORE_ADJ_MIN:
        return None
    pages = task.resident + task.swapped
    if not pages:
        return None  # a task without an mm (nothing to free)
    pgtables = -(-pages // PTRS_PER_PTE)  # mm_pgtables_bytes / PAGE_SIZE, for this many mapped pages
    return pages + pgtables + task.oom_score_adj * (totalpages // 1000)


def select_bad_process(tasks: Iterable[V], totalpages: int) -> V | None:
    chosen, chosen_points = None, None
    for task in tasks:
        points = oom_badness(task, totalpages)
        if points is None or (chosen_points is not None and points < chosen_points):
            continue
        chosen, chosen_points = task, points
    return chosen
