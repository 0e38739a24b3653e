"""How much faster a sweep runs on 2 workers than on 1 (the benchmark calls ``speedup``).

The same Monte Carlo sweep, ``runs`` seeds of one host (four guests with bursty workloads and a
``mem-set`` each, runtime costs, two simulated minutes), is run whole (checking the points, the
runs, writing each and the table; no figures) on 1 worker (in this process, as a single-core user
would run it) and on a pool of 2.

    python -m balloonsim.sweep.bench [RUNS]
"""

from __future__ import annotations

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
    walls = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "host.yaml").write_text(HOST)
        spec = {"name": "bench", "scenario": "host.yaml", "seeds": runs, "seed": 1}
        for workers in (1, 2):
            started = time.perf_counter()
            run_sweep(
                spec, out=folder / f"on-{workers}", workers=workers, figures=False, progress=False, base_dir=folder
            )
            walls.append(time.perf_counter() - started)
    return walls[0], walls[1]


if __name__ == "__main__":  # pragma: no cover
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    one, two = speedup(n)
    print(f"sweep of {n} runs: 1 worker {one:.2f} s, 2 workers {two:.2f} s, speed-up {one / two:.2f}x")
