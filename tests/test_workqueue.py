"""Linux delayed-work semantics (kernel/workqueue.c), on a bare SimPy environment."""

import simpy

from balloonsim.kernel.workqueue import DelayedWork
from balloonsim.sim import Timer
from balloonsim.units import Clock

JIFFY = 4_000_000  # ns at HZ=250


def make(env, body=None, hz=250):
    runs = []

    def func():
        runs.append(("start", env.now))
        if body is not None:
            yield from body()
        runs.append(("end", env.now))
        return
        yield

    work = DelayedWork(env, Clock(hz), func, "w", on_complete=lambda: None)
    return work, runs


def test_scheduling_a_pending_work_keeps_its_expiry():
    env = simpy.Environment()
    work, runs = make(env)
    assert work.schedule(10) is True
    assert work.schedule(0) is False  # already pending: ignored
    assert work.expiry == 10
    env.run()
    assert runs == [("start", 10 * JIFFY), ("end", 10 * JIFFY)]
    assert not work.pending and work.expiry == -1


def test_a_delay_of_zero_runs_after_the_events_of_the_same_instant():
    env = simpy.Environment()
    order = []
    work, runs = make(env)
    work.func = lambda: iter(order.append("work") or ())

    def script():
        yield env.timeout(5)
        work.schedule(0)
        order.append("event 1")
        yield env.timeout(0)
        order.append("event 2 at the same instant")

    env.process(script())
    env.run()
    assert order == ["event 1", "event 2 at the same instant", "work"]


def test_scheduling_while_it_runs_queues_it_again():
    env = simpy.Environment()
    calls = []

    def func():
        calls.append(env.now)
        if len(calls) == 1:
            work.schedule(0)  # the pending bit was cleared before the function ran
        return
        yield

    work = DelayedWork(env, Clock(250), func, "w", on_complete=lambda: None)
    work.schedule(3)
    env.run()
    assert calls == [3 * JIFFY, 3 * JIFFY]


def test_a_work_due_while_it_runs_runs_again_afterwards_not_concurrently():
    env = simpy.Environment()
    spans = []

    def func():
        start = env.now
        if not spans:
            work.schedule(1)  # comes due while the first run is still sleeping
            yield env.timeout(10 * JIFFY)
        spans.append((start, env.now))

    work = DelayedWork(env, Clock(250), func, "w", on_complete=lambda: None)
    work.schedule(0)
    env.run()
    assert spans == [(0, 10 * JIFFY), (10 * JIFFY, 10 * JIFFY)]


def test_timers_fire_at_jiffy_boundaries_for_every_hz():
    env = simpy.Environment()
    work, runs = make(env, hz=300)

    def script():
        yield env.timeout(1)  # 1 ns into jiffy 0
        work.schedule(1)

    env.process(script())
    env.run()
    assert runs[0] == ("start", 3_333_334)  # the start of jiffy 1 at HZ=300


def test_event_priorities_order_the_same_instant():
    env = simpy.Environment()
    seen = []
    for priority, name in ((3, "end"), (2, "work"), (1, "event")):
        Timer(env, 7, priority).callbacks.append(lambda _e, n=name: seen.append(n))
    env.run()
    assert seen == ["event", "work", "end"]
