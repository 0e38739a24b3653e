"""How much faster a sweep runs on 2 workers than on 1 (the benchmark calls ``speedup``).

The same Monte Carlo sweep, ``runs`` seeds of one host (eight guests with bursty workloads, a
``mem-set`` every 15 s shrinking or growing one of them, runtime costs, two simulated hours: some
seconds a run, so that the pool's start-up is small beside the runs),
is run whole (checking the points, the runs, writing each and the table; no figures) on 1 worker
(in this process, as a single-core user would run it) and on a pool of 2.

    python -m balloonsim.sweep.bench [RUNS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from balloonsim.sweep.run import run_sweep

GUESTS = 8
DURATION_S = 2 * 3600
#: every 15 s one guest is given 1 GiB or its 3 GiB back, in turn
MEM_SETS = "".join(
    f"  - {{at: {15 * (k + 1)}s, domain: g{k % GUESTS + 1}, mem_set: {'1GiB' if k // GUESTS % 2 == 0 else '3GiB'}}}\n"
    for k in range(DURATION_S // 15 - 1)
)
HOST = (
    f"name: bench-host\nduration: {DURATION_S}s\n"
    """\
host: {total: 32GiB}
x-guest: &guest
  memory: 3GiB
  kernel: {used_at_boot: 256MiB, slab_reclaimable: 64MiB}
  workloads:
    - {name: service, constant: {anon: 400MiB, cache: 300MiB}}
    - {name: jobs, bursts: {every: 20s, length: 10s, anon: [128MiB, 768MiB]}}
domains:
""" + "".join(f"  - {{<<: *guest, name: g{i + 1}}}\n" for i in range(GUESTS)) + "events:\n" + MEM_SETS
)


def speedup(runs: int = 16) -> tuple[float, float]:
    """Wall seconds of the same ``runs``-run sweep on 1 worker and on 2."""
    (one, _), (two, _) = timed(runs)
    return one, two


def timed(runs: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall, CPU) seconds on 1 worker and on 2; CPU counts the workers too (on a busy machine the
    wall ratio says how many cores it got, the CPU ratio what the pool costs)."""
    measured = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "host.yaml").write_text(HOST)
        spec = {"name": "bench", "scenario": "host.yaml", "seeds": runs, "seed": 1}
        for workers in (1, 2):
            wall, cpu = time.perf_counter(), _cpu()
            out = folder / f"on-{workers}"
            run_sweep(spec, out=out, workers=workers, figures=False, progress=False, base_dir=folder)
            measured.append((time.perf_counter() - wall, _cpu() - cpu))
    return measured[0], measured[1]


def machine_speedup(chunks: int = 8) -> float:
    """What this machine gives 2 processes now: the same pure-Python loop, ``chunks`` pieces in this
    process and on a pool of 2 (on a busy machine far below 2, and the sweep's ratio with it)."""
    started = time.perf_counter()
    for _ in range(chunks):
        _spin()
    one = time.perf_counter() - started
    with ProcessPoolExecutor(2) as pool:
        list(pool.map(_spin, [1] * 2))  # the workers started before the clock does
        started = time.perf_counter()
        list(pool.map(_spin, [2_000_000] * chunks))
        two = time.perf_counter() - started
    return one / two


def _spin(n: int = 2_000_000) -> int:
    total = 0
    for i in range(n):
        total += i & 7
    return total


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":  # pragma: no cover
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    (one, cpu_one), (two, cpu_two) = timed(n)
    print(f"sweep of {n} runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s: speed-up {one / two:.2f}x")
    print(f"CPU: 1 worker {cpu_one:.2f} s, 2 workers {cpu_two:.2f} s")
    print(f"a pure-Python loop on 2 processes, the same moment: speed-up {machine_speedup():.2f}x")
