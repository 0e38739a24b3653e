"""Results that stream (issue 11): row groups written as the run goes, a host table of changes,
a Result that reads its tables when asked, and a temporary folder that goes with it."""

from __future__ import annotations

import gc
import math

import pandas as pd
import pyarrow.parquet as pq
import pytest

from balloonsim.cli import main
from balloonsim.engine import Simulation
from balloonsim.results import derived, spool
from balloonsim.results.recorder import Recorder
from balloonsim.results.result import TABLES
from balloonsim.results.store import Interrupted, load_result, save_result
from conftest import GiB, MiB, make_scenario

#: two guests, targets down and up, a workload, a host change and a target Xen refuses: rows and events
EVENTS = [
    {"at": "1s", "domain": "a", "target": "512MiB"},
    {"at": "2s", "host_free": "256MiB"},
    {"at": "3s", "domain": "b", "target": "768MiB"},
    {"at": "4s", "domain": "a", "target": "1GiB"},
    {"at": "5s", "domain": "b", "target": "2GiB"},  # above its memory: refused populates, EAGAIN, back-off
]
DOMAINS = [
    {"name": "a", "memory": "1GiB", "workloads": [{"name": "w", "constant": {"anon": "100MiB"}}]},
    {"name": "b", "memory": "1GiB", "balloon": {"driver": "v5.16"}},
]


def scenario():
    return make_scenario(EVENTS, domains=DOMAINS, host={"total": "4GiB"}, duration="10s")


@pytest.fixture(scope="module")
def whole():
    """The run as one row group (fewer rows than ROW_GROUP): tables held in memory, nothing written."""
    return Simulation(scenario()).run(progress=False)


@pytest.fixture(scope="module")
def streamed():
    """The same run, 3 rows to a row group."""
    return Simulation(scenario(), row_group=3).run(progress=False)


def test_a_run_in_tiny_row_groups_gives_the_same_tables_as_one_group(whole, streamed):
    assert whole.spool is None and streamed.spool is not None  # one held in memory, one on disk
    for name in TABLES:
        pd.testing.assert_frame_equal(streamed.read(name), whole.tables[name], obj=name)
    pd.testing.assert_frame_equal(streamed.planner_series, whole.planner_series)
    pd.testing.assert_frame_equal(streamed.planner, whole.planner)


def test_each_table_is_written_in_groups_of_the_size_asked(streamed):
    rows = len(streamed.timeline)
    assert rows > 9  # several groups
    groups = pq.ParquetFile(streamed.file("timeline")).num_row_groups
    assert groups == math.ceil(rows / 3)
    sizes = [pq.ParquetFile(streamed.file("timeline")).metadata.row_group(i).num_rows for i in range(groups)]
    assert sizes == [3] * (rows // 3) + ([rows % 3] if rows % 3 else [])


def test_the_recorder_holds_at_most_one_group_of_each_table(monkeypatch):
    most = {"timeline": 0, "host": 0, "events": 0}
    row, event = Recorder.row, Recorder.event

    def watched_row(rec, *args):
        row(rec, *args)
        most["timeline"] = max(most["timeline"], len(rec.timeline) // len(rec.columns))
        most["host"] = max(most["host"], len(rec.host) // 5)

    def watched_event(rec, *args):
        event(rec, *args)
        most["events"] = max(most["events"], len(rec.messages))

    monkeypatch.setattr(Recorder, "row", watched_row)
    monkeypatch.setattr(Recorder, "event", watched_event)
    result = Simulation(scenario(), row_group=3).run(progress=False)
    # a buffer is written out when it reaches 3 rows, so it is seen with at most 2
    assert most == {"timeline": 2, "host": 2, "events": 2}
    assert len(result.timeline) > 6 and len(result.host) > 3 and len(result.events) > 3  # it did fill groups


def test_the_host_table_has_a_row_only_where_the_host_changed():
    # one 1 GiB guest, host free 0, a target of 512 MiB at 1 s.  Timeline rows: 0 init (t=0),
    # 1 target (1 s: nothing moved yet), 2 work (1 s: 131072 pages back to Xen), 3 end (2 s).
    # Host rows: row 0 (the first: free 0, domain 262144), row 2 (free 131072, domain 131072)
    # and row 3, the last (unchanged, so that the table spans the run).
    r = Simulation(make_scenario([{"at": "1s", "target": "512MiB"}], duration="2s")).run(progress=False)
    assert r.timeline["cause"].astype(str).tolist() == ["init", "target", "work", "end"]
    assert r.host[["time_s", "row", "host_free", "domain_pages", "other_pages"]].values.tolist() == [
        [0.0, 0, 0, GiB, 0],
        [1.0, 2, 512 * MiB, 512 * MiB, 0],
        [2.0, 3, 512 * MiB, 512 * MiB, 0],
    ]


def test_derived_tables_in_batches_of_domains_are_those_of_one_batch(streamed):
    rows = streamed.timeline["domain"].value_counts(sort=False).reindex(["a", "b"]).to_numpy()
    assert derived.domain_batches(rows, 1) == [slice(0, 1), slice(1, 2)]  # one domain each
    targets, summary = derived.targets_and_summary(streamed, ["a", "b"], rows, activity_of(streamed), most=1)
    pd.testing.assert_frame_equal(targets, streamed.targets)
    pd.testing.assert_frame_equal(summary, streamed.summary)


def activity_of(result):
    """The summary's columns that come from the guests' counters, back as the counters."""
    s = result.summary.set_index(result.summary["domain"].astype(str))
    counters = {"passes": "worker_passes", "iterations": "loop_iterations", "pages_out": "pages_out",
                "pages_in": "pages_in", "hotplugged": "pages_hotplugged", "pod_faults": "pod_faults",
                "reclaimed": "balloon_reclaimed", "kswapd_reclaimed": "kswapd_reclaimed",
                "static_max_pages": "static_max_pages"}  # fmt: skip
    activity = {d: {k: int(s.loc[d, c]) for k, c in counters.items()} for d in s.index}
    below = result.summary["below_low_watermark_s"]
    assert not below.any()  # the low watermark only matters where guest_free is at or under it
    for d in activity:
        activity[d]["wmark_low_pages"] = 0
    return activity


def test_a_saved_result_reads_only_the_tables_asked_for(streamed, tmp_path, monkeypatch):
    folder = save_result(streamed, tmp_path / "r")
    read = []
    read_parquet = spool.pd.read_parquet

    def counted(path, **kw):
        read.append(path.name)
        return read_parquet(path, **kw)

    monkeypatch.setattr(spool.pd, "read_parquet", counted)
    loaded = load_result(folder)
    assert read == []  # opening reads run.json and each file's footer, no table
    pd.testing.assert_frame_equal(loaded.summary, streamed.summary)
    assert read == ["summary.parquet"]
    b = loaded.domain("b")  # one domain, by a filter on the file
    pd.testing.assert_frame_equal(b, streamed.timeline[streamed.timeline["domain"] == "b"].reset_index(drop=True))
    assert read == ["summary.parquet", "timeline.parquet"] and "timeline" not in loaded._frames
    assert loaded.read("timeline", ["time_ns"]).columns.tolist() == ["time_ns"]
    assert loaded.dataset().count_rows() == len(streamed.timeline)


def test_a_closed_or_collected_result_removes_its_temporary_folder():
    r = Simulation(scenario(), row_group=3).run(progress=False)
    folder = r.spool.folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{t}.parquet" for t in TABLES)
    summary = r.summary
    r.close()
    assert not folder.exists()
    assert r.summary is summary  # the small derived tables stay
    with pytest.raises(ValueError, match="has no timeline table: it was closed"):
        _ = r.timeline
    r = Simulation(scenario(), row_group=3).run(progress=False)
    folder = r.spool.folder
    del r
    gc.collect()
    assert not folder.exists()


def test_a_run_interrupted_while_simulating_leaves_the_destination_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: s\nduration: 10s\nhost: {total: 4GiB}\n"
        "domains: [{name: a, memory: 1GiB, costs: none}]\n"
        "events: [{at: 1s, domain: a, target: 512MiB}]\n"
    )
    out = tmp_path / "out"
    assert main(["run", str(path), "-o", str(out), "--no-plot"]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def interrupted(sim, end, simulated):
        sim.recorder._flush_timeline()  # a row group is already in the temporary folder
        raise Interrupted(15)

    monkeypatch.setattr(Simulation, "_run_until", interrupted)
    assert main(["run", str(path), "-o", str(out), "--no-plot"]) == 128 + 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "s.yaml"]  # no temporary folder, no lock
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
