"""Tables derived from a run and their Parquet files."""

import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from balloonsim.results.store import METADATA_KEY, load_result, save_result
from conftest import GiB, MiB, make_scenario, run


@pytest.fixture(scope="module")
def backoff_result():
    return run(
        make_scenario(
            [
                {"at": "0s", "target": "768MiB"},
                {"at": "1s", "host_free": 1000},
                {"at": "1s", "target": "1GiB"},
                {"at": "30s", "host_free": 70000},
                {"at": "30s", "target": "900MiB"},
            ],
            duration="40s",
        )
    )


def test_target_episodes(backoff_result):
    t = backoff_result.targets
    assert t["target_pages"].tolist() == [GiB, 768 * MiB, GiB, 900 * MiB]
    assert t["set_s"].tolist() == [0.0, 0.0, 1.0, 30.0]
    assert t["reached"].tolist() == [True, True, False, True]
    assert t["time_to_reach_s"].isna().tolist() == [False, False, True, False]
    assert t.iloc[2]["end_pages"] == 768 * MiB + 1000  # the host had only 1000 pages to give


def test_domain_summary(backoff_result):
    s = backoff_result.summary.iloc[0]
    assert s["final_current_pages"] == s["final_target_pages"] == 900 * MiB and s["target_reached"]
    assert (s["targets"], s["targets_reached"]) == (4, 3)
    assert (s["eagain_passes"], s["cancellations"]) == (3, 1)  # retries at 3, 7 s; cancelled at 15 s
    assert s["worker_passes"] == 6  # 0 s, 1, 3, 7, 15 and 30 s
    assert s["pages_out"] == 256 * MiB
    assert s["pages_in"] == 1000 + (900 - 768) * MiB - 1000
    # at 1 s a grant of 488 of 512 then a refusal; refusals again at 3, 7 and 15 s
    assert s["populate_short"] == 5


def test_events_record_back_off_and_cancellation(backoff_result):
    ev = backoff_result.events
    states = ev[ev["kind"].isin(["EAGAIN", "ECANCELED"])]
    assert states["kind"].astype(str).tolist() == ["EAGAIN", "EAGAIN", "EAGAIN", "ECANCELED"]
    assert states["time_s"].tolist() == [1.0, 3.0, 7.0, 15.0]
    assert states.iloc[0]["message"] == "retry 2 in 2 s"


def test_results_round_trip_through_parquet(backoff_result, tmp_path):
    backoff_result.metadata.update(scenario="t", scenario_sha256="abc", seed=0, balloonsim_version="x")
    out = save_result(backoff_result, tmp_path / "r", scenario={"name": "t"})
    loaded = load_result(out)
    for name, frame in backoff_result.tables.items():
        pd.testing.assert_frame_equal(frame, loaded.tables[name])
    identity = json.loads(pq.read_schema(out / "timeline.parquet").metadata[METADATA_KEY])
    assert identity == {"scenario": "t", "scenario_sha256": "abc", "seed": 0, "balloonsim_version": "x"}
    assert json.loads((out / "run.json").read_text())["scenario_definition"] == {"name": "t"}


def test_the_same_run_writes_the_same_bytes(tmp_path):
    s = make_scenario([{"at": "1s", "target": "512MiB"}])
    a = save_result(run(s), tmp_path / "a")
    b = save_result(run(s), tmp_path / "b")
    for name in ("timeline", "events", "host", "targets", "summary"):
        assert (a / f"{name}.parquet").read_bytes() == (b / f"{name}.parquet").read_bytes(), name


def test_an_interrupted_write_leaves_nothing_behind(backoff_result, tmp_path):
    save_result(backoff_result, tmp_path / "r")
    before = sorted(p.name for p in (tmp_path / "r").iterdir())

    def fail(_tmp):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        save_result(backoff_result, tmp_path / "r", extra=fail)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r"]  # no temporary directory left
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == before  # the old result is intact
    with pytest.raises(FileNotFoundError, match="not a balloonsim result"):
        load_result(tmp_path)
