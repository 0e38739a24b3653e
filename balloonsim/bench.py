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
  SimPy events per second and timeline rows per second; against the same
  host turn by turn (the baseline of the lazy turns, ``kernel/lazy_turns.py``)
  and raw SimPy with as many processes; and with the v5.16 thread driver.
* **small steps, whole process**: from Python's start to the built result,
  against the compiled oracle's whole process when ``--oracle DIR`` names a
  built copy of it (``bench_process.py``).
* ``--sweep``: one sweep on 1 worker and on 2 (``sweep/bench.py``);
  ``--fleet GUESTS HOURS``: the host-hour host at fleet size, in a fresh
  process, for its wall time and peak memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import simpy

from balloonsim import bench_process
from balloonsim.engine import Simulation
from balloonsim.scenario.model import Scenario
from balloonsim.sweep import bench as sweep_bench
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
    """A host of ``guests`` 4 GiB guests with random workloads, new targets every 5 minutes (spread
    over the 5 minutes, guest by guest)."""
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
    # guest i's new target comes i/guests of the way into each 5-minute period (at t+i s for 100 guests)
    periods = range(60, duration_s, 300)
    staggered = sorted((t * 1000 + i * 300_000 // guests, i, t) for t in periods for i in range(guests))
    events = [
        {"at": f"{at}ms", "domain": f"vm{i:03}", "mem_set": "2560MiB" if (t // 300) % 2 == 0 else "4GiB"}
        for at, i, t in staggered
        if at < duration_s * 1000
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


def simpy_baseline(events: int, processes: int = 1) -> float:
    """Raw SimPy: ``processes`` processes doing ``yield env.timeout(d)`` with spread delays, ``events``
    timeouts in all; events per second.  Many processes make a larger event queue, as a host does."""
    env = simpy.Environment()
    each = max(1, events // processes)

    def ticker(i: int) -> Any:
        for _ in range(each):
            yield env.timeout(1 + i % 7)

    for i in range(processes):
        env.process(ticker(i))
    start = time.perf_counter()
    env.run()
    return each * processes / (time.perf_counter() - start)


def fleet(guests: int, hours: float) -> dict[str, float]:
    """``host_hour``'s host with ``guests`` guests for ``hours``, in this process: wall time, peak
    memory (this process's), SimPy events, timeline rows.  Run it in a fresh process for a clean peak."""
    import resource

    wall, sim, result = _timed(lambda: Simulation(host_hour(guests, int(hours * 3600))))
    return {
        "wall_s": wall,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "events": next(sim.env._eid),
        "rows": int(result.metadata["timeline_rows"]),
        "turns": sum(g.activity.iterations for g in sim.guests),
    }


def _fleet_in_a_fresh_process(guests: int, hours: float) -> dict[str, float]:
    import json
    import subprocess
    import sys

    code = f"import json; from balloonsim.bench import fleet; print(json.dumps(fleet({guests}, {hours})))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def main(
    quick: bool = False,
    fleet_size: tuple[int, float] | None = None,
    oracle_dir: str | None = None,
    sweep: bool = False,
) -> int:
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
    print(f"\nhost hour: {guests} guests of 4 GiB, random workloads, runtime costs, new targets every 5 min, 1 hour")
    print(
        f"  balloonsim        {wall:8.3f} s  {events / wall:10.3g} SimPy events/s  {rows / wall:10.3g} rows/s"
        f"  ({events} events, {rows} rows, {turns} loop turns, {kills} OOM kills; {3600 / wall:.0f}x real time)"
    )
    base_wall, base_sim, _ = _timed(lambda: Simulation(host_hour(guests), bulk_iterations=False))
    base_events = next(base_sim.env._eid)
    print(
        f"  turn by turn      {base_wall:8.3f} s  {base_events / base_wall:10.3g} SimPy events/s  ({base_events} "
        f"events; the same tables: tests/test_lazy_turns.py); steady turns done lazily: {base_wall / wall:.1f}x faster"
    )
    raw = simpy_baseline(events, processes=guests * 4)
    print(
        f"  SimPy baseline    {raw:10.3g} timeouts/s with {guests * 4} processes; balloonsim's events run at "
        f"{events / wall / raw:.1%} of that rate (model, rows and checks included)"
    )
    thread_wall, sim, result = _timed(lambda: Simulation(host_hour(guests, driver="v5.16")))
    turns = sum(g.activity.iterations for g in sim.guests)
    print(
        f"  the same, v5.16   {thread_wall:8.3f} s  {next(sim.env._eid) / thread_wall:10.3g} SimPy events/s"
        f"  ({turns} thread passes, {len(result.timeline)} rows; {thread_wall / wall:.2f}x the v5.12 run's time)"
    )
    print(f"\nsmall steps, whole process: {steps} target changes, from Python's start to the built result")
    print(bench_process.report(bench_process.whole_process(steps, oracle_dir)))
    if oracle_dir is None:
        print("  (--oracle DIR: the compiled oracle's rate on the same steps, measured now; see its README)")
    if sweep:
        one, two = sweep_bench.speedup(4 if quick else 16)
        print("\nsweep: the same Monte Carlo sweep on 1 worker and on a pool of 2 (balloonsim/sweep/bench.py)")
        print(f"  1 worker {one:8.2f} s   2 workers {two:8.2f} s   speed-up {one / two:.2f}x")
    if fleet_size is not None:
        guests, hours = fleet_size
        f = _fleet_in_a_fresh_process(guests, hours)
        print(f"\nfleet: the same host with {guests} guests for {hours:g} simulated hours, in a fresh process")
        print(
            f"  balloonsim        {f['wall_s']:8.1f} s  peak {f['peak_mib']:.0f} MiB  {f['events'] / f['wall_s']:10.3g}"
            f" SimPy events/s  ({f['events']:.0f} events, {f['rows']:.0f} rows, {f['turns']:.0f} loop turns)"
        )
    return 0
