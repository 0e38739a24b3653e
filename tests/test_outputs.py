"""Where results go: nothing but balloonsim's own files is ever replaced, a bad destination is
refused before simulating, saving is atomic, and the command line ends in one line, never a traceback."""

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import balloonsim.engine
import balloonsim.plots
from balloonsim.cli import main
from balloonsim.progress import RunProgress
from balloonsim.results import spool, store
from balloonsim.results.store import Interrupted, ResultBusy, ResultError, load_result, save_result
from conftest import make_scenario, run

TINY = """\
name: tiny
duration: 2s
host: {total: 2GiB}
domains: [{name: a, memory: 1GiB, initial_target: absent, costs: none}]
events: [{at: 1s, domain: a, target: 512MiB}]
"""
TABLE_FILES = ["events.parquet", "host.parquet", "summary.parquet", "targets.parquet", "timeline.parquet"]


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY)
    return path


@pytest.fixture(scope="module")
def result():
    return run(make_scenario([{"at": "1s", "target": "512MiB"}], duration="2s"))


@pytest.fixture
def no_simulation(monkeypatch):
    """Any simulation fails the test: a refusal must come before it."""

    def simulate(*_args, **_kw):
        raise AssertionError("the run was simulated before its destination was checked")

    monkeypatch.setattr(balloonsim.engine.Simulation, "run", simulate)


def user_files(folder: Path) -> dict[str, bytes]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {"my.yaml": b"duration: 1s\n", "notes.txt": b"what I tried\n", "sketch.png": b"not balloonsim's"}
    for name, content in files.items():
        (folder / name).write_bytes(content)
    return files


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- what may be written where -----------------------------------------------------------


def test_a_folder_with_other_files_is_refused_before_simulating(tiny, tmp_path, capsys, no_simulation):
    folder = tmp_path / "experiment"
    files = user_files(folder)
    assert main(["run", str(tiny), "-o", str(folder)]) == 2
    err = one_line(capsys.readouterr().err)
    assert str(folder) in err and "my.yaml, notes.txt, sketch.png" in err and "--force" in err
    assert {name: (folder / name).read_bytes() for name in listing(folder)} == files


def test_force_replaces_only_balloonsims_own_files(result, tmp_path):
    folder = tmp_path / "experiment"
    files = user_files(folder)

    def figures(names):
        return lambda tmp: [(tmp / name).write_bytes(b"png") for name in names]

    save_result(result, folder, extra=figures(["timeline.png", "memory-a.png"]), force=True)
    assert listing(folder) == sorted([*files, *TABLE_FILES, "run.json", "timeline.png", "memory-a.png"])
    # the second run draws no memory-a.png: the first run's is removed, the user's files are not touched
    save_result(result, folder, extra=figures(["timeline.png"]), force=True)
    assert listing(folder) == sorted([*files, *TABLE_FILES, "run.json", "timeline.png"])
    assert {name: (folder / name).read_bytes() for name in files} == files
    run_json = json.loads((folder / "run.json").read_text())
    assert run_json["result_files"] == sorted([*TABLE_FILES, "run.json", "timeline.png"])


def test_force_never_replaces_a_users_file_of_a_name_balloonsim_writes(tiny, tmp_path, capsys, no_simulation):
    # the user's own run.json and summary.png: balloonsim did not write them, so they are not its own
    folder = tmp_path / "experiment"
    files = {**user_files(folder), "run.json": b'{"my": "notes"}', "summary.png": b"my chart"}
    for name in ("run.json", "summary.png"):
        (folder / name).write_bytes(files[name])
    assert main(["run", str(tiny), "-o", str(folder), "--force"]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"balloonsim: {folder}: holds run.json, summary.png, which balloonsim did not write")
    assert {name: (folder / name).read_bytes() for name in listing(folder)} == files


def test_force_from_the_command_line_keeps_other_files(tiny, tmp_path):
    folder = tmp_path / "experiment"
    files = user_files(folder)
    assert main(["run", str(tiny), "-o", str(folder), "--force", "--no-plot"]) == 0
    assert listing(folder) == sorted([*files, *TABLE_FILES, "run.json"])
    assert {name: (folder / name).read_bytes() for name in files} == files
    assert load_result(folder).metadata["scenario"] == "tiny"


def test_an_earlier_result_is_replaced_whole(tiny, tmp_path, capsys):
    folder = tmp_path / "r"
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot", "--seed", "1"]) == 0
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot", "--seed", "2"]) == 0
    assert f"wrote {folder}/" in capsys.readouterr().out
    assert load_result(folder).metadata["seed"] == 2
    assert listing(tmp_path) == ["r", "tiny.yaml"]  # no temporary folder, old copy or lock file beside it


def test_an_empty_folder_takes_a_result(tiny, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 0
    assert listing(folder) == sorted([*TABLE_FILES, "run.json"])


def test_a_run_json_not_written_by_balloonsim_makes_no_result(tiny, tmp_path, no_simulation):
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "run.json").write_text('{"scenario": "mine"}\n')  # no balloonsim_result marker
    assert main(["run", str(tiny), "-o", str(folder)]) == 2
    assert (folder / "run.json").read_text() == '{"scenario": "mine"}\n'


def earlier_version_result(result, folder: Path) -> None:
    """A result as balloonsim 0.1.0 wrote it: tables, figures, a run.json without the marker."""
    save_result(result, folder, extra=lambda tmp: (tmp / "timeline.png").write_bytes(b"png"))
    run_json = json.loads((folder / "run.json").read_text())
    del run_json["balloonsim_result"], run_json["result_files"]
    run_json.update(scenario_sha256="abc", balloonsim_version="0.1.0")
    (folder / "run.json").write_text(json.dumps(run_json))


def test_an_earlier_versions_result_is_read_and_replaced(result, tiny, tmp_path):
    folder = tmp_path / "old"
    earlier_version_result(result, folder)
    assert load_result(folder).metadata["balloonsim_version"] == "0.1.0"
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 0
    assert listing(folder) == sorted([*TABLE_FILES, "run.json"])  # its figure went with it


def test_an_earlier_versions_result_with_other_files_is_refused(result, tiny, tmp_path, no_simulation):
    folder = tmp_path / "old"
    earlier_version_result(result, folder)
    (folder / "notes.txt").write_text("mine\n")
    assert main(["run", str(tiny), "-o", str(folder)]) == 2
    assert (folder / "notes.txt").read_text() == "mine\n" and (folder / "timeline.png").exists()


@pytest.mark.parametrize(
    ("output", "says"),
    [
        ("a-file", "a-file: is a file"),
        ("a-file/out", "a-file is a file, so no folder can be made under it"),
        (".", "is the current directory"),
        ("..", "is the current directory or holds it"),
    ],
)
def test_an_impossible_destination_is_refused_before_simulating(
    output, says, tiny, tmp_path, monkeypatch, capsys, no_simulation
):
    (tmp_path / "a-file").write_text("x")
    monkeypatch.chdir(tmp_path)
    before = listing(tmp_path)
    assert main(["run", str(tiny), "-o", output]) == 2
    assert says in one_line(capsys.readouterr().err)
    assert listing(tmp_path) == before


def test_the_default_destination_follows_the_same_rules(tiny, tmp_path, monkeypatch, capsys, no_simulation):
    monkeypatch.chdir(tmp_path)
    user_files(tmp_path / "results" / "tiny")
    assert main(["run", str(tiny)]) == 2
    assert "results/tiny: holds files balloonsim did not write" in one_line(capsys.readouterr().err)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_a_read_only_folder_is_refused_before_simulating(tiny, tmp_path, capsys, no_simulation):
    parent = tmp_path.resolve() / "ro"
    parent.mkdir()
    parent.chmod(0o555)
    try:
        assert main(["run", str(tiny), "-o", str(parent / "out")]) == 2
    finally:
        parent.chmod(0o755)
    assert f"cannot write in {parent}" in one_line(capsys.readouterr().err)


def test_a_folder_access_denies_is_refused_before_simulating(tiny, tmp_path, monkeypatch, capsys, no_simulation):
    # what access(2) answers for a read-only folder to anyone but root (and to root on a read-only mount)
    parent = tmp_path.resolve() / "ro"
    parent.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != parent and real_access(path, mode))
    assert main(["run", str(tiny), "-o", str(parent / "a" / "b")]) == 2
    assert f"cannot write in {parent}" in one_line(capsys.readouterr().err)
    assert listing(parent) == []


def test_a_mount_point_is_refused_before_simulating(tiny, tmp_path, monkeypatch, capsys, no_simulation):
    # a mount point cannot be renamed (EBUSY) nor take files from its parent's file system (EXDEV)
    folder = tmp_path / "mnt"
    folder.mkdir()
    ismount = os.path.ismount
    monkeypatch.setattr(os.path, "ismount", lambda p: Path(p) == folder or ismount(p))
    assert main(["run", str(tiny), "-o", str(folder), "--force"]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"balloonsim: {folder}: is a mount point; write into a folder inside it, e.g. {folder / 'results'}\n"
    )


# -- how it is written -------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o002, 0o027])
def test_modes_follow_the_umask(umask, result, tmp_path):
    previous = os.umask(umask)
    try:
        out = save_result(result, tmp_path / "new" / "r", extra=lambda tmp: (tmp / "f.png").write_bytes(b"png"))
    finally:
        os.umask(previous)
    # as mkdir(2) and open(2) make them: folders 0o777, files 0o666, less the umask
    # (0o002: 0o775 and 0o664; 0o027: 0o750 and 0o640), never mkdtemp's 0o700
    for folder in (tmp_path / "new", out):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask
    for name in [*TABLE_FILES, "run.json", "f.png"]:
        assert (out / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_a_folder_that_is_replaced_keeps_its_own_mode(result, tmp_path):
    # a shared project folder: setgid, group-writable, no access for others; the umask is stricter
    folder = tmp_path / "shared"
    folder.mkdir()
    folder.chmod(0o2770)
    previous = os.umask(0o077)
    try:
        save_result(result, folder)
        save_result(result, folder)  # an earlier result, replaced
    finally:
        os.umask(previous)
    assert folder.stat().st_mode & 0o7777 == 0o2770
    assert (folder / "run.json").stat().st_mode & 0o777 == 0o600  # files as the umask makes them


@pytest.fixture
def sigterm_default():
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        pytest.skip("SIGTERM has a handler here; the saving window only replaces the default")


def test_sigterm_while_saving_leaves_the_earlier_result_and_nothing_else(result, tmp_path, sigterm_default):
    folder = save_result(result, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}

    def terminated(_tmp):
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` while the figures are drawn

    with pytest.raises(Interrupted) as raised:
        save_result(result, folder, extra=terminated)
    assert raised.value.signum == signal.SIGTERM
    assert listing(tmp_path) == ["r"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the window's handler is gone


def test_sigterm_while_saving_exits_143(tiny, tmp_path, monkeypatch, capsys, sigterm_default):
    monkeypatch.setattr(balloonsim.plots, "write_figures", lambda *_, **__: os.kill(os.getpid(), signal.SIGTERM))
    assert main(["run", str(tiny), "-o", str(tmp_path / "r")]) == 128 + 15
    assert "interrupted" in one_line(capsys.readouterr().err)
    assert listing(tmp_path) == ["tiny.yaml"]


def test_a_signal_during_the_swap_waits_for_its_end(sigterm_default):
    finished = False
    with store._SavingSignals() as signals, pytest.raises(Interrupted):
        with signals.held():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.2)  # the handler runs meanwhile; were the signal not held, it would raise here
            finished = True
    assert finished


def test_of_two_saves_at_once_one_wins_and_the_other_says_so(result, tiny, tmp_path, capsys):
    folder = tmp_path / "r"
    inside, release = threading.Event(), threading.Event()
    errors = []

    def slow_figures(_tmp):
        inside.set()
        release.wait(30)

    def first():
        try:
            save_result(result, folder, extra=slow_figures)
        except Exception as err:  # reported by the assertion below
            errors.append(err)

    writer = threading.Thread(target=first)
    writer.start()
    try:
        assert inside.wait(30)
        assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 1
        with pytest.raises(ResultBusy, match="another balloonsim is writing there"):
            save_result(result, folder)
    finally:
        release.set()
        writer.join(30)
    assert errors == []
    err = one_line(capsys.readouterr().err)
    assert f"balloonsim: {folder}: another balloonsim is writing there" in err
    assert load_result(folder).metadata["scenario"] == "t"  # the first one's (make_scenario's name)
    assert listing(tmp_path) == ["r", "tiny.yaml"]


def test_a_full_disk_ends_in_one_line_and_leaves_nothing(result, tiny, tmp_path, monkeypatch, capsys):
    folder = save_result(result, tmp_path / "r")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    written = []
    write_table = spool.pq.ParquetWriter.write_table

    def write_some(writer, table, **kw):  # the first row group is written, then the disk is full
        if written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(writer.where))
        written.append(writer.where)
        write_table(writer, table, **kw)

    monkeypatch.setattr(spool.pq.ParquetWriter, "write_table", write_some)
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 1
    err = one_line(capsys.readouterr().err)
    assert f"cannot save the result to {folder}: No space left on device" in err
    assert listing(tmp_path) == ["r", "tiny.yaml"]
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


# -- reading a result back ---------------------------------------------------------------


def damage_parquet(folder):
    path = folder / "timeline.parquet"
    path.write_bytes(path.read_bytes()[:100])  # truncated: no Parquet footer
    return path


def damage_run_json(folder):
    path = folder / "run.json"
    path.write_text(path.read_text()[:40])
    return path


def remove_table(folder):
    (folder / "events.parquet").unlink()
    return folder


def swap_tables(folder):
    (folder / "timeline.parquet").write_bytes((folder / "events.parquet").read_bytes())
    return folder


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (damage_parquet, "not a readable Parquet file"),
        (damage_run_json, "not valid JSON"),
        (remove_table, "not a balloonsim result (missing events.parquet)"),
        (swap_tables, "a table lacks the column 'demand_pages' the figures need; the result is damaged"),
    ],
)
def test_plot_of_a_damaged_result_names_the_file(damage, says, result, tmp_path, capsys):
    folder = save_result(result, tmp_path / "r")
    culprit = damage(folder)
    assert main(["plot", str(folder)]) == 2
    err = one_line(capsys.readouterr().err)
    assert err.startswith(f"balloonsim: {culprit}") and says in err


@pytest.mark.parametrize("what", ["folder", "file"])
def test_plot_of_something_else_exits_2(what, tmp_path, capsys):
    target = tmp_path / "x"
    target.mkdir() if what == "folder" else target.write_text("x")
    assert main(["plot", str(target)]) == 2
    assert f"balloonsim: {target}: not a balloonsim result" in one_line(capsys.readouterr().err)


def test_plot_into_another_result_is_refused(result, tmp_path, capsys):
    first, second = save_result(result, tmp_path / "a"), save_result(result, tmp_path / "b")
    before = {p.name: p.read_bytes() for p in second.iterdir()}
    assert main(["plot", str(first), "-o", str(second)]) == 2
    assert one_line(capsys.readouterr().err) == (
        f"balloonsim: {second}: is another run's result, whose figures these would replace; draw into {first} "
        "or a folder of its own\n"
    )
    assert {p.name: p.read_bytes() for p in second.iterdir()} == before


def test_plot_lists_its_figures_so_the_next_run_may_replace_them(tiny, tmp_path, monkeypatch):
    folder = tmp_path / "r"
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 0

    def draw(_result, where):
        (Path(where) / "timeline.png").write_bytes(b"png")
        return ["timeline.png"]

    monkeypatch.setattr(balloonsim.plots, "write_figures", draw)
    assert main(["plot", str(folder)]) == 0
    assert "timeline.png" in json.loads((folder / "run.json").read_text())["result_files"]
    assert main(["run", str(tiny), "-o", str(folder), "--no-plot"]) == 0  # not refused: all its files are ours
    assert listing(folder) == sorted([*TABLE_FILES, "run.json"])


# -- the command line's output ----------------------------------------------------------


@pytest.mark.parametrize("unbuffered", ["", "1"])
def test_a_reader_that_stops_reading_gets_no_traceback(unbuffered, tiny, tmp_path):
    run_cmd = [sys.executable, "-m", "balloonsim", "run", str(tiny), "-o", str(tmp_path / "r"), "--no-plot"]
    # buffered (the usual): the summary reaches the pipe only when flushed; unbuffered: at each print
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"} | {"PYTHONUNBUFFERED": unbuffered}
    proc = subprocess.Popen(run_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    proc.stdout.close()  # as `| head -1` that has already gone, long before the summary is printed
    err = proc.stderr.read()
    assert proc.wait(120) == 141, err  # 128 + SIGPIPE, as for any command whose reader went
    assert err == b""
    assert load_result(tmp_path / "r").metadata["scenario"] == "tiny"  # saved before printing


def test_progress_shows_whole_seconds_and_each_stage(capsys):
    with RunProgress("q", shown=True) as progress:
        progress.simulated(45_000_000_001, 90_000_000_000)  # the engine's report at 45.000000001 s of 90
        progress.saving(5)
        progress.drawing(0, 4)
    err = capsys.readouterr().err
    assert "q: simulating 45/90 s" in err and "45.0" not in err
    assert "q: saving tables 0/5" in err and "q: drawing figures 0/4" in err


def test_progress_of_a_short_run_shows_tenths(capsys):
    with RunProgress("q", shown=True) as progress:
        progress.simulated(1_250_000_000, 2_000_000_000)
    # 1.25 s of 2 s: tenths, rounded half to even by format()
    assert "q: simulating 1.2/2.0 s" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "shown"), [("--progress", True), ("--no-progress", False)])
def test_the_progress_flag_forces_the_bar(flag, shown, tiny, tmp_path, capsys):
    assert main(["run", str(tiny), "-o", str(tmp_path / "r"), flag]) == 0
    err = capsys.readouterr().err
    # tiny has no workloads: write_figures draws timeline, host, gap_heatmap and summary, no memory-*.png
    assert ("tiny: simulating" in err and "tiny: saving tables" in err and "drawing figures 0/4" in err) is shown
    assert (err == "") is not shown


def test_check_destination_reports_the_mode(result, tmp_path):
    assert store.check_destination(tmp_path / "new").merge is False
    user_files(tmp_path / "mixed")
    with pytest.raises(ResultError):
        store.check_destination(tmp_path / "mixed")
    assert store.check_destination(tmp_path / "mixed", force=True).merge is True
    save_result(result, tmp_path / "r")
    checked = store.check_destination(tmp_path / "r")
    assert (checked.merge, sorted(checked.own)) == (False, sorted([*TABLE_FILES, "run.json"]))


def test_every_figure_a_run_draws_is_a_name_balloonsim_knows_it_writes(tmp_path):
    # a workload, so that a memory figure is drawn too
    domain = {"workloads": [{"name": "w", "constant": {"anon": "100MiB"}}]}
    r = run(make_scenario([{"at": "1s", "target": "512MiB"}], domain=domain, duration="2s"))
    names = balloonsim.plots.write_figures(r, tmp_path)
    assert set(store.FIGURES) <= set(names) and any(n.startswith("memory-") for n in names)
    assert all(store._may_write(name) for name in names)
