"""Small SimPy helpers: event priorities, prioritised timers, synchronous starts.

SimPy orders events at the same instant by priority, then by creation.  The
model uses three levels so that, as in the kernel, every external event at an
instant takes effect before a delayed work due at that instant runs, and the
run ends only after both.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from heapq import heappop
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import NORMAL, URGENT, Event

EVENT = NORMAL  # scripted events, wake-ups (SimPy's default timeouts)
WORK = NORMAL + 1  # delayed-work expiries: after the events of the same instant
END = NORMAL + 2  # the end of the run: after everything due at that instant


def work_priority(index: int, domains: int) -> float:
    """The priority of domain ``index``'s kernel work (its worker's timers, its loop turns).

    Between ``WORK`` and ``END``, one band per domain: two guests' work due at the same instant runs
    in domain order, not in the order SimPy happened to schedule it, so a run of loop turns done
    at once (``kernel/lazy_turns.py``) knows exactly which of its turns came before any other
    event at that instant.  (Two guests' vCPUs run at once; which goes first is the model's choice.)
    """
    return WORK + (index + 1) / (domains + 1)


class Environment(simpy.Environment):
    """SimPy's environment, also telling how far into the present instant the run is.

    ``reached``: the highest priority of the events processed so far at this instant.  SimPy pops
    events of one instant in priority order, except those scheduled during it, so an event of
    priority ``p`` due now that had been scheduled before now has run iff ``p < reached``.
    """

    def __init__(self) -> None:
        super().__init__()
        self.reached = URGENT

    def step(self) -> None:
        # SimPy's Environment.step, noting the priority
        try:
            now, priority, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        if now != self._now:
            self._now, self.reached = now, priority
        elif priority > self.reached:
            self.reached = priority
        callbacks, event.callbacks = event.callbacks, None
        try:
            for callback in callbacks:
                callback(event)
        except StopSimulation:  # env.run(until=...): the rest of the callbacks run when it resumes
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, URGENT - 1)
            raise
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


Process = Generator[Event, Any, Any]


class Timer(Event):
    """A ``simpy.Timeout`` with a priority (SimPy's own always uses NORMAL)."""

    def __init__(self, env: simpy.Environment, delay: int, priority: int):
        # the body of Event.__init__ and Timeout.__init__, as SimPy inlines it
        self.env = env
        self.callbacks = []
        self._value = None
        self._ok = True
        env.schedule(self, priority, delay)


def run_now(
    env: simpy.Environment,
    process: Process,
    on_done: Callable[[Any], None],
    on_wait: Callable[[], None] | None = None,
) -> None:
    """Run ``process`` at once, in the caller's step, until it first waits.

    A process that never waits (the usual case for the balloon worker when
    nothing costs time) finishes here and ``on_done`` is called with its
    return value before the caller goes on, which keeps same-instant order
    exact and avoids a SimPy Process per call.  A process that does wait is
    handed to SimPy (``on_wait`` is told) and ``on_done`` runs when it ends.
    """
    try:
        event = next(process)
    except StopIteration as stop:
        on_done(stop.value)
        return
    if on_wait is not None:
        on_wait()
    proc = env.process(_resume(process, event))
    proc.callbacks.append(lambda p: on_done(p.value) if p.ok else None)


def _resume(process: Process, event: Event) -> Process:
    """Continue a generator that is waiting on ``event``, passing each event's value in."""
    while True:
        value = yield event
        try:
            event = process.send(value)
        except StopIteration as stop:
            return stop.value
