"""Kernel threads: how the kthread balloon driver (Linux v5.15 on) and its boot wait run.

A ``KThread`` runs a thread function (a generator) the way one CPU runs a
kernel thread: it runs until it sleeps, and nothing else runs meanwhile
unless its work takes simulated time (then a SimPy timer stands for that
time, and other events may happen before it goes on).

* ``kthread_run()`` creates the thread and runs it at once until it first
  sleeps, as a new thread does on an idle CPU at boot.
* A sleep of ``t`` jiffies (``schedule_timeout``, include/linux/sched.h)
  ends at the start of jiffy ``now + t``; a thread asleep on a wait queue is
  also ended early by ``wake_up()`` on that queue, which makes it runnable
  at once.  Either way it runs after every event of that instant (priority
  ``WORK``, as a delayed work due then would).  A ``wake_up()`` while the
  thread runs finds nobody asleep and is lost, as in the kernel.
* Of two threads due at one instant, the one that went to sleep (or was
  woken) first runs first: SimPy runs same-time, same-priority events in
  the order they were scheduled.
* ``panic()`` does not return: it raises ``KernelPanic``, which ends the
  thread; so does Xen crashing the domain; the kernel that owns it is told (``on_stop``).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

import simpy

from balloonsim.sim import WORK, Process, Timer
from balloonsim.units import Clock


class GuestStopped(Exception):
    """The guest stops where it is: its kernel panicked, or Xen crashed its domain."""


class KernelPanic(GuestStopped):
    """panic(): the guest kernel stops here."""


class ThreadState(enum.Enum):
    RUNNING = "running"
    SLEEPING = "sleeping"  # until ``expiry``, on ``wq`` if it waits in a wait queue
    RUNNABLE = "runnable"  # woken; it runs at ``due``
    DONE = "done"  # the thread function returned, or the kernel panicked


#: what a thread function yields to go to sleep (after ``prepare_to_sleep``)
SLEEP = object()


class KThread:
    def __init__(
        self,
        env: simpy.Environment,
        clock: Clock,
        name: str,
        threadfn: Callable[[], Process],
        *,
        on_stop: Callable[[KThread, GuestStopped], None],
        on_switch: Callable[[KThread | None], None],
        priority: float = WORK,
    ):
        self.env = env
        self.priority = priority
        self.clock = clock
        self.name = name
        self.on_stop = on_stop
        self.on_switch = on_switch  # told which thread runs now (None: none)
        self.state = ThreadState.RUNNABLE
        self.wq: Any = None
        self.expiry = -1  # jiffies: the end of the present sleep
        self.due = clock.jiffies(env.now)  # jiffies: when a runnable thread runs
        self.slept = False  # has slept at least once
        self.woken = False  # runnable because of a wake_up(), not a timeout
        self._turn = 0  # invalidates the timer of a sleep that a wake_up() ended
        self._process = threadfn()
        self._run()

    @property
    def runs_at(self) -> int:
        """The jiffy this thread runs next: the end of its sleep, when it was woken, or now."""
        if self.state is ThreadState.SLEEPING:
            return self.expiry
        if self.state is ThreadState.RUNNABLE:
            return self.due
        return self.clock.jiffies(self.env.now)

    # -- sleeping and waking --------------------------------------------------------

    def prepare_to_sleep(self, wq: Any, timeout: int) -> None:
        """Sleep ``timeout`` jiffies (> 0), on wait queue ``wq`` if not None; then yield SLEEP."""
        now = self.clock.jiffies(self.env.now)
        self.state = ThreadState.SLEEPING
        self.wq = wq
        self.expiry = now + timeout
        self.slept = True
        self.woken = False
        if wq is not None:
            wq.add_thread(self)
        self._run_at(max(self.env.now, self.clock.jiffy_start_ns(self.expiry)))

    def time_left(self) -> int:
        """After a sleep: the jiffies of the timeout still to go (0 when it ran out)."""
        if self.wq is not None:
            self.wq.remove_thread(self)
            self.wq = None
        return max(0, self.expiry - self.clock.jiffies(self.env.now))

    def wake(self) -> None:
        """wake_up() of the queue this thread sleeps on: it becomes runnable now."""
        if self.state is not ThreadState.SLEEPING:
            return
        self.state = ThreadState.RUNNABLE
        self.woken = True
        self.due = self.clock.jiffies(self.env.now)
        self._run_at(self.env.now)

    def stop(self) -> None:
        """The kernel is gone: the thread never runs again."""
        self._turn += 1
        if self.wq is not None:
            self.wq.remove_thread(self)
            self.wq = None
        self.state = ThreadState.DONE

    # -- running --------------------------------------------------------------------

    def _run_at(self, at_ns: int) -> None:
        self._turn += 1
        turn = self._turn
        timer = Timer(self.env, at_ns - self.env.now, self.priority)
        timer.callbacks.append(lambda _e: turn == self._turn and self._run())

    def _run(self, value: Any = None) -> None:
        """Run the thread until it sleeps, returns, or waits for the time its work takes."""
        self.state = ThreadState.RUNNING
        self.on_switch(self)
        try:
            event = self._process.send(value)
        except StopIteration:
            self.state = ThreadState.DONE
            return
        except GuestStopped as stop:
            self.state = ThreadState.DONE
            self.on_stop(self, stop)
            return
        finally:
            self.on_switch(None)
        if event is not SLEEP:  # simulated time for its work: it keeps the CPU, then goes on
            self._turn += 1
            turn = self._turn
            event.callbacks.append(lambda e: turn == self._turn and self._run(e.value))


def wait_event_timeout(
    thread: KThread,
    wq: Any,
    condition: Callable[[], bool],
    timeout: int,
    on_wait: Callable[[KThread, bool, bool], None],
) -> Process:
    """wait_event_freezable_timeout() (include/linux/wait.h, ___wait_cond_timeout): sleep on ``wq``
    until ``condition()`` holds after a wake-up, or the timeout; a wake-up that finds it false sleeps
    again for the time left.  Returns the jiffies left (at least 1 if the condition holds), 0 after a
    timeout with it false.  ``on_wait(thread, sleeping, woken)`` is told each time the thread reaches
    the wait: whether it sleeps now, and whether a wake-up brought it there."""
    ret = timeout
    while True:
        cond = condition()
        if cond and not ret:
            ret = 1
        if cond or not ret:
            break
        woken = thread.woken
        thread.prepare_to_sleep(wq, ret)
        on_wait(thread, True, woken)
        yield SLEEP
        ret = thread.time_left()
    on_wait(thread, False, False)
    return ret


def schedule_timeout(thread: KThread, timeout: int) -> Process:
    """schedule_timeout_interruptible(): sleep ``timeout`` jiffies (no signal ever comes here)."""
    thread.prepare_to_sleep(None, timeout)
    yield SLEEP
    return thread.time_left()
