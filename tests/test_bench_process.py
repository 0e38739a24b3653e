"""The whole-process benchmark counts worker calls as the oracle's README does, for both processes."""

from __future__ import annotations

import sys
import textwrap

from balloonsim import bench_process


def test_balloonsim_process_makes_one_worker_call_per_step():
    # each +-1000-page target is one balloon_process() pass (bench.small_steps)
    rate = bench_process.balloonsim_rate(6)
    assert rate.worker_calls == 6
    assert rate.wall_s > 0 and "run to a Result" in rate.detail


def test_the_oracles_work_calls_are_its_work_rows(tmp_path):
    # a stand-in oracle: one event row and one work row per "at" line, as oracle -q prints them
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "gen_small_steps.py").write_text(
        "import sys\nn = int(sys.argv[1])\nprint('init pages=1')\nfor i in range(n):\n    print(f'at {i} target 1')\n"
    )
    oracle = tmp_path / "oracle"
    oracle.write_text(
        f"#!{sys.executable}\n"
        + textwrap.dedent(
            """\
            import sys
            lines = open(sys.argv[2]).read().splitlines()
            print("jiffies,cause,current_pages")
            for i, line in enumerate(l for l in lines if l.startswith("at ")):
                print(f"{i},target,1")
                print(f"{i},work,1")
            """
        )
    )
    oracle.chmod(0o755)
    rate = bench_process.oracle_rate(tmp_path, 5)
    assert rate.worker_calls == 5
    comparison = bench_process.Comparison(bench_process.ProcessRate(2.0, 10), bench_process.ProcessRate(0.5, 5))
    assert comparison.ratio == 0.5  # 5 calls/s against 10 calls/s
