"""How much faster a sweep runs on 2 workers than on 1 (the benchmark calls ``speedup``).

The same Monte Carlo sweep, ``runs`` seeds of one host (four guests with bursty workloads and a
``mem-set`` each, runtime costs, two simulated minutes), is run whole (checking the points, the
runs, writing each and the table; no figures) on 1 worker (in this process, as a single-core user
would run it) and on a pool of 2.

    python -m balloonsim.sweep.bench [RUNS]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from balloonsim.sweep.run import run_sweep

HOST = """\
name: bench-host
duration: 2min
host: {total: 16GiB}
x-guest: &guest
  memory: 3GiB
  kernel: {used_at_boot: 256MiB, slab_reclaimable: 64MiB}
  workloads:
    - {name: service, constant: {anon: 400MiB, cache: 300MiB}}
    - {name: jobs, bursts: {every: 20s, length: 10s, anon: [128MiB, 1GiB]}}
domains:
  - {<<: *guest, name: g1}
  - {<<: *guest, name: g2}
  - {<<: *guest, name: g3}
  - {<<: *guest, name: g4}
events:
  - {at: 10s, domain: g1, mem_set: 1GiB}
  - {at: 20s, domain: g2, mem_set: 1536MiB}
  - {at: 30s, domain: g3, mem_set: 2GiB}
  - {at: 40s, domain: g4, mem_set: 1GiB}
  - {at: 70s, domain: g1, mem_set: 3GiB}
  - {at: 80s, domain: g4, mem_set: 2560MiB}
"""


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


def _cpu() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


if __name__ == "__main__":  # pragma: no cover
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    (one, cpu_one), (two, cpu_two) = timed(n)
    print(f"sweep of {n} runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s: speed-up {one / two:.2f}x")
    print(
        f"CPU: 1 worker {cpu_one:.2f} s, 2 workers {cpu_two:.2f} s (2 idle cores: at most {2 * cpu_one / cpu_two:.2f}x)"
    )
