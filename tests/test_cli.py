"""The balloonsim command: what it writes, prints and returns."""

import subprocess
import sys
from pathlib import Path

import pytest

from balloonsim.cli import main

ROOT = Path(__file__).parent.parent
FIXTURES = Path(__file__).parent / "fixtures" / "oracle"


def test_run_writes_tables_plot_and_summary(tmp_path, capsys):
    out = tmp_path / "q"
    assert main(["run", str(ROOT / "scenarios" / "quickstart.yaml"), "-o", str(out), "--seed", "3"]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == [
        "events.parquet",
        "gap_heatmap.png",
        "host.parquet",
        "host.png",
        "run.json",
        "summary.parquet",
        "summary.png",
        "targets.parquet",
        "timeline.parquet",
        "timeline.png",
    ]
    printed = capsys.readouterr().out
    assert "quickstart: 3 domain(s), 90 s simulated" in printed and "(seed 3)" in printed
    assert printed.count("ECANCELED") == 2


def test_bad_input_exits_2_and_writes_nothing(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration: 1s\nhost: {total: 1GiB}\ndomains: [{name: a, memory: 1GB}]\n")
    out = tmp_path / "out"
    assert main(["run", str(bad), "-o", str(out)]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert err == f"{bad}:3: domains.0.memory: '1GB': decimal units are ambiguous; write 1GiB for a power of 1024\n"


def test_a_failed_run_exits_1_and_writes_nothing(tmp_path, capsys):
    s = tmp_path / "spin.yaml"
    s.write_text(
        "duration: 2s\nhost: {free: 0}\n"
        "domains: [{name: a, memory: 1GiB, initial_target: absent,\n"
        "           kernel: {mem_available: 0, totalreserve_pages: 0}, costs: none}]\n"
        "events: [{at: 1s, domain: a, target: 512MiB}]\n"
    )
    assert main(["run", str(s), "-o", str(tmp_path / "o")]) == 1
    assert "livelock" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_validate(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("duration: 1s\n")
    assert main(["validate", str(ROOT / "scenarios" / "quickstart.yaml"), str(bad)]) == 2
    io = capsys.readouterr()
    assert "quickstart.yaml: ok (3 domain(s), 4 event(s), 90 s)" in io.out
    assert f"{bad}:1: host: required" in io.err


def test_oracle_compare_and_convert(tmp_path, capsys):
    script = FIXTURES / "c_target_during_backoff.script"
    assert main(["oracle", "compare", str(script), str(script.with_suffix(".csv"))]) == 0
    assert "equals the oracle (12 rows)" in capsys.readouterr().out
    changed = tmp_path / "c.csv"
    changed.write_text(script.with_suffix(".csv").read_text().replace("1500,work", "1501,work"))
    assert main(["oracle", "compare", str(script), str(changed)]) == 1
    assert main(["oracle", "convert", str(script), "-o", str(tmp_path / "c.yaml")]) == 0
    assert main(["validate", str(tmp_path / "c.yaml")]) == 0


def test_bench_quick_counts(capsys):
    assert main(["bench", "--quick"]) == 0
    out = capsys.readouterr().out
    # two round trips 64 GiB -> 1 GiB -> 64 GiB move 4 x 63 GiB in batches of 512
    assert "(66060288 pages, 4 passes, 129028 turns)" in out
    assert "small steps: 20000 target changes" in out


@pytest.mark.parametrize(
    "args, error",
    [
        (["--fleet", "0", "24"], "--fleet 0 24: give a whole number of guests (at least 1) and hours above 0"),
        (["--fleet", "1.5", "2"], "--fleet 1.5 2: give a whole number of guests (at least 1) and hours above 0"),
        (["--fleet", "10", "-1"], "--fleet 10 -1: give a whole number of guests (at least 1) and hours above 0"),
    ],
)
def test_bench_refuses_a_bad_fleet_before_running_anything(capsys, args, error):
    assert main(["bench", *args]) == 2
    out = capsys.readouterr()
    assert out.err == f"balloonsim: {error}\n" and out.out == ""  # no case ran


def test_bench_refuses_an_oracle_folder_without_a_built_oracle(tmp_path, capsys):
    assert main(["bench", "--oracle", str(tmp_path)]) == 2
    out = capsys.readouterr()
    assert out.err.startswith(f"balloonsim: --oracle {tmp_path / 'oracle'}: not found") and out.out == ""


def test_help_works_as_a_module():
    done = subprocess.run([sys.executable, "-m", "balloonsim", "run", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and "--seed N" in done.stdout
