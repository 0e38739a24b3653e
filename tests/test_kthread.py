"""KThread on its own: when a kernel thread runs, sleeps and wakes, derived from the kernel's rules.

schedule_timeout(t) (kernel/time/timer.c) sleeps until the timer at jiffy ``now + t`` fires; a
wake_up() (kernel/sched/wait.c) makes a task asleep on the queue runnable, and a task that is
running is not on the queue, so a wake-up then is lost.  Jiffy j starts at ceil(j * 1e9 / HZ) ns.
"""

import simpy

from balloonsim.kernel.kthread import SLEEP, KernelPanic, KThread, ThreadState
from balloonsim.kernel.workqueue import WaitQueue
from balloonsim.sim import EVENT, Timer
from balloonsim.units import Clock

HZ = 250  # a jiffy is 4 ms
MS = 1_000_000  # ns


class Kernel:
    """What a guest kernel gives its threads: the running one (on_switch) and who stopped (on_stop)."""

    def __init__(self, hz=HZ):
        self.env = simpy.Environment()
        self.clock = Clock(hz)
        self.current = None
        self.log = []  # (ns, what)
        self.stopped = []  # (thread, exception)

    def thread(self, name, body):
        """kthread_run(): ``body(thread)`` is the thread function."""

        def threadfn():  # a generator: it starts when the thread first runs, on_switch told who that is
            return (yield from body(self.current))

        return KThread(
            self.env,
            self.clock,
            name,
            threadfn,
            on_stop=lambda t, stop: self.stopped.append((t, stop)),
            on_switch=lambda t: setattr(self, "current", t),
        )

    def note(self, what):
        self.log.append((self.env.now, what))

    def at(self, ns, action):
        """An event at ``ns`` (priority EVENT: before the threads due at that instant)."""
        Timer(self.env, ns - self.env.now, EVENT).callbacks.append(lambda _e: action())


def sleeper(k, name, *sleeps, wq=None):
    """A thread that sleeps each of ``sleeps`` jiffies in turn, noting when it runs and its time_left."""

    def body(t):
        for timeout in sleeps:
            k.note(f"{name} runs")
            t.prepare_to_sleep(wq, timeout)
            yield SLEEP
            k.note(f"{name} left {t.time_left()}")

    return k.thread(name, body)


def test_a_new_thread_runs_at_once_until_it_first_sleeps():
    k = Kernel()
    t = sleeper(k, "a", 10)
    assert k.log == [(0, "a runs")]  # before kthread_run returned
    assert t.state is ThreadState.SLEEPING and t.slept and not t.woken and k.current is None


def test_a_sleep_ends_at_the_start_of_jiffy_now_plus_timeout():
    # HZ 300: jiffy j starts at ceil(j * 1e9 / 300) ns; from 5 ms (jiffy 1, as 5e6 * 300 // 1e9 = 1) a
    # sleep of 2 jiffies ends at jiffy 3 = exactly 10 ms, then one of 1 jiffy at jiffy 4 = ceil(13333333.3) ns
    k = Kernel(hz=300)
    k.at(5 * MS, lambda: sleeper(k, "a", 2, 1))
    k.env.run()
    assert k.log == [(5 * MS, "a runs"), (10 * MS, "a left 0"), (10 * MS, "a runs"), (13_333_334, "a left 0")]


def test_runs_at_is_the_end_of_the_sleep_when_woken_or_now():
    k = Kernel()
    wq = WaitQueue(k.env)
    seen = []

    def body(t):
        seen.append(t.runs_at)  # running at jiffy 0
        t.prepare_to_sleep(wq, 10)
        yield SLEEP

    t = k.thread("a", body)
    assert seen == [0] and t.runs_at == 10  # asleep until jiffy 10
    k.at(12 * MS, wq.wake_up)  # jiffy 3
    k.env.run(until=12 * MS + 1)
    assert t.state is ThreadState.DONE  # woken at jiffy 3 and returned
    assert t.runs_at == 3  # done: the present jiffy


def test_of_two_threads_due_at_one_instant_the_one_that_slept_first_runs_first():
    # "a" is created first but goes to sleep for jiffy 10 at jiffy 5; "b" went to sleep for it at jiffy 0
    k = Kernel()
    sleeper(k, "a", 5, 5)
    sleeper(k, "b", 10)
    k.env.run()
    at_40ms = [what for ns, what in k.log if ns == 40 * MS]
    assert at_40ms == ["b left 0", "a left 0"]


def test_of_two_threads_woken_at_one_instant_the_one_woken_first_runs_first():
    # both asleep until jiffy 100 on their own queues; at 20 ms "b" is woken before "a"
    k = Kernel()
    wq_a, wq_b = WaitQueue(k.env), WaitQueue(k.env)
    a = sleeper(k, "a", 100, wq=wq_a)
    b = sleeper(k, "b", 100, wq=wq_b)
    k.at(20 * MS, lambda: (wq_b.wake_up(), wq_a.wake_up()))
    k.env.run(until=20 * MS + 1)
    # woken at jiffy 5 of a 100-jiffy sleep: 95 left
    assert k.log[2:] == [(20 * MS, "b left 95"), (20 * MS, "a left 95")]
    assert a.woken and b.woken and a.state is b.state is ThreadState.DONE


def test_a_woken_thread_runs_after_every_event_of_that_instant():
    k = Kernel()
    wq = WaitQueue(k.env)
    sleeper(k, "a", 100, wq=wq)
    k.at(20 * MS, wq.wake_up)
    k.at(20 * MS, lambda: k.note("event"))  # scheduled after the wake-up, at the same instant
    k.env.run()
    assert k.log[1:] == [(20 * MS, "event"), (20 * MS, "a left 95")]


def test_a_woken_thread_is_runnable_until_it_runs_and_a_second_wake_up_changes_nothing():
    k = Kernel()
    wq = WaitQueue(k.env)
    t = sleeper(k, "a", 100, wq=wq)
    states = []
    k.at(20 * MS, lambda: (wq.wake_up(), states.append((t.state, t.due, t.runs_at)), wq.wake_up()))
    k.env.run()
    assert states == [(ThreadState.RUNNABLE, 5, 5)]
    assert k.log[1:] == [(20 * MS, "a left 95")]  # ran once


def test_a_wake_up_while_the_thread_runs_is_lost():
    # the thread itself wakes its queue before it sleeps on it (MEM_ONLINE inside the thread's own
    # reserve_additional_memory()): nobody was asleep, so it sleeps the whole 10 jiffies
    k = Kernel()
    wq = WaitQueue(k.env)

    def body(t):
        wq.wake_up()
        t.prepare_to_sleep(wq, 10)
        yield SLEEP
        k.note(f"left {t.time_left()}, woken {t.woken}")

    k.thread("a", body)
    k.env.run()
    assert k.log == [(40 * MS, "left 0, woken False")]


def test_a_wake_up_while_the_thread_works_is_lost():
    # the thread's work takes 8 ms (it keeps the CPU); a wake-up at 4 ms finds it running
    k = Kernel()
    wq = WaitQueue(k.env)

    def body(t):
        got = yield k.env.timeout(8 * MS, value="done")
        k.note(got)
        t.prepare_to_sleep(wq, 10)  # from jiffy 2: until jiffy 12
        yield SLEEP
        k.note(f"left {t.time_left()}")

    t = k.thread("a", body)
    k.at(4 * MS, wq.wake_up)
    k.at(4 * MS, lambda: k.note(t.state.value))
    k.env.run()
    assert k.log == [(4 * MS, "running"), (8 * MS, "done"), (48 * MS, "left 0")]


def test_a_wake_up_at_the_expiry_jiffy_runs_the_thread_once():
    # the wake-up is an event at 40 ms, the start of jiffy 10 where the sleep ends: it comes before the
    # timeout, the thread runs once, woken, with 10 - 10 = 0 left
    k = Kernel()
    wq = WaitQueue(k.env)
    woken = []

    def body(t):
        t.prepare_to_sleep(wq, 10)
        yield SLEEP
        woken.append(t.woken)
        k.note(f"left {t.time_left()}")
        t.prepare_to_sleep(wq, 10)  # again: until jiffy 20
        yield SLEEP
        k.note(f"left {t.time_left()}")

    k.thread("a", body)
    k.at(40 * MS, wq.wake_up)
    k.env.run()
    assert woken == [True]
    assert k.log == [(40 * MS, "left 0"), (80 * MS, "left 0")]


def test_time_left_takes_the_thread_off_its_queue():
    k = Kernel()
    wq = WaitQueue(k.env)
    t = sleeper(k, "a", 100, 100, wq=wq)
    k.at(20 * MS, wq.wake_up)
    k.at(21 * MS, wq.wake_up)  # asleep again (until jiffy 105) and on the queue again: woken at jiffy 5
    k.env.run(until=21 * MS + 1)
    assert k.log[1:] == [(20 * MS, "a left 95"), (20 * MS, "a runs"), (21 * MS, "a left 100")]
    assert t.wq is None and t.state is ThreadState.DONE


def test_a_stopped_thread_never_runs_again():
    k = Kernel()
    wq = WaitQueue(k.env)
    t = sleeper(k, "a", 10, wq=wq)
    k.at(20 * MS, t.stop)
    k.at(24 * MS, wq.wake_up)  # finds nobody
    k.env.run()
    assert k.log == [(0, "a runs")] and t.state is ThreadState.DONE and t.wq is None
    assert wq._threads == []


def test_a_thread_stopped_while_runnable_or_working_never_runs_again():
    k = Kernel()
    wq = WaitQueue(k.env)
    woken = sleeper(k, "woken", 100, wq=wq)
    k.at(20 * MS, lambda: (wq.wake_up(), woken.stop()))

    def body(t):
        yield k.env.timeout(30 * MS)
        k.note("work done")

    working = k.thread("working", body)
    k.at(25 * MS, working.stop)
    k.env.run()
    assert k.log == [(0, "woken runs")]
    assert woken.state is working.state is ThreadState.DONE and k.stopped == []


def test_a_panic_ends_the_thread_and_tells_on_stop():
    k = Kernel()

    def body(t):
        t.prepare_to_sleep(None, 5)
        yield SLEEP
        raise KernelPanic("Initial ballooning failed!")

    t = k.thread("a", body)
    k.env.run()
    assert t.state is ThreadState.DONE and k.current is None
    [(who, stop)] = k.stopped
    assert who is t and str(stop) == "Initial ballooning failed!"


def test_a_thread_function_that_returns_is_done_and_nobody_is_told():
    k = Kernel()
    t = sleeper(k, "a", 5)
    k.env.run()
    assert t.state is ThreadState.DONE and k.stopped == [] and k.current is None


def test_the_timer_of_a_sleep_a_wake_up_ended_does_not_cut_into_later_work():
    # asleep until jiffy 10 (40 ms), woken at 4 ms; its work then takes 100 ms: the 40 ms timer of the old
    # sleep must not resume it early, the work ends at 104 ms with its own value
    k = Kernel()
    wq = WaitQueue(k.env)

    def body(t):
        t.prepare_to_sleep(wq, 10)
        yield SLEEP
        got = yield k.env.timeout(100 * MS, value="work done")
        k.note(got)

    k.thread("a", body)
    k.at(4 * MS, wq.wake_up)
    k.env.run()
    assert k.log == [(104 * MS, "work done")]
