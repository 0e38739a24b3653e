"""``balloonsim bench``: how fast the model runs, measured, printed, never asserted.

Cases (the shared oracle's timing cases, so the figures compare with its
compiled C run):

* **large moves**: a 64 GiB guest ballooned down to 1 GiB and back, ten
  times: 20 worker passes moving 330,301,440 pages in 645,120 batches.
  Measured as balloonsim runs it, and again with the loop run turn by turn
  (``bulk_iterations=False``) as the baseline for the shortcut.
* **small steps**: 200,000 target changes of +-1000 pages on a 4 GiB guest,
  one worker pass each (512 + 488 pages): the cost per event and per pass.
* **SimPy baseline**: the raw rate of ``yield env.timeout(1)`` on this
  machine, in the same run, so the ratios hold on any machine.
* **host hour**: 100 guests of 4 GiB with random workloads (bursts over a
  steady base and a periodic page cache), the runtime costs, and a new
  target for each guest every 5 minutes, for one simulated hour: wall time,
  SimPy events per second and timeline rows per second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import simpy

from balloonsim.engine import Simulation
from balloonsim.scenario.model import Scenario
from balloonsim.units import PAGES_PER_GIB, pages_to_kib

JIFFY_NS = 4_000_000  # HZ=250, as the oracle's timing cases


def _guest_scenario(name: str, pages: int, targets: list[tuple[int, int]], duration_ns: int) -> Scenario:
    """One guest of ``pages``, all free, floors and reserves 0 (as in the oracle), given targets."""
    return Scenario.model_validate(
        {
            "name": name,
            "duration": f"{duration_ns}ns",
            "host": {"free": 0},
            "domains": [
                {
                    "name": "guest",
                    "memory": f"{pages} pages",
                    "initial_target": "absent",
                    "kernel": {"totalreserve_pages": 0, "floor_balloon": 0, "floor_user": 0},
                    "costs": "none",
                }
            ],
            "events": [{"at": f"{t}ns", "domain": "guest", "target": f"{pages_to_kib(p)}KiB"} for t, p in targets],
        }
    )


def large_moves(rounds: int = 10, pages: int = 64 * PAGES_PER_GIB) -> Scenario:
    targets = [(i * JIFFY_NS, PAGES_PER_GIB if i % 2 == 0 else pages) for i in range(2 * rounds)]
    return _guest_scenario("bench-large-moves", pages, targets, 100 * JIFFY_NS)


def small_steps(steps: int = 200_000) -> Scenario:
    pages = 4 * PAGES_PER_GIB
    targets = [(i * JIFFY_NS, pages - 1000 if i % 2 == 0 else pages) for i in range(steps)]
    return _guest_scenario("bench-small-steps", pages, targets, steps * JIFFY_NS)


def host_hour(guests: int = 100, duration_s: int = 3600, driver: str = "v5.12") -> Scenario:
    """A host of ``guests`` 4 GiB guests with random workloads, new targets every 5 minutes."""
    workloads = [
        {"name": "base", "constant": {"anon": "512MiB", "cache": "256MiB"}},
        {"name": "jobs", "bursts": {"every": "2min", "length": "1min", "anon": ["50MiB", "800MiB"]}},
        {"name": "files", "periodic": {"period": "10min", "shape": "sine", "cache": ["0", "1GiB"]}},
    ]
    domains = [
        {
            "name": f"vm{i:03}",
            "memory": "4GiB",
            "kernel": {"used_at_boot": "200MiB"},
            "balloon": {"driver": driver},
            "workloads": workloads,
        }
        for i in range(guests)
    ]
    staggered = sorted((t + i, i, t) for t in range(60, duration_s, 300) for i in range(guests))  # guest i at t+i s
    events = [
        {"at": f"{at}s", "domain": f"vm{i:03}", "mem_set": "2560MiB" if (t // 300) % 2 == 0 else "4GiB"}
        for at, i, t in staggered
    ]
    return Scenario.model_validate(
        {
            "name": "bench-host-hour",
            "duration": f"{duration_s}s",
            "host": {"total": f"{guests * 4 + 32}GiB"},
            "domains": domains,
            "events": events,
        }
    )


def _timed(make: Callable[[], Simulation]) -> tuple[float, Simulation, Any]:
    sim = make()
    start = time.perf_counter()
    result = sim.run(progress=False)
    return time.perf_counter() - start, sim, result


def simpy_baseline(events: int) -> float:
    """Raw SimPy: one process doing ``yield env.timeout(1)``; events per second."""
    env = simpy.Environment()

    def ticker() -> Any:
        for _ in range(events):
            yield env.timeout(1)

    env.process(ticker())
    start = time.perf_counter()
    env.run()
    return events / (time.perf_counter() - start)


def main(quick: bool = False) -> int:
    rounds, steps = (2, 20_000) if quick else (10, 200_000)
    step_rounds = 1  # the turn-by-turn baseline: one round trip is enough for a rate
    print(f"balloonsim bench{' (quick)' if quick else ''}: wall times on this machine; ratios are within this run\n")

    wall, sim, result = _timed(lambda: Simulation(large_moves(rounds)))
    c = sim.guests[0].activity
    moved = c.pages_out + c.pages_in
    print(f"large moves: 64 GiB guest -> 1 GiB -> 64 GiB, x{rounds}")
    print(
        f"  balloonsim        {wall:8.3f} s  {moved / wall:10.3g} pages/s  {c.passes / wall:10.3g} worker passes/s"
        f"  {c.iterations / wall:10.3g} loop turns/s  ({moved} pages, {c.passes} passes, {c.iterations} turns)"
    )
    base_wall, base_sim, _ = _timed(lambda: Simulation(large_moves(step_rounds), bulk_iterations=False))
    b = base_sim.guests[0].activity
    base_moved = b.pages_out + b.pages_in
    print(
        f"  turn by turn      {base_wall:8.3f} s  {base_moved / base_wall:10.3g} pages/s  "
        f"{b.passes / base_wall:10.3g} worker passes/s  {b.iterations / base_wall:10.3g} loop turns/s"
        f"  (baseline, x{step_rounds})"
    )
    print(f"  speed-up of the steady-turn shortcut: {(moved / wall) / (base_moved / base_wall):.0f}x pages/s\n")

    wall, sim, result = _timed(lambda: Simulation(small_steps(steps)))
    c = sim.guests[0].activity
    rows = len(result.timeline)
    print(f"small steps: {steps} target changes of +-1000 pages on a 4 GiB guest")
    print(
        f"  balloonsim        {wall:8.3f} s  {(c.pages_out + c.pages_in) / wall:10.3g} pages/s  "
        f"{c.passes / wall:10.3g} worker passes/s  {steps / wall:10.3g} events/s  {rows / wall:10.3g} rows/s"
    )
    raw = simpy_baseline(2 * steps)
    # each step costs SimPy two events: the script's timeout and the worker's timer
    print(
        f"  SimPy baseline    {raw:10.3g} timeouts/s; balloonsim runs {2 * steps / wall:.3g} SimPy events/s, "
        f"{raw / (2 * steps / wall):.1f}x slower than raw SimPy (model, rows and checks included)"
    )

    guests = 10 if quick else 100
    wall, sim, result = _timed(lambda: Simulation(host_hour(guests)))
    events = next(sim.env._eid)  # SimPy numbers every event it schedules
    rows = len(result.timeline)
    turns = sum(g.activity.iterations for g in sim.guests)
    kills = int(result.summary["oom_kills"].sum())
    print(f"\nhost hour: {guests} guests of 4 GiB, random workloads, new targets every 5 min, 1 simulated hour")
    print(
        f"  balloonsim        {wall:8.3f} s  {events / wall:10.3g} SimPy events/s  {rows / wall:10.3g} rows/s"
        f"  ({events} events, {rows} rows, {turns} loop turns, {kills} OOM kills; {3600 / wall:.0f}x real time)"
    )
    thread_wall, sim, result = _timed(lambda: Simulation(host_hour(guests, driver="v5.16")))
    turns = sum(g.activity.iterations for g in sim.guests)
    print(
        f"  the same, v5.16   {thread_wall:8.3f} s  {next(sim.env._eid) / thread_wall:10.3g} SimPy events/s"
        f"  ({turns} thread passes, {len(result.timeline)} rows; {thread_wall / wall:.2f}x the v5.12 run's time)"
    )
    return 0
