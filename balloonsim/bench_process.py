"""Whole-process small steps: balloonsim against the compiled oracle, each as a process, wall clock.

Issue 11 asks for 200,000 small target steps at >= 0.5x the compiled oracle's worker calls per
second, whole process: from the interpreter's start (imports, the scenario built and validated,
its digest, the run, the Result) to its exit, against ``oracle -q`` on the script the oracle's own
``bench/gen_small_steps.py`` writes (shared/oracle, its README's "Timing").  Both cases are the
same: a 4 GiB guest given targets of -1000 and +1000 pages alternately, one per jiffy at HZ=250,
one worker call each (512 + 488 pages).

``python -m balloonsim.bench_process [STEPS] [--oracle DIR]`` prints both rates and their ratio;
``whole_process(steps, oracle_dir)`` returns them (``balloonsim bench`` calls it).  The measured
process prints where its time went (``child``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

STEPS = 200_000
#: where ``import balloonsim`` finds this tree, for the child
_TREE = str(Path(__file__).resolve().parent.parent)
#: the measured process: its clock starts before ``import balloonsim`` (pandas, numpy, pydantic, SimPy)
_CHILD = "import time; t = time.perf_counter(); from balloonsim.bench_process import child; child({steps}, t)"


@dataclass(frozen=True)
class ProcessRate:
    """One process's run: its wall time and the worker calls (balloon_process passes) it made."""

    wall_s: float
    worker_calls: int
    detail: str = ""

    @property
    def calls_per_s(self) -> float:
        return self.worker_calls / self.wall_s


def balloonsim_rate(steps: int = STEPS) -> ProcessRate:
    """A fresh interpreter builds ``bench.small_steps(steps)``, runs it to a Result and exits."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_TREE, os.environ.get("PYTHONPATH")]))}
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(steps=steps)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - start
    calls, detail = done.stdout.split(maxsplit=1)
    return ProcessRate(wall, int(calls), detail.strip())


def oracle_problem(oracle_dir: str | Path) -> str | None:
    """None when ``oracle_dir`` holds a built oracle and its small-steps generator; else what is missing."""
    oracle_dir = Path(oracle_dir)
    for needed, executable in ((oracle_dir / "oracle", True), (oracle_dir / "bench" / "gen_small_steps.py", False)):
        if not (os.access(needed, os.X_OK) if executable else needed.is_file()):
            return f"{needed}: not found; a built copy of the oracle is needed (cp -r shared/oracle DIR; make -C DIR)"
    return None


def oracle_rate(oracle_dir: str | Path, steps: int = STEPS) -> ProcessRate:
    """``oracle -q`` on the oracle's own small-steps script (``bench/gen_small_steps.py steps``)."""
    oracle_dir = Path(oracle_dir)
    binary = oracle_dir / "oracle"
    problem = oracle_problem(oracle_dir)
    if problem:
        raise FileNotFoundError(problem)
    with tempfile.TemporaryDirectory(prefix="balloonsim-oracle-") as tmp:
        script, csv = Path(tmp) / "small_steps.script", Path(tmp) / "small_steps.csv"
        with script.open("w") as out:
            subprocess.run(
                [sys.executable, str(oracle_dir / "bench" / "gen_small_steps.py"), str(steps)], stdout=out, check=True
            )
        with csv.open("w") as out:
            start = time.perf_counter()
            subprocess.run([str(binary), "-q", str(script)], stdout=out, check=True)
            wall = time.perf_counter() - start
        with csv.open() as rows:  # the README's work calls: the rows with cause "work"
            calls = sum(1 for row in rows if row.split(",", 2)[1] == "work")
    return ProcessRate(wall, calls)


@dataclass(frozen=True)
class Comparison:
    balloonsim: ProcessRate
    oracle: ProcessRate | None

    @property
    def ratio(self) -> float | None:
        """balloonsim's worker calls per second over the oracle's (the issue asks for >= 0.5)."""
        return None if self.oracle is None else self.balloonsim.calls_per_s / self.oracle.calls_per_s


def whole_process(steps: int = STEPS, oracle_dir: str | Path | None = None) -> Comparison:
    """Both processes, one after the other, in the same run (so the ratio holds on a busy machine too)."""
    ours = balloonsim_rate(steps)
    return Comparison(ours, None if oracle_dir is None else oracle_rate(oracle_dir, steps))


def report(comparison: Comparison) -> str:
    ours, oracle = comparison.balloonsim, comparison.oracle
    lines = [
        f"  balloonsim process {ours.wall_s:8.2f} s  {ours.calls_per_s:10.3g} worker calls/s  "
        f"({ours.worker_calls} calls; {ours.detail})"
    ]
    if oracle is not None:
        lines.append(
            f"  oracle process     {oracle.wall_s:8.2f} s  {oracle.calls_per_s:10.3g} worker calls/s  "
            f"({oracle.worker_calls} calls)"
        )
        lines.append(f"  ratio {comparison.ratio:.2f}x the compiled oracle's rate (issue 11 asks for >= 0.5x)")
    return "\n".join(lines)


def child(steps: int, started: float) -> None:
    """The measured process: the worker calls, then where the time went, on one line."""
    from balloonsim import bench
    from balloonsim.engine import Simulation

    imported = time.perf_counter()
    scenario = bench.small_steps(steps)
    built = time.perf_counter()
    sim = Simulation(scenario)
    sim.run(progress=False)
    ran = time.perf_counter()
    print(
        sim.guests[0].activity.passes,
        f"in-process: imports {imported - started:.2f} s, scenario {built - imported:.2f} s, "
        f"run to a Result {ran - built:.2f} s",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m balloonsim.bench_process", description=__doc__.split("\n")[0])
    parser.add_argument("steps", nargs="?", type=int, default=STEPS, help=f"target changes (default {STEPS})")
    parser.add_argument("--oracle", metavar="DIR", help="a built copy of shared/oracle: time it too")
    args = parser.parse_args(argv)
    print(f"whole-process small steps: {args.steps} target changes of +-1000 pages, one worker call each")
    print(report(whole_process(args.steps, args.oracle)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
