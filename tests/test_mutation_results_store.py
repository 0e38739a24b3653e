"""Results on disk, exactly (issue 8: mutation testing of balloonsim/results/store.py): each refusal's
one line, the files and their bytes, the hidden folders and lock file a save makes beside the
destination, what a failed swap leaves, and what a damaged result says when read back.

Expected messages are the ones store.py documents for each case, with the operating system's
own words (strerror) where it supplies them.
"""

from __future__ import annotations

import errno
import fcntl
import json
import locale
import os
import re
import signal
import time
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from balloonsim import filelock
from balloonsim.results import spool, store
from balloonsim.results.result import Result
from balloonsim.results.store import (
    Destination,
    Interrupted,
    NotAResult,
    ResultBusy,
    ResultError,
    SaveError,
    check_destination,
    load_result,
    read_run_json,
    save_figures,
    save_result,
)

TABLE_FILES = ["events.parquet", "host.parquet", "summary.parquet", "targets.parquet", "timeline.parquet"]
#: a hidden folder or file a save makes beside the destination "r": kind, then 4 random bytes in hex
BESIDE = r"\.r\.(tmp|old)-[0-9a-f]{8}"


def tiny_result(**metadata) -> Result:
    frame = pd.DataFrame({"x": [1, 2, 3]})
    return Result(frame, frame, frame, frame, frame, {"scenario": "t", **metadata})


def listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def user_files(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text(name)


def message(raised: pytest.ExceptionInfo) -> str:
    return str(raised.value)


# -- where a result may go ---------------------------------------------------------------


@pytest.mark.parametrize(("given", "suggested"), [(".", "results"), ("..", "../results")])
def test_the_current_directory_is_refused_with_a_folder_of_its_own_suggested(given, suggested, tmp_path, monkeypatch):
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    with pytest.raises(ResultError) as raised:
        check_destination(given)
    assert message(raised) == (
        f"{given}: is the current directory or holds it, which cannot be replaced; "
        f"write into a folder of its own, e.g. {suggested}"
    )


def test_a_new_folder_is_checked_as_its_full_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # below the current directory (neither it nor a parent of it): absent, so nothing to merge or keep
    assert check_destination("sub/r") == Destination(tmp_path.resolve() / "sub" / "r", merge=False, own=frozenset())


@pytest.mark.parametrize(
    ("names", "shown"),
    [
        (["c.txt", "a.txt", "b.txt"], "a.txt, b.txt, c.txt"),  # three: all, sorted
        (["d.txt", "c.txt", "a.txt", "b.txt"], "a.txt, b.txt, c.txt and 1 more"),
        (["e.txt", "d.txt", "c.txt", "a.txt", "b.txt"], "a.txt, b.txt, c.txt and 2 more"),
    ],
)
def test_a_folder_with_other_files_is_refused_naming_three_of_them(names, shown, tmp_path):
    user_files(tmp_path / "r", names)
    with pytest.raises(ResultError) as raised:
        check_destination(tmp_path / "r")
    assert message(raised) == (
        f"{tmp_path / 'r'}: holds files balloonsim did not write ({shown}); write to a new folder, "
        "or use --force to replace only balloonsim's own files there"
    )


def test_save_result_refuses_a_folder_with_other_files_unless_forced(tmp_path):
    user_files(tmp_path / "r", ["notes.txt"])
    with pytest.raises(ResultError, match=r"holds files balloonsim did not write \(notes.txt\)"):
        save_result(tiny_result(), tmp_path / "r")
    assert listing(tmp_path / "r") == ["notes.txt"]
    save_result(tiny_result(), tmp_path / "r", force=True)
    assert listing(tmp_path / "r") == sorted(["notes.txt", "run.json", *TABLE_FILES])


def test_a_folder_that_cannot_be_listed_is_refused(tmp_path, monkeypatch):
    folder = tmp_path / "r"
    folder.mkdir()
    real_listdir = os.listdir

    def listdir(path):
        if Path(path) == folder:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return real_listdir(path)

    monkeypatch.setattr(store.os, "listdir", listdir)
    with pytest.raises(ResultError) as raised:
        check_destination(folder)
    assert message(raised) == f"{folder}: cannot be read ({os.strerror(errno.EACCES)}); choose another folder"


def test_a_file_or_a_path_under_a_file_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("x")
    with pytest.raises(ResultError) as raised:
        check_destination("a-file")
    assert message(raised) == "a-file: is a file, not a folder; choose a folder for the results"
    with pytest.raises(ResultError) as raised:
        check_destination("a-file/x/y")
    assert message(raised) == (
        f"a-file/x/y: {tmp_path.resolve() / 'a-file'} is a file, so no folder can be made under it; "
        "choose another folder"
    )


@pytest.mark.parametrize("denied", [os.W_OK, os.X_OK], ids=["no-write", "no-search"])
def test_a_folder_needs_write_and_search_permission(denied, tmp_path, monkeypatch):
    # access(2) asked for W_OK | X_OK fails when either is missing (root is refused X_OK too on a
    # folder nobody may search, and W_OK on a read-only mount)
    folder = (tmp_path / "r").resolve()
    folder.mkdir()
    asked = []

    def access(path, mode):
        asked.append((Path(path), mode))
        return not (Path(path) == folder and mode & denied)

    monkeypatch.setattr(store.os, "access", access)
    with pytest.raises(ResultError) as raised:
        check_destination(folder)
    assert message(raised) == f"{folder}: cannot write in {folder} (no permission, or read-only); choose another folder"
    assert asked == [(tmp_path.resolve(), os.W_OK | os.X_OK), (folder, os.W_OK | os.X_OK)]


# -- what is written ---------------------------------------------------------------------


def test_save_result_makes_the_missing_folders_above(tmp_path):
    out = save_result(tiny_result(), tmp_path / "a" / "b" / "r")
    assert listing(out) == sorted(["run.json", *TABLE_FILES])


def test_each_table_carries_the_runs_identity_and_only_its_own_columns(tmp_path):
    frame = pd.DataFrame({"x": [1, 2, 3]}, index=[10, 20, 30])  # an index of its own: not written
    result = Result(frame, frame, frame, frame, frame, {"seed": 7, "balloonsim_version": "x", "scenario": "t"})
    told = []
    out = save_result(result, tmp_path / "r", on_table=told.append)
    assert told == ["timeline", "events", "host", "targets", "summary"]
    for name in TABLE_FILES:
        schema = pq.read_schema(out / name)
        assert schema.names == ["x"], name
        # sorted keys; scenario_sha256 absent from the metadata: null
        assert schema.metadata[b"balloonsim"] == (
            b'{"balloonsim_version": "x", "scenario": "t", "scenario_sha256": null, "seed": 7}'
        )
        assert b"pandas" in schema.metadata  # pandas' own, which keeps the dtypes


def test_run_json_is_indented_sorted_and_lists_the_files(tmp_path):
    result = tiny_result(seed=7)
    out = save_result(
        result, tmp_path / "r", scenario={"name": "t"}, extra=lambda tmp: (tmp / "b.png").write_bytes(b"")
    )
    files = ",\n".join(f'    "{name}"' for name in sorted(["b.png", "run.json", *TABLE_FILES]))
    assert (out / "run.json").read_text() == (
        "{\n"
        '  "balloonsim_result": 1,\n'
        f'  "result_files": [\n{files}\n  ],\n'
        '  "scenario": "t",\n'
        '  "scenario_definition": {\n'
        '    "name": "t"\n'
        "  },\n"
        '  "seed": 7\n'
        "}\n"
    )


def test_the_earlier_result_is_moved_aside_beside_it_then_removed(tmp_path, monkeypatch):
    folder = save_result(tiny_result(), tmp_path / "r")
    renames = []
    real_rename = os.rename

    def rename(src, dst):
        renames.append((Path(src), Path(dst)))
        real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)
    save_result(tiny_result(seed=2), folder)
    # the earlier result to .r.old-XXXXXXXX, then the new one from .r.tmp-XXXXXXXX into its place
    assert [(src.name, dst.name) for src, dst in renames] == [("r", renames[0][1].name), (renames[1][0].name, "r")]
    assert re.fullmatch(r"\.r\.old-[0-9a-f]{8}", renames[0][1].name)
    assert re.fullmatch(r"\.r\.tmp-[0-9a-f]{8}", renames[1][0].name)
    assert {src.parent for src, _ in renames} == {tmp_path}
    assert listing(tmp_path) == ["r"] and read_run_json(folder)["seed"] == 2


def test_a_failed_swap_puts_the_earlier_result_back(tmp_path, monkeypatch):
    folder = save_result(tiny_result(), tmp_path / "r")
    before = contents(folder)
    real_rename = os.rename

    def rename(src, dst):
        if Path(src).name.startswith(".r.tmp-"):
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(src))
        real_rename(src, dst)

    monkeypatch.setattr(store.os, "rename", rename)
    with pytest.raises(SaveError) as raised:
        save_result(tiny_result(seed=2), folder)
    # the error names the temporary folder it could not move: .r.tmp-XXXXXXXX beside the result
    said = f"cannot save the result to {folder}: {os.strerror(errno.EXDEV)} ({tmp_path}/"
    assert message(raised).startswith(said) and re.fullmatch(BESIDE + r"\)", message(raised)[len(said) :])
    assert listing(tmp_path) == ["r"] and contents(folder) == before


def test_a_file_of_the_earlier_run_gone_meanwhile_is_no_error(tmp_path):
    # forced into a folder with other files: balloonsim's earlier files not written again are
    # removed, and one that is already gone (removed since the folder was checked) is no error
    folder, tmp = tmp_path / "r", tmp_path / "new"
    user_files(folder, ["notes.txt"])
    user_files(tmp, ["run.json", "timeline.parquet"])
    store._merge(tmp, Destination(folder, merge=True, own=frozenset({"gone.png"})))
    assert listing(folder) == ["notes.txt", "run.json", "timeline.parquet"] and listing(tmp) == []


# -- figures -----------------------------------------------------------------------------


def draw(names: list[str]):
    def into(tmp: Path) -> list[str]:
        for name in names:
            (tmp / name).write_bytes(b"png")
        return names

    return into


def test_figures_go_into_a_new_folder_and_its_parents_without_a_run_json(tmp_path):
    folder = tmp_path / "a" / "b" / "figs"
    assert save_figures(folder, draw(["timeline.png"])) == ["timeline.png"]
    assert listing(folder) == ["timeline.png"] and listing(tmp_path / "a" / "b") == ["figs"]


def test_figures_are_refused_for_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("a-file").write_text("x")
    with pytest.raises(ResultError) as raised:
        save_figures("a-file", draw(["timeline.png"]))
    assert message(raised) == "a-file: is a file, not a folder; choose a folder for the results"


def test_figures_list_only_balloonsims_kinds_of_files_in_run_json(tmp_path):
    folder = save_result(tiny_result(), tmp_path / "r")
    run = read_run_json(folder)
    # a run.json that lists more than it should: a user's file, a path, a number
    run["result_files"] += ["notes.txt", "sub/x.png", "../x.png", 7]
    (folder / "run.json").write_text(json.dumps(run))
    save_figures(folder, draw(["timeline.png"]))
    assert read_run_json(folder)["result_files"] == sorted(["run.json", "timeline.png", *TABLE_FILES])


def test_a_run_json_whose_file_list_is_not_a_list_owns_only_itself(tmp_path):
    folder = save_result(tiny_result(), tmp_path / "r")
    run = read_run_json(folder)
    run["result_files"] = "timeline.parquet"
    (folder / "run.json").write_text(json.dumps(run))
    with pytest.raises(ResultError) as raised:
        check_destination(folder)
    assert "(events.parquet, host.parquet, summary.parquet and 2 more)" in message(raised)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "x.png"), f"{os.strerror(errno.ENOSPC)} (x.png)"),
        (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), os.strerror(errno.ENOSPC)),  # no file named
        (OSError("the disk went away"), "the disk went away"),  # no strerror
    ],
)
def test_a_failure_to_write_figures_is_one_line_and_leaves_nothing(error, reason, tmp_path):
    def fail(_tmp):
        raise error

    with pytest.raises(SaveError) as raised:
        save_figures(tmp_path / "figs", fail)
    assert message(raised) == f"cannot write the figures to {tmp_path / 'figs'}: {reason}"
    assert listing(tmp_path) == ["figs"] and listing(tmp_path / "figs") == []


# -- one writer at a time, signals -------------------------------------------------------


def test_the_lock_file_is_beside_the_folder_while_saving_and_gone_after(tmp_path):
    seen = {}

    def look(_tmp):
        lock = tmp_path / ".r.lock"
        seen["mode"] = lock.stat().st_mode & 0o777

    previous = os.umask(0o022)
    try:
        save_result(tiny_result(), tmp_path / "r", extra=look)
    finally:
        os.umask(previous)
    assert seen == {"mode": 0o644}  # as open(2) makes a file: 0o666 less the umask
    assert listing(tmp_path) == ["r"]


def test_a_folder_locked_by_another_writer_is_busy(tmp_path):
    lock = os.open(tmp_path / ".r.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX)
        with pytest.raises(ResultBusy) as raised:
            save_result(tiny_result(), tmp_path / "r")
    finally:
        os.close(lock)
    assert message(raised) == (
        f"{tmp_path.resolve() / 'r'}: another balloonsim is writing there right now; this result was not saved "
        "(run again when it has finished, or choose another folder)"
    )
    assert listing(tmp_path) == [".r.lock"]


def test_a_lock_file_its_holder_removed_meanwhile_is_not_taken(tmp_path, monkeypatch):
    # the holder unlinks the lock file, then unlocks: a writer that opened the old file then holds
    # a lock on a file no one else can find, so it locks the one at the path anew
    path = tmp_path / ".r.lock"
    real_flock = fcntl.flock
    calls = []

    def flock(fd, op):
        real_flock(fd, op)
        calls.append(fd)
        if len(calls) == 1:
            path.unlink()

    monkeypatch.setattr(filelock.fcntl, "flock", flock)
    fd, locked = store._lock(tmp_path / "r")
    try:
        assert len(calls) == 2 and locked == path
        assert os.path.samestat(os.fstat(fd), os.stat(path))
    finally:
        store._unlock(fd, locked)
    assert listing(tmp_path) == []


def test_a_lock_file_removed_during_the_save_is_no_error(tmp_path):
    save_result(tiny_result(), tmp_path / "r", extra=lambda _tmp: (tmp_path / ".r.lock").unlink())
    assert listing(tmp_path) == ["r"]


def test_interrupted_names_its_signal():
    err = Interrupted(signal.SIGTERM)
    assert (str(err), err.signum, isinstance(err, KeyboardInterrupt)) == ("SIGTERM", signal.SIGTERM, True)


@pytest.fixture
def int_and_hup_restored():
    """SIGINT and SIGHUP as they were after the test (a test sets them: a process started by
    nohup or in the background inherits them ignored)."""
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGHUP)}
    yield
    for s, handler in previous.items():
        signal.signal(s, handler)


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM has a handler here")
def test_while_saving_signals_have_the_windows_handler_and_a_handler_of_ones_own_is_kept(int_and_hup_restored):
    # checked without sending a signal: were the handler missing, SIGTERM would end the test process
    def mine(_signum, _frame):
        pass

    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGHUP, mine)
    with store._SavingSignals() as signals:
        assert signal.getsignal(signal.SIGTERM) == signals._caught
        assert signal.getsignal(signal.SIGINT) == signals._caught  # Python's default_int_handler replaced
        assert signal.getsignal(signal.SIGHUP) is mine
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    assert signal.getsignal(signal.SIGHUP) is mine


def test_while_saving_an_ignored_signal_stays_ignored(int_and_hup_restored):
    # `nohup balloonsim run ...` asked for SIGHUP to be ignored; a save must not undo that
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with store._SavingSignals():
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN


@pytest.mark.skipif(signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL, reason="SIGTERM has a handler here")
def test_outside_the_swap_a_signal_interrupts_at_once():
    reached = False
    with store._SavingSignals() as signals, pytest.raises(Interrupted):
        assert signal.getsignal(signal.SIGTERM) == signals._caught  # else the signal would end this process
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises in the main thread before this ends
        reached = True
    assert not reached


# -- reading a result back ---------------------------------------------------------------


def test_a_run_json_that_is_a_folder_cannot_be_read(tmp_path):
    (tmp_path / "run.json").mkdir()
    with pytest.raises(ResultError) as raised:
        read_run_json(tmp_path)
    assert message(raised) == f"{tmp_path / 'run.json'}: cannot be read ({os.strerror(errno.EISDIR)})"


def test_a_run_json_that_is_not_text_cannot_be_read(tmp_path):
    (tmp_path / "run.json").write_bytes(b"\xff{}")
    try:
        b"\xff".decode(locale.getpreferredencoding(False))  # as Path.read_text() decodes
    except UnicodeDecodeError:
        pass
    else:
        pytest.skip("this locale's encoding decodes every byte")
    with pytest.raises(ResultError) as raised:
        read_run_json(tmp_path)
    # UnicodeDecodeError has no strerror: its own text, which names the byte
    assert message(raised).startswith(f"{tmp_path / 'run.json'}: cannot be read (")
    assert "can't decode byte 0xff in position 0" in message(raised)


@pytest.mark.parametrize(
    ("text", "is_result"),
    [
        ('{"balloonsim_result": 1}', True),  # the marker alone
        ('{"scenario_sha256": "abc", "balloonsim_version": "0.1.0"}', True),  # balloonsim 0.1.0's keys, no more
        ('{"scenario_sha256": "abc"}', False),
        ("[1]", False),
        ('"balloonsim_result"', False),
    ],
)
def test_a_run_json_is_balloonsims_by_its_marker_or_its_earlier_keys(text, is_result, tmp_path):
    (tmp_path / "run.json").write_text(text)
    if is_result:
        assert read_run_json(tmp_path) == json.loads(text)
        return
    with pytest.raises(NotAResult) as raised:
        read_run_json(tmp_path)
    assert message(raised) == f"{tmp_path}: not a balloonsim result (run.json was not written by balloonsim)"


def test_no_run_json_or_not_a_folder_is_not_a_result(tmp_path):
    with pytest.raises(NotAResult) as raised:
        read_run_json(tmp_path)
    assert message(raised) == f"{tmp_path}: not a balloonsim result (no run.json)"
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotAResult) as raised:
        read_run_json(tmp_path / "f")
    assert message(raised) == f"{tmp_path / 'f'}: not a balloonsim result (not a folder)"


def test_a_run_json_that_is_not_json_names_the_line(tmp_path):
    (tmp_path / "run.json").write_text('{\n  "seed": 1,\n  x\n}\n')
    with pytest.raises(ResultError) as raised:
        read_run_json(tmp_path)
    # json's own words for a key that is not a string, on the third line
    assert message(raised) == (
        f"{tmp_path / 'run.json'}: not valid JSON (line 3: Expecting property name enclosed in double quotes); "
        "the result is damaged"
    )


@pytest.mark.parametrize(
    ("error", "detail"),
    [
        (pa.ArrowInvalid("Parquet magic bytes not found in footer"), "Parquet magic bytes not found in footer"),
        (OSError("first line\nsecond line"), "first line"),  # the first line only
        (ValueError(""), "ValueError"),  # nothing to say: the kind of error
    ],
)
def test_a_table_that_cannot_be_read_names_the_file_and_why(error, detail, tmp_path, monkeypatch):
    folder = save_result(tiny_result(), tmp_path / "r")

    def read_parquet(_path, **_kw):
        raise error

    monkeypatch.setattr(spool.pd, "read_parquet", read_parquet)
    loaded = load_result(folder)  # a table is read when first asked for
    with pytest.raises(ResultError) as raised:
        _ = loaded.timeline
    assert (
        message(raised)
        == f"{folder / 'timeline.parquet'}: not a readable Parquet file ({detail}); the result is damaged"
    )


def test_a_missing_table_is_not_a_result(tmp_path):
    folder = save_result(tiny_result(), tmp_path / "r")
    (folder / "host.parquet").unlink()
    with pytest.raises(NotAResult) as raised:
        load_result(folder)
    assert message(raised) == f"{folder}: not a balloonsim result (missing host.parquet)"
