"""The command line, exactly: usage lines, exit statuses and one-line errors of main, the summary
table, what run, plot, validate and oracle print and write.  Each test fails on a wrong message,
status, stream, column, boundary or destination (issue 8's mutation testing of balloonsim/cli.py)."""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_outputs import TINY

import balloonsim.cli
import balloonsim.plots
import balloonsim.progress
from balloonsim import __version__
from balloonsim.cli import EPILOG, _seed, main, render_summary
from balloonsim.errors import BalloonsimError, ScenarioError, SimulationError, UsageError
from balloonsim.results.result import Result
from balloonsim.results.store import Interrupted
from balloonsim.results.summary import WORST_FIRST_ORDER
from balloonsim.scenario import load_scenario

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"
SCRIPT = FIXTURES / "c_target_during_backoff.script"  # '# oracle: oracle': the build without hotplug
HOTPLUG_SCRIPT = FIXTURES / "f_same_script_on_hotplug_build.script"  # '# oracle: oracle-hotplug'
TABLE_FILES = "timeline, events, host, targets, summary .parquet; run.json"
FIGURES = ["timeline.png", "host.png"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)  # a 2 s run of one guest, given one target
    return path


def outcome(capsys, argv: list[str]) -> tuple[int, str, str]:
    """main's exit status, then what it printed on stdout and on stderr."""
    status = main(argv)
    io = capsys.readouterr()
    return status, io.out, io.err


def exits(capsys, argv: list[str]) -> tuple[int, str, str]:
    """For argparse's own ends (--help, --version, a usage error): SystemExit's code, stdout, stderr."""
    with pytest.raises(SystemExit) as end:
        main(argv)
    io = capsys.readouterr()
    return end.value.code, io.out, io.err


# -- the parser ---------------------------------------------------------------------------

# argparse's usage line: "usage: " and the prog (a subcommand's prog is its parent's and the
# subcommand), the options in the order added, [-o METAVAR] with the first option string, a
# BooleanOptionalAction as [--x | --no-x], an option without metavar as its dest in capitals,
# then the positionals ('+' as X [X ...], subcommands as METAVAR ...)
USAGE = {
    (): "usage: balloonsim [-h] [--version] COMMAND ...",
    ("run",): "usage: balloonsim run [-h] [--set KEY=VALUE] [-o DIR] [--seed N] [--no-plot] [--force] "
    "[--progress | --no-progress] SCENARIO",
    ("plot",): "usage: balloonsim plot [-h] [-o DIR] RESULT_DIR",
    ("validate",): "usage: balloonsim validate [-h] SCENARIO [SCENARIO ...]",
    ("oracle",): "usage: balloonsim oracle [-h] ACTION ...",
    ("oracle", "convert"): "usage: balloonsim oracle convert [-h] [-o FILE] [--hz HZ] [--section PAGES] "
    "[--hotplug | --no-hotplug] SCRIPT",
    ("oracle", "compare"): "usage: balloonsim oracle compare [-h] [--hz HZ] [--section PAGES] "
    "[--hotplug | --no-hotplug] SCRIPT CSV",
    ("bench",): "usage: balloonsim bench [-h] [--quick] [--fleet GUESTS HOURS] [--oracle DIR] [--sweep]",
}


@pytest.mark.parametrize("command", list(USAGE))
def test_each_command_has_its_usage_line(command, monkeypatch, capsys):
    monkeypatch.setenv("COLUMNS", "200")  # argparse wraps at the terminal's width: one line here
    status, out, _ = exits(capsys, [*command, "--help"])
    assert (status, out.splitlines()[0]) == (0, USAGE[command])


def test_help_ends_with_the_examples_as_written(capsys):
    # RawDescriptionHelpFormatter keeps the epilog's lines; the default formatter would refill them
    status, out, _ = exits(capsys, ["--help"])
    assert status == 0 and out.endswith("\n" + EPILOG)


def test_version(capsys):
    assert exits(capsys, ["--version"]) == (0, f"balloonsim {__version__}\n", "")


@pytest.mark.parametrize(
    ("argv", "last_line"),
    [
        ([], "balloonsim: error: the following arguments are required: COMMAND"),
        (["oracle"], "balloonsim oracle: error: the following arguments are required: ACTION"),
        (["oracle", "convert", str(SCRIPT), "--hz", "fast"], "balloonsim oracle convert: error: argument --hz: "
         "invalid int value: 'fast'"),
        (["oracle", "compare", str(SCRIPT), "x.csv", "--section", "1e3"], "balloonsim oracle compare: error: "
         "argument --section: invalid int value: '1e3'"),
    ],
)  # fmt: skip
def test_a_missing_command_or_a_bad_number_is_a_usage_error(argv, last_line, capsys):
    status, out, err = exits(capsys, argv)
    assert (status, out, err.splitlines()[-1]) == (2, "", last_line)


# -- main: exit status and one line per error -----------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "err"),
    [
        (ScenarioError(["s.yaml:3: host: required", "s.yaml:4: x: unknown"]), 2, "s.yaml:3: host: required\n"
         "s.yaml:4: x: unknown\n"),
        (SimulationError("livelock: a/balloon_worker"), 1, "balloonsim: the run failed: livelock: a/balloon_worker\n"),
        (UsageError("out: holds other files"), 2, "balloonsim: out: holds other files\n"),
        (BalloonsimError("r: another run is saving here"), 1, "balloonsim: r: another run is saving here\n"),
        (KeyboardInterrupt(), 130, "balloonsim: interrupted; no half-written result was left\n"),  # 128 + SIGINT
        (Interrupted(signal.SIGTERM), 143, "balloonsim: interrupted; no half-written result was left\n"),  # + 15
        (OSError(errno.ENOSPC, "No space left on device"), 1, "balloonsim: [Errno 28] No space left on device\n"),
    ],
)  # fmt: skip
def test_each_error_is_its_exit_status_and_lines_on_stderr(error, status, err, monkeypatch, capsys):
    def command(_args):
        raise error

    monkeypatch.setattr(balloonsim.cli, "cmd_bench", command)
    assert outcome(capsys, ["bench"]) == (status, "", err)


def test_the_commands_status_is_mains(monkeypatch, capsys):
    seen = []

    def command(args):
        seen.append(args.quick)
        return 1 if args.quick else None  # None: success, as a command that returns nothing

    monkeypatch.setattr(balloonsim.cli, "cmd_bench", command)
    assert (main(["bench", "--quick"]), main(["bench"]), seen) == (1, 0, [True, False])


def test_a_reader_that_has_gone_leaves_stdout_on_dev_null(monkeypatch, tmp_path):
    # the recipe of Python's signal module documentation: after EPIPE, dup2 /dev/null onto stdout's
    # descriptor, so what is still printed, and the flush at exit, cannot fail
    def command(_args):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    monkeypatch.setattr(balloonsim.cli, "cmd_bench", command)
    with open(tmp_path / "stdout", "w") as stdout:
        with monkeypatch.context() as m:
            m.setattr(sys, "stdout", stdout)
            status = main(["bench"])
        now, null = os.fstat(stdout.fileno()), os.stat(os.devnull)
        print("printed after the reader went", file=stdout, flush=True)
    assert status == 141  # 128 + SIGPIPE, as for a command killed by it
    assert (now.st_dev, now.st_ino) == (null.st_dev, null.st_ino)
    assert (tmp_path / "stdout").read_text() == ""


# -- --seed ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seed"), [("0", 0), ("9223372036854775807", 2**63 - 1)])
def test_seeds_from_0_to_int64_max_are_taken(text, seed):
    assert _seed(text) == seed


@pytest.mark.parametrize("text", ["-1", "9223372036854775808", "seven", "1.5"])
def test_other_seeds_are_refused_saying_what_is_allowed(text):
    with pytest.raises(argparse.ArgumentTypeError) as err:
        _seed(text)
    assert str(err.value) == f"seeds are non-negative integers (0 to 9223372036854775807), not '{text}'"


# -- the summary table ------------------------------------------------------------------------


def guest(name: str, **values) -> dict:
    """A summary row: a guest that reached its target of 1 GiB (262144 pages) after 1.5 s."""
    row = {
        "domain": name,
        "final_current_pages": 262144,
        "final_target_pages": 262144,
        "final_state": "DONE",
        "target_reached": True,
        "last_target_refused": False,
        "last_target_clamped": False,
        "time_to_final_target_s": 1.5,
        "backoff_s": 0.0,
        "cancellations": 0,
        "oom_kills": 0,
        "min_mem_available": 131072,
        "max_unmet_anon": 0,
        "max_unmet_cache": 0,
        "unmet_demand_mib_s": 0.0,
    }
    return row | values


def result_of(rows: list[dict], host: dict | None = None, **metadata) -> Result:
    empty = pd.DataFrame()
    return Result(empty, empty, pd.DataFrame(host or {}), empty, pd.DataFrame(rows), metadata=metadata)


RUN = {"scenario": "t", "domains": 5, "duration_ns": 90_000_000_000, "timeline_rows": 123, "wall_s": 0.25, "seed": 7}


def test_the_summary_table_column_by_column():
    rows = [
        guest("web", time_to_final_target_s=1.234),
        guest(
            "db",
            final_current_pages=196608,
            final_target_pages=131072,
            final_state="ECANCELED",
            target_reached=False,
            last_target_refused=True,
            time_to_final_target_s=math.nan,
            backoff_s=1500.0,
            cancellations=2,
            oom_kills=1,
            min_mem_available=25600,
            max_unmet_anon=2560,
            max_unmet_cache=256,
        ),
        guest("batch", final_target_pages=524288, final_state="EAGAIN", target_reached=False, last_target_clamped=True,
              time_to_final_target_s=2.0, backoff_s=12.34),
        guest("slow", final_target_pages=131072, final_state="WAIT", target_reached=False, backoff_s=0.5),
        guest("idle", final_state="NONE", time_to_final_target_s=math.nan),  # never given a target
    ]  # fmt: skip
    # 256 pages a MiB: 262144 -> 1024 MiB, 196608 -> 768, 131072 -> 512, 524288 -> 2048, 25600 -> 100,
    # 2560 -> 10, 256 -> 1.  Seconds: 3 significant digits below 100 s (1.234 -> 1.23s, 12.34 -> 12.3s),
    # whole ones from there (1500 -> 1500s, not 1.5e+03s); 'after' only for a target reached, '-' for
    # none (NaN).  Each column as wide as its widest text (header or cell), two spaces between;
    # domain, state and reached to the left, the rest to the right.
    assert render_summary(result_of(rows, **RUN)).split("\n") == [
        "t: 5 domain(s), 90 s simulated, 123 timeline rows, 0.25 s wall (seed 7)",
        "",
        "domain   current    target  state      reached       after  backoff  cancel  OOM  min avail  max anon unmet  "
        "max cache unmet",
        "web     1024 MiB  1024 MiB  DONE       yes           1.23s       0s       0    0    512 MiB           0 MiB  "
        "          0 MiB",
        "db       768 MiB   512 MiB  ECANCELED  no (refused)      -    1500s       2    1    100 MiB          10 MiB  "
        "          1 MiB",
        "batch   1024 MiB  2048 MiB  EAGAIN     no (clamped)      -    12.3s       0    0    512 MiB           0 MiB  "
        "          0 MiB",
        "slow    1024 MiB   512 MiB  WAIT       no                -     0.5s       0    0    512 MiB           0 MiB  "
        "          0 MiB",
        "idle    1024 MiB  1024 MiB  NONE       yes               -       0s       0    0    512 MiB           0 MiB  "
        "          0 MiB",
    ]


def test_a_result_without_a_duration_shows_0_s_simulated():
    assert render_summary(result_of([guest("a")])).split("\n")[0] == (
        "None: None domain(s), 0 s simulated, None timeline rows, None s wall (seed None)"
    )


def names_listed(text: str) -> list[str]:
    """The first word of each table row (the lines after the header, up to a blank one or the end)."""
    rows = text.split("\n")[3:]
    return [line.split()[0] for line in rows]


def test_up_to_24_guests_are_listed_in_the_scenarios_order():
    # the last of 24 has an OOM kill: worst first would list it first; 24 are all listed, as given
    rows = [guest(f"g{i:02}") for i in range(23)] + [guest("g23", oom_kills=1)]
    assert names_listed(render_summary(result_of(rows, **RUN))) == [f"g{i:02}" for i in range(24)]


def test_past_24_guests_the_worst_24_are_listed_and_the_rest_counted():
    # 25 guests, the last with an OOM kill: worst first it leads, the others keep their order
    # (ties), and the 24th of them (g23) is left out
    rows = [guest(f"g{i:02}") for i in range(24)] + [guest("g24", oom_kills=1)]
    text = render_summary(result_of(rows, **RUN))
    *table, more, order = text.split("\n")
    assert names_listed("\n".join(table)) == ["g24", *(f"g{i:02}" for i in range(23))]
    assert more == "... and 1 more domains, not shown (all in summary.parquet)"
    assert order == f"rows ordered worst first: {WORST_FIRST_ORDER}"


@pytest.mark.parametrize(
    ("host_free", "said"),
    [
        # 131072 pages (512 MiB) needed: first reached in the row at 1.5 s (>=, not >)
        ([0, 131072, 200000], "reached at 1.5 s"),
        ([0, 131071, 100], "never reached"),
    ],
)
def test_the_host_memory_needed_and_when_it_was_free(host_free, said):
    host = {"time_s": [0.0, 1.5, 3.0], "host_free": host_free}
    text = render_summary(result_of([guest("a")], host, **RUN, host_needed_pages=131072))
    assert text.endswith(f"MiB\n\nhost free memory needed: 512 MiB, {said}")


def test_nothing_needed_says_nothing_about_the_host():
    text = render_summary(result_of([guest("a")], **RUN, host_needed_pages=None))
    assert "host free memory" not in text and text.split("\n")[-1].startswith("a ")


# -- run and plot: what they print, write and report --------------------------------------


class Stages:
    """A progress bar that records what it is told, in order."""

    calls: list[tuple] = []

    def __init__(self, name: str, shown: bool | None):
        Stages.calls = [("open", name, shown)]

    def simulated(self, now_ns: int, end_ns: int) -> None:
        Stages.calls.append(("simulated",))

    def saving(self, tables: int) -> None:
        Stages.calls.append(("saving", tables))

    def saved(self, table: str) -> None:
        Stages.calls.append(("saved", table))

    def drawing(self, done: int, total: int) -> None:
        Stages.calls.append(("drawing", done, total))

    def __enter__(self) -> Stages:
        return self

    def __exit__(self, *_exc: object) -> None:
        Stages.calls.append(("closed",))


@pytest.fixture
def figures(monkeypatch):
    """write_figures draws two small files and reports each, and says which result it drew."""
    drawn = []

    def write_figures(result, directory, on_figure=None):
        drawn.append(result.metadata["scenario"])
        for done, name in enumerate(FIGURES):
            if on_figure is not None:
                on_figure(done, len(FIGURES))
            (Path(directory) / name).write_bytes(b"png")
        return list(FIGURES)

    monkeypatch.setattr(balloonsim.plots, "write_figures", write_figures)
    return drawn


def test_run_prints_what_it_wrote_and_reports_each_stage(tiny, tmp_path, figures, monkeypatch, capsys):
    monkeypatch.setattr(balloonsim.progress, "RunProgress", Stages)
    out = tmp_path / "r"
    status, printed, _ = outcome(capsys, ["run", str(tiny), "--output", str(out), "--progress"])
    assert status == 0
    assert printed.endswith(f"\n\nwrote {out}/ ({TABLE_FILES}; timeline.png, host.png)\n")
    assert figures == ["tiny"] and sorted(p.name for p in out.glob("*.png")) == sorted(FIGURES)
    # the simulation reports to the same bar, then the five tables in store.TABLES' order, then the figures
    simulating = [c for c in Stages.calls if c == ("simulated",)]
    assert Stages.calls[0] == ("open", "tiny", True) and simulating
    assert Stages.calls[1 + len(simulating) :] == [
        ("saving", 5),
        *(("saved", t) for t in ("timeline", "events", "host", "targets", "summary")),
        ("drawing", 0, 2),
        ("drawing", 1, 2),
        ("closed",),
    ]


def test_run_keeps_the_scenario_it_ran_in_run_json(tiny, tmp_path, capsys):
    out = tmp_path / "r"
    status, printed, _ = outcome(capsys, ["run", str(tiny), "-o", str(out), "--no-plot"])
    assert status == 0 and printed.endswith(f"\n\nwrote {out}/ ({TABLE_FILES})\n")  # no figures to list
    kept = json.loads((out / "run.json").read_text())["scenario_definition"]
    assert kept == load_scenario(tiny).model_dump(mode="json")


def test_run_writes_to_results_name_by_default(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    status, printed, _ = outcome(capsys, ["run", str(tiny), "--no-plot"])
    assert status == 0 and printed.endswith(f"\n\nwrote results/tiny/ ({TABLE_FILES})\n")
    assert (tmp_path / "results" / "tiny" / "run.json").is_file()


def test_an_empty_output_is_the_current_directory_and_refused(tiny, tmp_path, monkeypatch, capsys):
    # Path("") is "." (pathlib): the current directory, which a result may not replace; it is not
    # the default destination
    monkeypatch.chdir(tmp_path)
    status, printed, err = outcome(capsys, ["run", str(tiny), "-o", ""])
    assert (status, printed) == (2, "")
    assert err.startswith("balloonsim: .: is the current directory or holds it, which cannot be replaced")
    assert list(tmp_path.iterdir()) == [tiny]


def test_plot_names_the_folder_as_its_errors_do_and_lists_the_figures(tiny, tmp_path, figures, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(tiny), "-o", "r", "--no-plot"]) == 0
    capsys.readouterr()
    # ./r is "r" as pathlib spells it, as in the messages about it ("r: not a balloonsim result")
    assert outcome(capsys, ["plot", "./r"]) == (0, "wrote r/ (timeline.png, host.png)\n", "")
    assert outcome(capsys, ["plot", "./r", "--output", "./figs"]) == (0, "wrote figs/ (timeline.png, host.png)\n", "")
    assert figures == ["tiny", "tiny"]
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == sorted(FIGURES)
    assert (tmp_path / "r" / "timeline.png").is_file()


def test_validate_names_the_file_as_its_problem_lines_do(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text("duration: 1s\n")
    status, out, err = outcome(capsys, ["validate", "./tiny.yaml", "./bad.yaml"])
    assert status == 2
    assert out == "tiny.yaml: ok (1 domain(s), 1 event(s), 2 s)\n"
    assert err.startswith("bad.yaml:1: ")


# -- oracle convert and compare ----------------------------------------------------------------


def converted(capsys, *argv: str) -> str:
    status, out, err = outcome(capsys, ["oracle", "convert", *argv])
    assert (status, err) == (0, "")
    return out


def test_convert_writes_the_same_yaml_to_a_file_or_to_stdout(tmp_path, capsys):
    printed = converted(capsys, str(SCRIPT))
    assert converted(capsys, str(SCRIPT), "-o", str(tmp_path / "a.yaml")) == ""
    assert converted(capsys, str(SCRIPT), "--output", str(tmp_path / "b.yaml")) == ""
    assert (tmp_path / "a.yaml").read_text() == (tmp_path / "b.yaml").read_text() == printed
    # the script's leading comments are the description, as a literal block ('|-': no final newline)
    assert printed.startswith(
        "name: c_target_during_backoff\n"
        "description: |-\n"
        "  (c) A target change while a retry is pending does not run the worker:\n"
    )


@pytest.mark.parametrize(
    ("script", "options", "kernel"),
    [
        # '# oracle: oracle' or '# oracle: oracle-hotplug' says the build, 250 and 32768 are the defaults
        (SCRIPT, [], ("hz: 250", "hotplug: {enabled: false, auto_online: true, section: 32768 pages}")),
        (HOTPLUG_SCRIPT, [], ("hz: 250", "hotplug: {enabled: true, auto_online: true, section: 32768 pages}")),
        # the command line overrides each
        (SCRIPT, ["--hotplug"], ("hz: 250", "hotplug: {enabled: true, auto_online: true, section: 32768 pages}")),
        (HOTPLUG_SCRIPT, ["--no-hotplug", "--hz", "100", "--section", "4096"],
         ("hz: 100", "hotplug: {enabled: false, auto_online: true, section: 4096 pages}")),
    ],
)  # fmt: skip
def test_convert_takes_the_build_from_the_script_or_the_options(script, options, kernel, capsys):
    # the kernel's settings, four spaces in (domains: - name: / kernel:); a mapping of scalars only
    # stays on one line in flow style
    lines = converted(capsys, str(script), *options).splitlines()
    assert [f"    {k}" in lines for k in kernel] == [True, True]


def test_a_script_name_becomes_the_scenarios_name(tmp_path, capsys):
    script = tmp_path / "My first try.script"  # slug: runs of other characters become '-'
    script.write_text(SCRIPT.read_text())
    assert converted(capsys, str(script)).startswith("name: My-first-try\n")


@pytest.mark.parametrize("action", ["convert", "compare"])
def test_an_unreadable_script_is_one_line(action, tmp_path, capsys):
    missing = tmp_path / "missing.script"
    extra = [str(SCRIPT.with_suffix(".csv"))] if action == "compare" else []
    assert outcome(capsys, ["oracle", action, str(missing), *extra]) == (
        2,
        "",
        f"{missing}: cannot read: No such file or directory\n",
    )


def test_compare_says_equal_and_counts_the_oracles_rows(capsys):
    # the CSV has a header line and 12 rows
    assert outcome(capsys, ["oracle", "compare", str(SCRIPT), str(SCRIPT.with_suffix(".csv"))]) == (
        0,
        "c_target_during_backoff.script: equals the oracle (12 rows)\n",
        "",
    )


def test_compare_prints_each_difference_then_differs(tmp_path, capsys):
    header_only = tmp_path / "header.csv"
    header_only.write_text(SCRIPT.with_suffix(".csv").read_text().splitlines()[0] + "\n")
    status, out, err = outcome(capsys, ["oracle", "compare", str(SCRIPT), str(header_only)])
    lines = out.splitlines()
    assert (status, err) == (1, "")
    assert lines[0].startswith("the oracle has 0 rows, balloonsim ")
    assert lines[1:] == ["c_target_during_backoff.script: differs from the oracle (0 rows)"]


def test_compare_with_an_unreadable_csv_is_one_line(tmp_path, capsys):
    missing = tmp_path / "missing.csv"
    assert outcome(capsys, ["oracle", "compare", str(SCRIPT), str(missing)]) == (
        2,
        "",
        f"{missing}: cannot read: No such file or directory\n",
    )
