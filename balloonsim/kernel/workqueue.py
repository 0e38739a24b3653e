"""Kernel scheduling primitives the driver uses: delayed work, a mutex, a wait queue.

``DelayedWork`` has the semantics of a ``struct delayed_work`` on the system
workqueue (kernel/workqueue.c):

* ``schedule_delayed_work`` on a work that is pending does nothing and
  returns False: the earlier expiry stands;
* the pending bit is cleared just before the function runs, so scheduling
  from inside the running function queues it again;
* a work is never run twice at once: one that comes due while it runs is
  run again when the current run returns;
* a timer of ``d`` jiffies fires at the start of jiffy ``now + d``; with
  ``d = 0`` the work is queued at once.  Either way it runs after every
  event of the same instant (priority ``WORK``).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from balloonsim.errors import KernelBug, SimulationError
from balloonsim.sim import WORK, Process, Timer, run_now
from balloonsim.units import Clock, format_ns

#: A work run more often than this at one instant is looping forever.
LIVELOCK_RUNS = 100_000
ERESTARTSYS = 512  # what a sleep ended by a signal returns (negated)


class DelayedWork:
    def __init__(
        self,
        env: simpy.Environment,
        clock: Clock,
        func: Callable[[], Process],
        name: str,
        on_complete: Callable[[], None],
        priority: float = WORK,
    ):
        self.env = env
        self.priority = priority
        self.clock = clock
        self.func = func
        self.name = name
        self.on_complete = on_complete
        self.pending = False
        self.expiry = -1  # jiffies; -1 when not pending
        self.running = False
        self._due_while_running = False
        self._runs_at = -1
        self._runs_here = 0

    def schedule(self, delay: int) -> bool:
        """schedule_delayed_work(&work, delay): False if it was already pending."""
        if self.pending:
            return False
        now = self.env.now
        self.pending = True
        self.expiry = self.clock.jiffies(now) + delay
        fire_at = max(now, self.clock.jiffy_start_ns(self.expiry))
        Timer(self.env, fire_at - now, self.priority).callbacks.append(self._timer_expired)
        return True

    def _timer_expired(self, _event: Any) -> None:
        if self.running:  # stays pending, on the worklist behind the current run
            self._due_while_running = True
            return
        self._start()

    def _start(self) -> None:
        now = self.env.now
        if now != self._runs_at:
            self._runs_at, self._runs_here = now, 0
        self._runs_here += 1
        if self._runs_here > LIVELOCK_RUNS:
            raise SimulationError(
                f"livelock: {self.name} ran {LIVELOCK_RUNS} times at t={format_ns(now)} "
                "without time passing; the modelled kernel code loops forever in this situation"
            )
        self.pending = False
        self.expiry = -1
        self.running = True
        run_now(self.env, self.func(), self._finished)

    def _finished(self, _value: Any) -> None:
        self.running = False
        self.on_complete()
        if self._due_while_running:
            self._due_while_running = False
            self._start()


class Mutex:
    """A kernel mutex, as the model needs it.

    In this model ``balloon_mutex`` is never held across simulated time (every
    holder releases it before it waits or yields the CPU), so taking it never
    blocks; taking it twice is the deadlock the kernel would hit, and is
    reported as a bug.
    """

    def __init__(self, name: str):
        self.name = name
        self.held = False

    def lock(self) -> None:
        if self.held:
            raise KernelBug(f"deadlock: mutex_lock({self.name}) while it is held")
        self.held = True

    def unlock(self) -> None:
        if not self.held:
            raise KernelBug(f"mutex_unlock({self.name}) while it is not held")
        self.held = False


class WaitQueue:
    """A wait_queue_head_t: sleepers wait for ``wake_up``, then re-check their condition.

    Two kinds sleep here: a SimPy process (a backend in add_ballooned_pages) waits on the event
    ``sleep()`` gives it; a kernel thread (kthread.py) adds itself and is woken by ``wake()``.
    """

    def __init__(self, env: simpy.Environment):
        self.env = env
        self._wakeup: simpy.Event | None = None
        self._threads: list[Any] = []

    def has_sleepers(self) -> bool:
        return self._wakeup is not None or bool(self._threads)

    def sleep(self) -> simpy.Event:
        if self._wakeup is None:
            self._wakeup = self.env.event()
        return self._wakeup

    def add_thread(self, thread: Any) -> None:
        self._threads.append(thread)

    def remove_thread(self, thread: Any) -> None:
        self._threads.remove(thread)

    def wake_up(self) -> None:
        if self._wakeup is not None:
            wakeup, self._wakeup = self._wakeup, None
            wakeup.succeed()
        for thread in self._threads:
            thread.wake()


def wait_event_interruptible(
    env: simpy.Environment, wq: WaitQueue, condition: Callable[[], bool], signal_after: int | None
) -> Generator[simpy.Event, Any, int]:
    """Sleep until ``condition()`` holds after a wake-up; 0, or -ERESTARTSYS if a signal came first.

    ``signal_after`` (ns) models a signal that ends the sleep; None: none comes.
    """
    if condition():
        return 0
    deadline = None if signal_after is None else env.now + signal_after
    while True:
        if deadline is not None and env.now >= deadline:
            return -ERESTARTSYS
        wakeup = wq.sleep()
        if deadline is None:
            yield wakeup
        else:
            yield wakeup | env.timeout(deadline - env.now)
        if condition():
            return 0
