"""The ``balloonsim`` command.

Exit status: 0 success; 1 a run failed (a broken invariant, a livelock), its
result could not be written (disk full, another run writing the same folder),
``oracle compare`` found differences, a ``compare --fail-if`` condition held
or a ``baseline check`` metric moved beyond its tolerance; 2 bad input (a
scenario, script, setting or condition that cannot be used, a wrong option, an
output folder that must not or cannot be written, a damaged result or
baseline, a baseline's scenario changed since it was saved); 128 + the
signal's number when interrupted (130 Ctrl-C, 143 SIGTERM); 141 when standard
output's reader stopped reading (``| head``), as for a command killed by
SIGPIPE: what was written stays.

Commands import the heavy parts (the engine, plots) when they run.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from balloonsim import __version__
from balloonsim.errors import BalloonsimError, ScenarioError, SimulationError, UsageError, warnings_printed
from balloonsim.units import INT64_MAX, ns_to_s, pages_to_mib, quoted

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import pandas as pd

    from balloonsim.results.result import Result

EPILOG = """\
examples:
  balloonsim run scenarios/quickstart.yaml            results in results/quickstart/
  balloonsim run scenarios/quickstart.yaml -o /tmp/q --seed 7
  balloonsim validate scenarios/*.yaml
  balloonsim plot results/quickstart                  redraw its figures from the Parquet files
  balloonsim compare scenarios/quickstart.yaml --a balloon.max_retry_count=4 --b balloon.max_retry_count=1
  balloonsim compare a.yaml b.yaml --fail-if "oom_kills > 0"
  balloonsim baseline save ci/baseline scenarios/*.yaml
  balloonsim baseline check ci/baseline --tolerance backoff_seconds=10%
  balloonsim sweep scenarios/sweeps/overcommit.yaml    table and figures in results/sweeps/overcommit/
  balloonsim oracle convert script.script -o scenario.yaml
  balloonsim oracle compare script.script oracle.csv
  balloonsim bench
"""


def main(argv: list[str] | None = None) -> int:
    """Run one command; its exit status (the module's docstring).  Errors are one line each, never a traceback."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()  # a reader that has gone shows here, not at exit
        return status
    except ScenarioError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        return 2
    except SimulationError as err:
        print(f"balloonsim: the run failed: {err}", file=sys.stderr)
        return 1
    except UsageError as err:
        print(f"balloonsim: {err}", file=sys.stderr)
        return 2
    except BalloonsimError as err:
        print(f"balloonsim: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print("balloonsim: interrupted; no half-written result was left", file=sys.stderr)
        return 128 + getattr(err, "signum", signal.SIGINT)
    except BrokenPipeError:
        _discard_stdout()
        return 141
    except OSError as err:
        print(f"balloonsim: {err}", file=sys.stderr)
        return 1


def _discard_stdout() -> None:
    """Standard output's reader has gone: what is left to print goes to /dev/null, so the final
    flush at exit cannot fail (the recipe of Python's signal module documentation)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def build_parser() -> argparse.ArgumentParser:
    # help and description texts are presentation only: mutation testing leaves them alone
    parser = argparse.ArgumentParser(
        prog="balloonsim",
        description="Simulate the Linux Xen balloon driver (v5.12-v5.14) on a Xen host, "  # pragma: no mutate
        "from a YAML scenario.",  # pragma: no mutate
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"balloonsim {__version__}")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    p = sub.add_parser(
        "run",
        help="run a scenario; write its tables (Parquet), figures (PNG) and a summary",  # pragma: no mutate
        description="Run SCENARIO and write timeline, events, host, targets and summary tables "  # pragma: no mutate
        "as Parquet, run.json (scenario hash, seed, version) and the figures (timeline, host, "  # pragma: no mutate
        "gap heat map, summary, and the memory of the guests with workloads that suffered most) "  # pragma: no mutate
        "as PNG into DIR.  A file whose top-level key is 'squeeze_test:' is one of squeezed's "  # pragma: no mutate
        "own test cases instead: it runs in squeezed's simulator, prints its outcome, writes its "  # pragma: no mutate
        "timeline, and exits 0 when the outcome is the one the case expects, 1 when it is not.",  # pragma: no mutate
    )
    p.add_argument(
        "scenario",
        type=Path,
        metavar="SCENARIO",
        help="a scenario file (YAML)",  # pragma: no mutate
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change the scenario before running (repeatable), as compare's --a/--b take it: "  # pragma: no mutate
        "a dotted path (a domain field: in every domain), the value read as YAML "  # pragma: no mutate
        "(host.manager.kind=squeezed)",  # pragma: no mutate
    )
    _output_options(p, "results/<name>/", "random seed (default: the scenario's seed)", "the figures")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "plot",
        help="redraw a saved result's figures from its Parquet files (no re-run)",  # pragma: no mutate
        description="Read the tables in RESULT_DIR (written by 'balloonsim run') "  # pragma: no mutate
        "and draw its figures as PNG.",  # pragma: no mutate
    )
    p.add_argument(
        "result",
        type=Path,
        metavar="RESULT_DIR",
        help="a directory written by 'balloonsim run'",  # pragma: no mutate
    )
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="where to write the PNGs, replacing files of the same names (default: RESULT_DIR)",  # pragma: no mutate
    )
    p.set_defaults(func=cmd_plot)

    p = sub.add_parser(
        "validate",
        help="check scenario files (and sweep specs) and report every problem",  # pragma: no mutate
        description="Check each SCENARIO (or sweep SPEC.yaml, with every point's scenario); "  # pragma: no mutate
        "print one line per problem as file:line: path: message.",  # pragma: no mutate
    )
    p.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "oracle",
        help="convert or check the C oracle's scripts (the kernel's own code in a harness)",  # pragma: no mutate
        description="Work with scripts and CSV traces of the balloon.c oracle harness.",  # pragma: no mutate
    )
    osub = p.add_subparsers(required=True, metavar="ACTION")
    for name, helptext in (
        (
            "convert",
            "write the balloonsim scenario equivalent to an oracle script",  # pragma: no mutate
        ),
        (
            "compare",
            "run an oracle script's equivalent scenario and compare with the oracle's CSV",  # pragma: no mutate
        ),
    ):
        q = osub.add_parser(
            name,
            help=helptext,  # pragma: no mutate
            description=helptext,  # pragma: no mutate
        )
        q.add_argument("script", type=Path, metavar="SCRIPT")
        if name == "compare":
            q.add_argument(
                "csv",
                type=Path,
                metavar="CSV",
                help="the oracle's output for SCRIPT",  # pragma: no mutate
            )
        else:
            q.add_argument(
                "-o",
                "--output",
                type=Path,
                metavar="FILE",
                help="default: standard output",  # pragma: no mutate
            )
        q.add_argument(
            "--hz",
            type=int,
            help="the oracle build's HZ (default: from '# build:' or 250)",  # pragma: no mutate
        )
        q.add_argument(
            "--section",
            type=int,
            metavar="PAGES",
            help="its PAGES_PER_SECTION (default 32768)",  # pragma: no mutate
        )
        q.add_argument(
            "--hotplug",
            action=argparse.BooleanOptionalAction,
            help="oracle-hotplug build (default: '# oracle:')",  # pragma: no mutate
        )
        q.set_defaults(func=cmd_oracle_convert if name == "convert" else cmd_oracle_compare)

    add_compare_parser(sub)
    add_baseline_parser(sub)
    add_sweep_parser(sub)

    p = sub.add_parser(
        "bench",
        help="measure speed (wall time, pages/s, worker passes/s)",  # pragma: no mutate
        description="Run the benchmark cases and print their figures, "  # pragma: no mutate
        "with a SimPy baseline measured in the same run.",  # pragma: no mutate
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="smaller cases (for a smoke test)",  # pragma: no mutate
    )
    p.add_argument(
        "--fleet",
        nargs=2,
        metavar=("GUESTS", "HOURS"),
        help="also run the host-hour host with GUESTS guests for HOURS simulated hours "  # pragma: no mutate
        "in a fresh process: wall time and peak memory (e.g. --fleet 1000 24)",  # pragma: no mutate
    )
    p.add_argument(
        "--oracle",
        metavar="DIR",
        help="a built copy of the shared oracle: its whole-process rate on the small steps, "  # pragma: no mutate
        "measured in the same run",  # pragma: no mutate
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="also time one sweep on 1 worker and on 2",  # pragma: no mutate
    )
    p.set_defaults(func=cmd_bench)
    return parser


COMPARE_HELP = """\
Run SCENARIO twice, A and B, with the same seed, and print, per guest and for the host, the
metrics that changed (--all: every one); write them to DIR as comparison.parquet and
comparison.csv (domain, metric, unit, a, b, change = b - a), with compare.png (both runs'
timelines on one figure) and run.json.  A and B differ by settings (--a/--b KEY=VALUE) or are
two scenario files with the same domain names (SCENARIO SCENARIO_B), or both.

KEY is a dotted path into the scenario; a key under a domain (balloon.driver, kernel.thp, costs,
memory, ...) sets it in EVERY domain, domains.NAME.KEY in one.  VALUE is read as YAML: 4, true,
v5.15, 512MiB, none, {xen_page: 1us}.

exit status: 0 no --fail-if condition holds; 1 one holds (each is printed: guest, values), or
a run failed; 2 bad input (a scenario, a setting, a condition, an output folder)."""

FAIL_IF_HELP = (
    "exit 1 if EXPR holds for any guest (or the host): [a.|b.|change.]METRIC OP VALUE, "  # pragma: no mutate
    "OP one of > >= < <= == !=, VALUE a number with a unit where the metric has one "  # pragma: no mutate
    "(30s, 512MiB) or another metric, times or plus a number "  # pragma: no mutate
    "('b.backoff_seconds > a.backoff_seconds * 1.1'); no prefix: B's value; change: B - A; "  # pragma: no mutate
    "a target never reached takes for ever. Metrics: "  # pragma: no mutate
)

BASELINE_HELP = """\
'save' runs each SCENARIO and writes its metrics (not its timelines) to DIR, one
<name>.baseline.json per scenario with its path (relative to DIR), sha256, seed and
balloonsim's version.  'check' runs them again with the same seeds and reports every metric
that moved beyond its tolerance, either way (scenario, guest, metric, baseline -> now,
tolerance).  Default tolerances: counts (oom_kills, cancellations, eagain_passes) exact;
seconds 5%; pages 1%; MiB*s 5%; ratios 1%.

exit status: 0 every metric within its tolerance (save: saved); 1 a metric moved (or a run
failed); 2 bad input: no such DIR, not a baseline, a scenario that cannot be read or whose
file changed since it was saved (save the baseline again)."""


def _output_options(p: argparse.ArgumentParser, default: str, seed: str, figures: str) -> None:
    """-o DIR, --seed, --no-plot, --force and --progress, as run and compare take them."""
    p.add_argument(
        "-o",
        "--output",
        type=Path,
        metavar="DIR",
        help="where to write: a new or empty folder, or an earlier result to replace "  # pragma: no mutate
        f"(default: {default})",  # pragma: no mutate
    )
    p.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help=seed,  # pragma: no mutate
    )
    p.add_argument(
        "--no-plot",
        action="store_true",
        help=f"do not draw {figures}",  # pragma: no mutate
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="write into DIR even if it holds other files; only balloonsim's own there "  # pragma: no mutate
        "(its tables, run.json and figures) are replaced, nothing else is touched",  # pragma: no mutate
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar: simulating, saving, drawing (default: on a terminal)",  # pragma: no mutate
    )


def _described(sub: Any, name: str, helptext: str, description: str) -> argparse.ArgumentParser:
    """A subcommand whose description is printed as written (paragraphs, the exit statuses)."""
    return sub.add_parser(
        name, help=helptext, description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_compare_parser(sub: Any) -> None:
    from balloonsim.results.metrics import metric_names

    p = _described(
        sub,
        "compare",
        "run a scenario with two settings (or two scenarios), same seed: what changed",  # pragma: no mutate
        COMPARE_HELP,
    )
    p.add_argument("scenario", type=Path, metavar="SCENARIO", help="a scenario file (YAML): A")  # pragma: no mutate
    p.add_argument(
        "scenario_b",
        type=Path,
        nargs="?",
        metavar="SCENARIO_B",
        help="B's scenario file (default: SCENARIO)",  # pragma: no mutate
    )
    for side in ("a", "b"):
        p.add_argument(
            f"--{side}",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help=f"a setting of run {side.upper()} (repeatable)",  # pragma: no mutate
        )
    p.add_argument(
        "--fail-if",
        action="append",
        default=[],
        metavar="EXPR",
        help=FAIL_IF_HELP + metric_names(),
    )
    p.add_argument(
        "--all",
        action="store_true",
        help="print every metric, not only those that changed",  # pragma: no mutate
    )
    _output_options(p, "results/<name>-compare/", "both runs' seed (default: A's scenario's)", "compare.png")
    p.set_defaults(func=cmd_compare)


def add_baseline_parser(sub: Any) -> None:
    p = _described(
        sub,
        "baseline",
        "save scenarios' metrics, and check them again after a change (for CI)",  # pragma: no mutate
        BASELINE_HELP,
    )
    bsub = p.add_subparsers(required=True, metavar="ACTION")
    q = _described(bsub, "save", "run SCENARIOS and save their metrics to DIR", BASELINE_HELP)  # pragma: no mutate
    q.add_argument("directory", type=Path, metavar="DIR")
    q.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO")
    q.add_argument(
        "--seed",
        type=_seed,
        metavar="N",
        help="every run's seed (default: each scenario's)",  # pragma: no mutate
    )
    q.add_argument(
        "--force",
        action="store_true",
        help="write into DIR even if it holds other files; only balloonsim's own are replaced",  # pragma: no mutate
    )
    q.set_defaults(func=cmd_baseline_save)
    q = _described(
        bsub,
        "check",
        "run DIR's scenarios again; exit 1 if a metric moved beyond its tolerance",  # pragma: no mutate
        BASELINE_HELP,
    )
    q.add_argument("directory", type=Path, metavar="DIR")
    q.add_argument(
        "--tolerance",
        action="append",
        default=[],
        metavar="METRIC=TOL",
        help="METRIC=N%% (relative) or METRIC=AMOUNT (absolute: 2s, 64MiB, 1); repeatable",  # pragma: no mutate
    )
    q.set_defaults(func=cmd_baseline_check)


SWEEP_HELP = """\
Run a scenario over a grid and/or random samples of settings, several seeds per point, and
write one tidy table (point settings x seed x guest: the guest summary and, prefixed host_,
the run's planner metrics) as table.parquet and table.csv, with figures (spread.png: a metric
against a setting with the seeds' spread; heatmap.png: over two settings; cdf.png: across
seeds) and sweep.json.  Each run is written to runs/ as it finishes: an interrupted sweep
started again does only the runs still missing.  SPEC.yaml:

  name: overcommit
  scenario: ../managers.yaml        # relative to the spec file
  seeds: 3                          # runs per point (seeds from SeedSequence(seed).spawn(seeds))
  seed: 0
  grid: {overcommit: [1.0, 1.2, 1.4], host.manager.kind: [none, squeezed]}
  random: {samples: 4, settings: {balloon.max_retry_count: {uniform: [0, 8]}}}
  figures: {metric: host_start_success_rate, x: overcommit, by: host.manager.kind}

Settings: any dotted path run --set takes (a domain field: in every domain), and guests: N
(the base's domains repeated) and overcommit: R (host.total for Σ static-max / total = R).

exit status: 0 done (runs that failed are rows with failed = true); 2 bad input (the spec,
a point's scenario, every bad point listed; a folder that holds another sweep or files of
its own); 130/143 interrupted (the runs written are kept: start it again to resume)."""


def add_sweep_parser(sub: Any) -> None:
    p = _described(
        sub,
        "sweep",
        "run a scenario over a grid or random samples of settings and seeds: one table, figures",  # pragma: no mutate
        SWEEP_HELP,
    )
    p.add_argument("spec", type=Path, metavar="SPEC.yaml", help="the sweep's spec")  # pragma: no mutate
    p.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="the sweep's folder (default: results/sweeps/<name>/); the same spec resumes there",  # pragma: no mutate
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--workers",
        type=_positive,
        metavar="N",
        help="local worker processes (default: all cores)",  # pragma: no mutate
    )
    where.add_argument(
        "--serial",
        action="store_true",
        help="every run in this process, one after another",  # pragma: no mutate
    )
    where.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="a dask.distributed scheduler (tcp://host:8786); its workers need this balloonsim",  # pragma: no mutate
    )
    where.add_argument(
        "--dask-local",
        type=_positive,
        metavar="N",
        help="a Dask LocalCluster of N one-thread worker processes",  # pragma: no mutate
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="replace another sweep's files in DIR, or write beside files that are not a sweep's; "  # pragma: no mutate
        "nothing else is touched",  # pragma: no mutate
    )
    p.add_argument(
        "--no-figures",
        action="store_true",
        help="do not draw the figures",  # pragma: no mutate
    )
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        help="show a progress bar over the runs (default: on a terminal)",  # pragma: no mutate
    )
    p.set_defaults(func=cmd_sweep)


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"a whole number of at least 1, not {quoted(text)}")
    return n


def cmd_sweep(args: argparse.Namespace) -> int:
    from balloonsim.sweep.run import run_sweep

    with warnings_printed(sys.stderr):
        done = run_sweep(
            args.spec, out=args.out, workers=args.workers, serial=args.serial, cluster=args.cluster,
            dask_local=args.dask_local, force=args.force, figures=not args.no_figures, progress=args.progress,
        )  # fmt: skip
    skipped = f" ({done.skipped} already on disk)" if done.skipped else ""
    print(f"sweep {done.folder.name}: {done.runs} runs{skipped}, {done.failed} failed, {done.wall_s:.1f} s")
    for error in done.errors[:3]:
        print(f"  failed: {error}")
    if len(done.errors) > 3:
        print(f"  ... and {len(done.errors) - 3} more (table: failed, error)")
    figures = f"; {', '.join(done.figures)}" if done.figures else ""
    print(f"wrote {done.folder}/ (table.parquet, table.csv: {len(done.table)} rows; sweep.json; runs/{figures})")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from balloonsim.comparison import compare_scenarios, render, save_comparison, settings_label
    from balloonsim.conditions import parse_condition
    from balloonsim.results.store import check_destination
    from balloonsim.scenario import load_scenario
    from balloonsim.scenario.overrides import parse_setting, with_settings

    conditions = [parse_condition(text) for text in args.fail_if]  # bad input before any run
    with warnings_printed(sys.stderr):
        base_a = load_scenario(args.scenario)
        base_b = load_scenario(args.scenario_b) if args.scenario_b else base_a
    settings = {side: dict(parse_setting(text, f"--{side}") for text in getattr(args, side)) for side in ("a", "b")}
    with warnings_printed(sys.stderr):
        a = with_settings(base_a, settings["a"], "--a")
        b = with_settings(base_b, settings["b"], "--b")
    out = args.output or Path("results") / f"{a.name}-compare"
    check_destination(out, force=args.force)  # before simulating, not after
    files_ab = (args.scenario, args.scenario_b) if args.scenario_b else (None, None)
    labels = (settings_label(settings["a"], files_ab[0]), settings_label(settings["b"], files_ab[1]))
    with warnings_printed(sys.stderr):
        comparison = compare_scenarios(a, b, args.seed, labels=labels, progress=args.progress)
    print(render(comparison, show_all=args.all))
    files = save_comparison(comparison, out, plot=not args.no_plot, force=args.force)
    print(f"\nwrote {out}/ ({', '.join(files)}, run.json)")
    held = 0
    wide = comparison.wide
    for condition in conditions:
        holds = condition.holds(wide)
        for domain in holds.index[holds.to_numpy()]:
            print(f"fail-if {condition.text!r} holds for {domain}: {condition.explain(wide, domain)}")
            held += 1
    return 1 if held else 0


def cmd_baseline_save(args: argparse.Namespace) -> int:
    from balloonsim.baseline import save_baseline

    with warnings_printed(sys.stderr):
        save_baseline(args.directory, args.scenarios, args.seed, force=args.force)
    print(f"saved the metrics of {len(args.scenarios)} scenario(s) to {args.directory}/")
    return 0


def cmd_baseline_check(args: argparse.Namespace) -> int:
    from balloonsim.baseline import check_baseline, load_baseline, parse_tolerance

    tolerances = dict(parse_tolerance(text) for text in args.tolerance)
    with warnings_printed(sys.stderr):
        saved = load_baseline(args.directory)
        report = check_baseline(saved, tolerances)
    moved_in = 0
    for entry, moved in report:
        compared = sum(len(values) for values in entry.metrics.values())
        version = f"; saved by balloonsim {entry.version}" if entry.version != __version__ else ""
        verdict = f"{len(moved)} of {compared} metrics moved" if moved else f"all {compared} metrics within tolerance"
        print(f"{entry.scenario.name} (seed {entry.seed}{version}): {verdict}")
        for m in moved:
            print(f"  {m.line()}")
        moved_in += bool(moved)
    if moved_in:
        print(
            f"\n{moved_in} of {len(report)} scenario(s) moved beyond tolerance; if intended, save the baseline again "
            f"(balloonsim baseline save {args.directory} SCENARIOS...)"
        )
    return 1 if moved_in else 0


def cmd_run(args: argparse.Namespace) -> int:
    from balloonsim.engine import Simulation
    from balloonsim.progress import RunProgress
    from balloonsim.results.store import TABLES, saving
    from balloonsim.scenario import load_scenario
    from balloonsim.scenario.overrides import parse_setting, with_settings
    from balloonsim.scenario.squeeze_case import is_squeeze_test

    if is_squeeze_test(args.scenario):
        if args.set:
            raise ScenarioError([f"{args.scenario}: --set changes a scenario; a squeeze_test case takes none"])
        return cmd_squeeze_test(args)
    settings = dict(parse_setting(text, "--set") for text in args.set)
    with warnings_printed(sys.stderr):
        scenario = with_settings(load_scenario(args.scenario), settings, "--set")
    out = args.output or Path("results") / scenario.name
    definition = scenario.model_dump(mode="json")  # for run.json; before a Ctrl-C may come
    figures: list[str] = []
    # the destination is checked and locked before simulating; the tables stream into the folder
    # that is swapped in when complete (an interrupted run leaves nothing)
    with (
        saving(out, force=args.force) as window,
        RunProgress(scenario.name, args.progress) as progress,
        warnings_printed(sys.stderr),
    ):
        result = Simulation(scenario, args.seed, spool=window.folder).run(progress=progress)

        def draw(tmp: Path) -> None:
            if not args.no_plot:
                from balloonsim.plots import write_figures

                figures.extend(write_figures(result, tmp, on_figure=progress.drawing))

        progress.saving(len(TABLES))
        window.save_result(result, scenario=definition, extra=draw, on_table=progress.saved)
    print(render_summary(result))
    print(f"\nwrote {out}/ (timeline, events, host, targets, summary .parquet; run.json{_listed(figures)})")
    return 0


def cmd_squeeze_test(args: argparse.Namespace) -> int:
    """``run`` of a ``squeeze_test:`` case: squeezed's own simulator; exit 0 when the case ends as it
    expects, 1 when not."""
    from balloonsim.managers.squeeze_test import PHASES, expected, simulate
    from balloonsim.results.store import check_destination, save_folder
    from balloonsim.scenario.squeeze_case import load_squeeze_test

    case = load_squeeze_test(args.scenario)
    out = args.output or Path("results") / case.name
    check_destination(out, force=args.force)
    result = simulate(case)
    ok = expected(case, result)
    where = "" if result.outcome == "success" else f", in phase {result.phase} ({PHASES[result.phase - 1]})"
    print(f"squeeze_test {case.name}: {result.outcome}{_blamed(result.domains)} at {result.time_s:g} s{where}")
    if result.message:
        print(f"  {result.message}")
    print(f"host free at the end: {result.host_free_kib} KiB")
    verdict = "as expected" if ok else "NOT AS EXPECTED"
    print(f"expected: {case.expect.outcome}{_blamed(case.expect.domains or ())}: {verdict}")
    run = {
        "squeeze_test": case.name,
        "balloonsim_version": __version__,
        "outcome": result.outcome,
        "blamed": list(result.domains),
        "time_s": result.time_s,
        "host_free_kib": result.host_free_kib,
        "as_expected": ok,
        "scenario_definition": case.model_dump(mode="json"),
    }

    def write(tmp: Path) -> None:
        result.timeline.to_parquet(tmp / "timeline.parquet", index=False)

    save_folder(out, write, run, force=args.force)
    print(f"\nwrote {out}/ (timeline.parquet: time, host free, each domain's actual and target, KiB; run.json)")
    return 0 if ok else 1


def _blamed(domids: Sequence[int]) -> str:
    return f" (domains {', '.join(map(str, domids))})" if domids else ""


def _other_result(folder: Path, result: Path) -> bool:
    from balloonsim.results.store import result_run_json

    return folder.resolve() != result.resolve() and result_run_json(folder) is not None


def _listed(figures: list[str]) -> str:
    return f"; {', '.join(figures)}" if figures else ""


def cmd_plot(args: argparse.Namespace) -> int:
    from balloonsim.plots import write_figures
    from balloonsim.results.store import ResultError, load_result, save_figures

    result = load_result(args.result)
    out = args.output or args.result
    if _other_result(out, args.result):
        raise ResultError(
            f"{out}: is another run's result, whose figures these would replace; draw into {args.result} "
            "or a folder of its own"
        )

    def draw(tmp: Path) -> list[str]:
        try:
            return write_figures(result, tmp)
        except KeyError as err:  # a table written by something else, or cut short
            damaged = f"{args.result}: a table lacks the column {err} the figures need; the result is damaged"
            raise ResultError(damaged) from None

    figures = save_figures(out, draw)
    print(f"wrote {out}/ ({', '.join(figures)})")
    return 0


#: domains listed by render_summary before it refers to summary.parquet
SUMMARY_ROWS = 24

#: the console's columns: header, summary row -> text, left-aligned
_COLUMNS: tuple[tuple[str, Callable[[Any], str], bool], ...] = (
    ("domain", lambda r: str(r.domain), True),
    ("current", lambda r: _mib(r.final_current_pages), False),
    ("target", lambda r: _mib(r.final_target_pages), False),
    ("state", lambda r: r.final_state, True),
    ("reached", lambda r: _reached(r), True),
    ("after", lambda r: _seconds(r.time_to_final_target_s) if r.target_reached else "-", False),
    ("backoff", lambda r: _seconds(r.backoff_s), False),
    ("cancel", lambda r: str(r.cancellations), False),
    ("OOM", lambda r: f"{r.oom_kills:.0f}", False),
    ("min avail", lambda r: _mib(r.min_mem_available), False),
    ("max anon unmet", lambda r: _mib(r.max_unmet_anon), False),
    ("max cache unmet", lambda r: _mib(r.max_unmet_cache), False),
)


def render_summary(result: Result) -> str:
    """A short text table: where each domain ended, what it took and what it cost the guest.

    Past SUMMARY_ROWS domains it lists the worst first and says how many it left out.
    """
    from balloonsim.results.summary import WORST_FIRST_ORDER, worst_first

    m = result.metadata
    summary = result.summary
    left_out = len(summary) - SUMMARY_ROWS
    shown = worst_first(summary).head(SUMMARY_ROWS) if left_out > 0 else summary
    lines = [
        f"{m.get('scenario')}: {m.get('domains')} domain(s), {ns_to_s(m.get('duration_ns', 0)):g} s simulated, "
        f"{m.get('timeline_rows')} timeline rows, {m.get('wall_s')} s wall (seed {m.get('seed')})",
        "",
        *_table(shown),
    ]
    if left_out > 0:
        lines.append(f"... and {left_out} more domains, not shown (all in summary.parquet)")
        lines.append(f"rows ordered worst first: {WORST_FIRST_ORDER}")
    needed = m.get("host_needed_pages")
    if needed:
        from balloonsim.results.summary import host_needed_reached_s

        when = host_needed_reached_s(result.host, needed)
        reached = f"reached at {when:.3g} s" if when is not None else "never reached"
        lines.append(f"\nhost free memory needed: {_mib(needed)}, {reached}")
    from balloonsim.results.planner import planner_applies

    if planner_applies(result):
        lines.append("\n" + planner_line(result.planner.iloc[0]))
    return "\n".join(lines)


def planner_line(p: Any) -> str:
    """'planner (manager squeezed): starts 3/4 ok (latency median 2.1s, max 4.02s; failed: d), goal reached
    2/2 (longest 3.1s), stranded 0 MiB mean, idle in guests 812 MiB mean, overcommit (Σ static-max / host) max
    1.25, stuck: d'."""
    from balloonsim.results.planner import OVERCOMMIT

    parts = []
    if p.starts:
        latency = (
            f"latency median {_seconds(p.start_latency_median_s)}, max {_seconds(p.start_latency_max_s)}"
            if p.starts_ok
            else "none started"
        )
        failed = f"; failed: {p.failed_starts}" if p.starts_failed else ""
        parts.append(f"starts {p.starts_ok}/{p.starts} ok ({latency}{failed})")
    if p.goals:
        if p.goals_reached == p.goals:
            wait = f"longest {_seconds(p.time_to_goal_max_s)}"
        else:
            wait = f"{p.goals - p.goals_reached} never reached" if p.goals_reached else "never reached"
        parts.append(f"goal reached {p.goals_reached}/{p.goals} ({wait})")
    parts.append(f"stranded {_mib(p.stranded_free_mean_pages)} mean")
    parts.append(f"idle in guests {_mib(p.idle_held_mean_pages)} mean")
    parts.append(f"{OVERCOMMIT} max {p.overcommit_max:.3g}")
    if p.guests_stuck:
        parts.append(f"stuck: {p.stuck_guests}")
    return f"planner (manager {p.manager}): " + ", ".join(parts)


def _table(summary: pd.DataFrame) -> list[str]:
    """The header and one line per row, each column as wide as its widest text."""
    cells = [
        [text(r) for _, text, _ in _COLUMNS] if getattr(r, "ran", True) else _never_ran(r)
        for r in summary.itertuples(index=False)
    ]
    headers = [header for header, _, _ in _COLUMNS]
    widths = [max(len(c) for c in column) for column in zip(headers, *cells, strict=True)]

    def line(texts: list[str]) -> str:
        padded = (
            t.ljust(w) if left else t.rjust(w) for t, w, (_, _, left) in zip(texts, widths, _COLUMNS, strict=True)
        )
        return "  ".join(padded)

    return [line(headers), *(line(row) for row in cells)]


def _never_ran(r: Any) -> list[str]:
    """A domain whose start failed: it has no state to show."""
    return [str(r.domain), "-", "-", "-", "no (never ran)", *["-"] * (len(_COLUMNS) - 5)]


def _reached(r: Any) -> str:
    """'yes', or 'no' with the reason: the guest crashed, or the last target was refused or clamped."""
    if r.target_reached:
        return "yes"
    if getattr(r, "crashed", False):  # summaries saved before 0.3 have no such column
        return "no (crashed)"
    if r.last_target_refused:
        return "no (refused)"
    return "no (clamped)" if r.last_target_clamped else "no"


def _seconds(s: float) -> str:
    return "-" if math.isnan(s) else f"{s:.3g}s" if s < 100 else f"{s:.0f}s"


def _mib(pages: int) -> str:
    return f"{pages_to_mib(pages):.0f} MiB"


def _seed(text: str) -> int:
    """``--seed``: a non-negative integer that fits the int64 the results keep it in."""
    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed <= INT64_MAX:
        raise argparse.ArgumentTypeError(f"seeds are non-negative integers (0 to {INT64_MAX}), not {quoted(text)}")
    return seed


def cmd_validate(args: argparse.Namespace) -> int:
    """Check every file, even after one that cannot be read or used; warnings too, one line each."""
    from balloonsim.scenario import load_scenario
    from balloonsim.scenario.squeeze_case import is_squeeze_test, load_squeeze_test
    from balloonsim.sweep.spec import is_sweep_spec

    status = 0
    for path in args.scenarios:
        try:
            if is_sweep_spec(path):
                from balloonsim.sweep.run import plan

                with warnings_printed(sys.stderr):
                    checked = plan(path)
                print(f"{path}: ok (sweep, {len(checked.points)} point(s) x {len(checked.seeds)} seed(s))")
                continue
            if is_squeeze_test(path):
                case = load_squeeze_test(path)
                print(f"{path}: ok (squeeze_test, {len(case.domains)} domain(s), expects {case.expect.outcome})")
                continue
            with warnings_printed(sys.stderr):
                s = load_scenario(path)
        except ScenarioError as err:
            for problem in err.problems:
                print(problem, file=sys.stderr)
            status = 2
            continue
        print(f"{path}: ok ({len(s.domains)} domain(s), {len(s.events)} event(s), {ns_to_s(s.duration):g} s)")
    return status


def _converted(args: argparse.Namespace) -> dict[str, Any]:
    from balloonsim.oracle import script_to_scenario
    from balloonsim.scenario.model import slug
    from balloonsim.scenario.yamldoc import MAX_BYTES
    from balloonsim.textfile import TextError, read_text

    try:
        text = read_text(args.script, MAX_BYTES)
    except TextError as err:
        raise ScenarioError([str(err)]) from None
    return script_to_scenario(
        text, slug(args.script.stem), hz=args.hz, section_pages=args.section, hotplug=args.hotplug
    )


def cmd_oracle_convert(args: argparse.Namespace) -> int:
    import io

    from ruamel.yaml import YAML
    from ruamel.yaml.scalarstring import LiteralScalarString

    from balloonsim.scenario.model import Scenario

    data = _converted(args)
    Scenario.model_validate(data)  # the converter must produce a valid scenario
    data["description"] = LiteralScalarString(data["description"])
    buf = io.StringIO()
    yaml = YAML()
    yaml.default_flow_style = None
    yaml.dump(data, buf)
    if args.output:
        args.output.write_text(buf.getvalue())
    else:
        sys.stdout.write(buf.getvalue())
    return 0


def cmd_oracle_compare(args: argparse.Namespace) -> int:
    from balloonsim.engine import run
    from balloonsim.oracle import compare_with_csv
    from balloonsim.scenario.model import Scenario

    scenario = Scenario.model_validate(_converted(args))
    try:
        csv_text = args.csv.read_text()
    except OSError as err:
        raise ScenarioError([f"{args.csv}: cannot read: {err.strerror}"]) from None
    problems = compare_with_csv(run(scenario), csv_text)
    for p in problems:
        print(p)
    rows = max(0, len(csv_text.splitlines()) - 1)
    print(f"{args.script.name}: {'differs from' if problems else 'equals'} the oracle ({rows} rows)")
    return 1 if problems else 0


def _fleet_size(guests: str, hours: str) -> tuple[int, float]:
    """``--fleet GUESTS HOURS``: a whole number of guests >= 1 and hours > 0, else a UsageError."""
    try:
        size = int(guests), float(hours)
    except ValueError:
        size = (0, 0.0)
    if size[0] < 1 or not (math.isfinite(size[1]) and size[1] > 0):
        raise UsageError(f"--fleet {guests} {hours}: give a whole number of guests (at least 1) and hours above 0")
    return size


def cmd_bench(args: argparse.Namespace) -> int:
    from balloonsim.bench import main as bench_main
    from balloonsim.bench_process import oracle_problem

    fleet = None if args.fleet is None else _fleet_size(*args.fleet)
    if args.oracle is not None and (problem := oracle_problem(args.oracle)):
        raise UsageError(f"--oracle {problem}")  # before minutes of other cases
    return bench_main(quick=args.quick, fleet_size=fleet, oracle_dir=args.oracle, sweep=args.sweep)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
