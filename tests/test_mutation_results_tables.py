"""The tables as build_result makes them from the recorder's buffers, column by column, and the
run's settings as run.json and every figure's title carry them (issue 8: mutation testing of
balloonsim/results/).

The recorder here is fed by toy components, so every value is one written below and each
expected table is worked out by hand from the rows recorded.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import test_summary
from test_summary import hand_events, hand_timeline

from balloonsim.columns import Column
from balloonsim.errors import RunWarning
from balloonsim.registry import MANAGERS
from balloonsim.results.recorder import Recorder
from balloonsim.results.result import HOST, Result, build_result
from balloonsim.results.settings import run_label, run_settings
from balloonsim.results.store import load_result, save_result
from balloonsim.results.summary import (
    domain_summary,
    host_needed_reached_s,
    last_request_refused_or_clamped,
    row_durations,
    target_episodes,
    worst_first,
)
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import Nanoseconds
from conftest import make_scenario

S = 1_000_000_000
STATES = ("NONE", "DONE", "WAIT", "EAGAIN", "ECANCELED")


class Driver:
    """A driver's columns (the ones the summary reads), its values set by the test before each row."""

    COLUMNS = (
        Column("current_pages"),
        Column("target_pages"),
        Column("state", "category", STATES),
        Column("work_pending", "bool", fill=0),
        Column("retry_count"),
    )

    def __init__(self) -> None:
        self.values = (0, 0, 0, 0, 1)

    def row_values(self) -> tuple[int, ...]:
        return self.values


class Memory:
    """The guest memory's and tasks' columns the summary reads."""

    NAMES = ("guest_free", "mem_available", "swap_pages", "oom_count", "unmet_demand", "unmet_anon", "unmet_cache")
    COLUMNS = tuple(Column(name) for name in NAMES)

    def __init__(self) -> None:
        self.values = (0,) * 7

    def row_values(self) -> tuple[int, ...]:
        return self.values


class Extra:
    """Columns only some guests have (as another driver version's): the others get each one's fill."""

    COLUMNS = (Column("extra", fill=-7), Column("phase", "category", ("up", "down")), Column("flag", "bool", fill=0))

    def __init__(self) -> None:
        self.values = (0, 0, 0)

    def row_values(self) -> tuple[int, ...]:
        return self.values


class FakeHost(SimpleNamespace):
    """The host's three figures, as the recorder reads them."""

    def snapshot(self) -> tuple[int, int, int]:
        return self.free_pages, self.domain_pages, self.other_pages


def toy_recording() -> Recorder:
    """Three guests: a (Driver, Memory, Extra), b (Driver, Memory: no Extra), c (Extra first)."""
    a, b, c = [Driver(), Memory(), Extra()], [Driver(), Memory()], [Extra(), Driver(), Memory()]
    host = FakeHost(free_pages=0, domain_pages=0, other_pages=0)
    rec = Recorder(["a", "b", "c"], [a, b, c], host)
    init, work, end = rec.causes("init"), rec.causes("work"), rec.causes("end")
    target = rec.causes("target")  # a cause of the script's: coded after the three every run has

    def row(now, index, cause, driver, memory, extra, free):
        sources = (a, b, c)[index]
        next(s for s in sources if isinstance(s, Driver)).values = driver
        next(s for s in sources if isinstance(s, Memory)).values = memory
        for s in sources:
            if isinstance(s, Extra):
                s.values = extra
        host.free_pages, host.domain_pages, host.other_pages = free, 1000 - free, 24
        rec.row(now, index, cause)

    mem = (500, 600, 0, 0, 0, 0, 0)
    row(0, 0, init, (100, 100, 0, 0, 1), mem, (5, 0, 1), 100)
    row(0, 1, init, (200, 200, 0, 0, 1), mem, None, 100)
    row(0, 2, init, (300, 300, 1, 1, 1), mem, (9, 1, 0), 100)
    row(2_500_000_000, 0, target, (100, 50, 1, 1, 1), mem, (6, 1, 1), 90)
    row(3_004_999_999, 1, work, (200, 200, 3, 1, 2), (400, 450, 3, 0, 8, 5, 3), None, 80)
    row(3_004_999_999, 2, work, (300, 300, 4, 0, 1), mem, (10, 0, 0), 80)
    row(100_000_000_500_000_000, 0, end, (50, 50, 1, 0, 1), mem, (7, 0, 0), 150)
    rec.event(2_500_000_000, 0, "EAGAIN", -1, -1, "retry 2 in 2 s")
    rec.event(2_600_000_000, -1, "host_free", 5, -1, "")
    rec.event(3_004_999_999, 1, "alloc_failed", 512, 100, "order 0")
    return rec


ACTIVITY = {"a": {"passes": 3, "wmark_low_pages": 10}, "b": {"wmark_low_pages": 10}, "c": {"wmark_low_pages": 10}}


@pytest.fixture  # built for each test: mutmut runs only the tests that call build_result themselves
def toy() -> Result:
    return build_result(toy_recording(), [250, 100, 1000], ACTIVITY, {"scenario": "toy"})


def no_host() -> FakeHost:
    return FakeHost(free_pages=0, domain_pages=0, other_pages=0)


def categorical(values, categories) -> pd.Categorical:
    return pd.Categorical(values, categories=categories)


def test_the_timeline_has_every_row_in_recorded_order_with_each_components_columns(toy):
    t = [0, 0, 0, 2_500_000_000, 3_004_999_999, 3_004_999_999, 100_000_000_500_000_000]
    expected = pd.DataFrame(
        {
            "time_ns": np.array(t, dtype=np.int64),
            "time_s": np.array(t, dtype=np.int64) / S,
            # jiffies = floor(t * HZ / 1e9) in each domain's HZ (a 250, b 100, c 1000):
            # 2.5 s * 250 = 625; 3.004999999 s * 100 = 300.4999999 -> 300; * 1000 = 3004.999999 -> 3004;
            # 1e8 s + 0.5 s at 250 = 25_000_000_125 (t * 250 = 2.5e19 itself would overflow int64)
            "jiffies": np.array([0, 0, 0, 625, 300, 3004, 25_000_000_125], dtype=np.int64),
            "domain": categorical(["a", "b", "c", "a", "b", "c", "a"], ["a", "b", "c"]),
            # init, work and end are coded first, whatever comes first in the run; then in order of use
            "cause": categorical(
                ["init", "init", "init", "target", "work", "work", "end"], ["init", "work", "end", "target"]
            ),
            "current_pages": np.array([100, 200, 300, 100, 200, 300, 50], dtype=np.int64),
            "target_pages": np.array([100, 200, 300, 50, 200, 300, 50], dtype=np.int64),
            "state": categorical(["NONE", "NONE", "DONE", "DONE", "EAGAIN", "ECANCELED", "DONE"], STATES),
            "work_pending": np.array([False, False, True, True, True, False, False]),
            "retry_count": np.array([1, 1, 1, 1, 2, 1, 1], dtype=np.int64),
            "guest_free": np.array([500, 500, 500, 500, 400, 500, 500], dtype=np.int64),
            "mem_available": np.array([600, 600, 600, 600, 450, 600, 600], dtype=np.int64),
            "swap_pages": np.array([0, 0, 0, 0, 3, 0, 0], dtype=np.int64),
            "oom_count": np.zeros(7, dtype=np.int64),
            "unmet_demand": np.array([0, 0, 0, 0, 8, 0, 0], dtype=np.int64),
            "unmet_anon": np.array([0, 0, 0, 0, 5, 0, 0], dtype=np.int64),
            "unmet_cache": np.array([0, 0, 0, 0, 3, 0, 0], dtype=np.int64),
            # b has no Extra: its fills, -7, code -1 (no category) and 0 (false)
            "extra": np.array([5, -7, 9, 6, -7, 10, 7], dtype=np.int64),
            "phase": categorical(["up", None, "down", "down", None, "up", "up"], ["up", "down"]),
            "flag": np.array([True, False, False, True, False, False, False]),
            # 256 pages of 4 KiB to the MiB
            "current_mib": np.array([100, 200, 300, 100, 200, 300, 50]) / 256,
            "target_mib": np.array([100, 200, 300, 50, 200, 300, 50]) / 256,
        }
    )
    pd.testing.assert_frame_equal(toy.timeline, expected)


def test_the_host_table_has_a_row_where_the_host_changed_and_at_the_last_row(toy):
    # the toy's host free per timeline row (0..6): 100 100 100 90 80 80 150, domain pages 1000 - free,
    # other 24.  Rows 0 (the first), 3 (100 -> 90), 4 (90 -> 80) and 6 (80 -> 150) change it; rows 1,
    # 2 and 5 repeat the row before.  Row 6 is also the last, so nothing is added for the end.
    t = np.array([0, 2_500_000_000, 3_004_999_999, 100_000_000_500_000_000], dtype=np.int64)
    free = np.array([100, 90, 80, 150], dtype=np.int64)
    expected = pd.DataFrame(
        {
            "time_ns": t,
            "time_s": t / S,
            "row": np.array([0, 3, 4, 6], dtype=np.int64),
            "host_free": free,
            "domain_pages": 1000 - free,
            "other_pages": np.full(4, 24, dtype=np.int64),
            "host_free_mib": free / 256,
        }
    )
    pd.testing.assert_frame_equal(toy.host, expected)


def test_the_host_table_ends_at_the_runs_last_row_even_unchanged():
    host = FakeHost(free_pages=7, domain_pages=3, other_pages=0)
    rec = Recorder(["a"], [[Driver(), Memory()]], host)
    for t in (0, 5, 9):  # three rows, the host as it was: row 0 (the first), then row 2 (the last)
        rec.row(t, 0, rec.causes("init"))
    r = build_result(rec, [250], {}, {})
    assert r.host[["time_ns", "row", "host_free", "domain_pages"]].values.tolist() == [[0, 0, 7, 3], [9, 2, 7, 3]]


def test_events_name_their_domain_the_host_for_none(toy):
    t = np.array([2_500_000_000, 2_600_000_000, 3_004_999_999], dtype=np.int64)
    expected = pd.DataFrame(
        {
            "time_ns": t,
            "time_s": t / S,
            # index 0 is the first guest; -1 (an event of the host's) is (host), after the guests
            "domain": categorical(["a", HOST, "b"], ["a", "b", "c", HOST]),
            "kind": categorical(["EAGAIN", "host_free", "alloc_failed"], ["EAGAIN", "host_free", "alloc_failed"]),
            "pages": np.array([-1, 5, 512], dtype=np.int64),
            "value": np.array([-1, -1, 100], dtype=np.int64),
            "message": pd.Series(["retry 2 in 2 s", "", "order 0"], dtype="string"),
        }
    )
    pd.testing.assert_frame_equal(toy.events, expected)


def test_targets_and_summary_are_derived_from_these_tables(toy):
    pd.testing.assert_frame_equal(toy.summary, domain_summary(toy.timeline, toy.events, toy.targets, ACTIVITY))
    end = 100_000_000_500_000_000
    # by domain: a at 100 (reached at once, until the next target at 2.5 s), then 50 (reached at
    # the end row); b and c: their first target, reached at once, until their last row
    t = toy.targets
    assert t["domain"].astype(str).tolist() == ["a", "a", "b", "c"]
    assert t["set_ns"].tolist() == [0, 2_500_000_000, 0, 0]
    assert t["cause"].astype(str).tolist() == ["init", "target", "init", "init"]
    assert (t["target_pages"].tolist(), t["start_pages"].tolist()) == ([100, 50, 200, 300], [100, 100, 200, 300])
    assert t["reached"].tolist() == [True, True, True, True]
    assert t["reached_ns"].tolist() == [0, end, 0, 0]
    assert t["time_to_reach_s"].tolist() == [0.0, (end - 2_500_000_000) / S, 0.0, 0.0]
    assert t["until_ns"].tolist() == [2_500_000_000, end, 3_004_999_999, 3_004_999_999]
    assert t["end_pages"].tolist() == [100, 50, 200, 300]
    assert toy.summary["final_current_pages"].tolist() == [50, 200, 300]
    assert toy.summary["worker_passes"].tolist() == [3, 0, 0] and toy.metadata == {"scenario": "toy"}


def interleaved(rows: int) -> pd.DataFrame:
    """Guests a and b, one row each every second for ``rows`` seconds, a first at each instant.

    a is asked 100 pages at 0 s, 60 at 10 s (reached at 12 s), 80 at 25 s (reached at 27 s);
    b holds 200 throughout."""
    i = np.arange(rows)
    a_target = np.select([i < 10, i < 25], [100, 60], 80)
    a_current = np.select([i < 12, i < 27], [100, 60], 80)
    return pd.DataFrame(
        {
            "time_ns": np.repeat(i * S, 2),
            "domain": pd.Categorical(np.tile(["a", "b"], rows), categories=["a", "b"]),
            "cause": pd.Categorical(np.tile(["work", "work"], rows), categories=["init", "work", "end"]),
            "current_pages": np.ravel(np.column_stack([a_current, np.full(rows, 200)])),
            "target_pages": np.ravel(np.column_stack([a_target, np.full(rows, 200)])),
        }
    )


def test_target_episodes_keep_each_domains_rows_in_time_order_among_many():
    # 80 rows of two guests, interleaved: grouping them by guest must keep each guest's rows in order
    t = target_episodes(interleaved(40))
    assert t["domain"].astype(str).tolist() == ["a", "a", "a", "b"]
    assert t["set_s"].tolist() == [0.0, 10.0, 25.0, 0.0]
    assert t["target_pages"].tolist() == [100, 60, 80, 200]
    assert t["start_pages"].tolist() == [100, 100, 60, 200]
    assert t["time_to_reach_s"].tolist() == [0.0, 2.0, 2.0, 0.0]
    assert t["until_ns"].tolist() == [10 * S, 25 * S, 39 * S, 39 * S]
    assert t["end_pages"].tolist() == [100, 60, 80, 200]


def test_row_durations_last_until_the_same_domains_next_row():
    timeline = pd.DataFrame(
        {
            "time_ns": np.array([0, 0, 2, 5, 7], dtype=np.int64) * S,
            "domain": pd.Categorical(["a", "b", "a", "b", "a"], categories=["a", "b"]),
        }
    )
    # a: 0 -> 2 -> 7 (last: 0); b: 0 -> 5 (last: 0)
    assert row_durations(timeline).tolist() == [2 * S, 5 * S, 5 * S, 0, 0]


@pytest.mark.parametrize(
    "check",
    [
        test_summary.test_a_refused_mem_set_is_not_reached,
        test_summary.test_a_clamped_target_is_not_reached,
        test_summary.test_only_the_last_request_decides,
    ],
    ids=lambda check: check.__name__,
)
def test_the_hand_derived_summary_holds_when_built_in_the_test(check):
    """test_summary's checks of guests b to e, on a summary this test builds: mutmut runs a
    mutant of domain_summary only with the tests that reach it, and test_summary's module-wide
    fixture reaches it in its first test alone."""
    timeline = hand_timeline(test_summary.ROWS)
    events = hand_events(test_summary.EVENTS, test_summary.DOMAINS)
    s = domain_summary(timeline, events, target_episodes(timeline), test_summary.ACTIVITY)
    check(s.set_index(s["domain"].astype(str)))


def test_a_guest_without_worker_passes_or_events_counts_none():
    timeline = hand_timeline({"a": [dict(t=0, cause="init"), dict(t=1, cause="work", state="EAGAIN", retry_count=3)],
                              "b": [dict(t=0, cause="init"), dict(t=2, cause="end")]})  # fmt: skip
    events = hand_events([(1, "a", "EAGAIN", -1, -1), (1, "a", "alloc_failed", 512, 0)], ["a", "b"])
    s = domain_summary(timeline, events, target_episodes(timeline), {})
    assert s["eagain_passes"].tolist() == [1, 0] and s["eagain_passes"].dtype == np.int64
    assert (s["wait_passes"].tolist(), s["cancellations"].tolist()) == ([0, 0], [0, 0])
    assert s["peak_retry_count"].tolist() == [3, 1]  # b never retried: 1, the driver's initial retry_count
    # a's one failed allocation; no kind of event b had, nor any populate or clamp: 0, as integers
    for column, counts in [("alloc_failures", [1, 0]), ("populate_short", [0, 0]), ("target_clamps", [0, 0])]:
        assert s[column].tolist() == counts and s[column].dtype == np.int64, column


def test_a_clamp_at_0_s_counts_for_a_guest_never_asked():
    # x: never asked, its initial target clamped by the first worker pass, at 0 s;
    # y: clamped at 1 s, then asked at 2 s: the clamp came before the request
    timeline = hand_timeline(
        {
            "x": [dict(t=0, cause="init"), dict(t=0, cause="work"), dict(t=5, cause="end")],
            "y": [dict(t=0, cause="init"), dict(t=1, cause="work"), dict(t=2, cause="target"), dict(t=5, cause="end")],
        }
    )
    events = hand_events([(0, "x", "target_clamped", 1500, 1000), (1, "y", "target_clamped", 1500, 1000)], ["x", "y"])
    refused, clamped = last_request_refused_or_clamped(timeline, events)
    assert (refused.tolist(), clamped.tolist()) == ([False, False], [True, False])


def test_worst_first_keeps_the_scenarios_order_among_equals():
    n = 40
    summary = pd.DataFrame(
        {
            "domain": [f"g{k}" for k in range(n)],
            "oom_kills": [1 if k in (7, 30) else 0 for k in range(n)],
            "unmet_demand_mib_s": 0.0,
            "target_reached": True,
            "final_target_pages": 100,
            "final_current_pages": 100,
        },
        index=range(100, 100 + n),
    )
    order = worst_first(summary)
    assert order["domain"].tolist() == ["g7", "g30", *(f"g{k}" for k in range(n) if k not in (7, 30))]
    assert order.index.tolist() == [107, 130, *(100 + k for k in range(n) if k not in (7, 30))]


def test_a_domains_rows_are_its_own_numbered_from_0(toy):
    b = toy.domain("b")
    assert b.index.tolist() == [0, 1] and list(b.columns) == list(toy.timeline.columns)
    assert b["time_ns"].tolist() == [0, 3_004_999_999] and set(b["domain"]) == {"b"}


def test_a_run_without_events_has_an_empty_events_table_of_the_same_types():
    host = FakeHost(free_pages=7, domain_pages=0, other_pages=0)
    rec = Recorder(["a"], [[Driver(), Memory()]], host)
    rec.row(0, 0, rec.causes("init"))
    r = build_result(rec, [250], {}, {})
    assert len(r.events) == 0
    assert {c: str(t) for c, t in r.events.dtypes.items()} == {
        "time_ns": "int64",
        "time_s": "float64",
        "domain": "category",
        "kind": "category",
        "pages": "int64",
        "value": "int64",
        "message": "string",
    }
    assert list(r.events["domain"].cat.categories) == ["a", HOST]
    assert r.host["host_free"].tolist() == [7] and rec.rows == 1


def test_guests_with_the_same_components_share_one_column_each():
    # two guests, each a Driver and an Extra: each column once, and every row laid out whole
    rec = Recorder(["a", "b"], [[Driver(), Extra()], [Driver(), Extra()]], no_host())
    names = [c.name for c in rec.columns]
    assert names == ["time_ns", "domain", "cause", *(c.name for c in Driver.COLUMNS), *(c.name for c in Extra.COLUMNS)]
    assert [slots for _, slots in rec._layouts] == [None, None]


def test_a_component_that_gives_more_values_than_columns_is_an_error():
    class Faulty(Extra):
        def row_values(self) -> tuple[int, ...]:
            return (1, 2, 3, 4)  # four values for three columns

    # checked at each domain's first row, before anything is recorded
    rec = Recorder(["a", "b"], [[Driver(), Extra()], [Faulty()]], no_host())
    rec.row(0, 0, rec.causes("init"))
    with pytest.raises(TypeError, match=r"^Faulty\.row_values\(\) gives 4 values for its 3 COLUMNS$"):
        rec.row(0, 1, rec.causes("init"))
    assert rec.rows == 1


def test_the_size_warning_says_how_much_loading_the_timeline_whole_takes():
    rec = Recorder(["a"], [[Driver()]], no_host())
    # 3 key + 5 driver columns + 4 derived (time_s, jiffies, current_mib, target_mib) = 12 columns
    # of 8 bytes: 12,345 rows x 96 bytes = 1,185,120 bytes = 0.0011 GiB, shown as 0.0
    rec.rows = 12_345
    with pytest.warns(RunWarning) as caught:
        rec._warn_size()
    assert [str(w.message) for w in caught] == [
        "the timeline has 12,345 rows (0.0 GiB to load it whole; streamed to disk meanwhile); "
        "fewer rows: a larger progress_every, fewer events, a shorter duration"
    ]
    rec.rows = 2**24  # x 96 bytes = 1.5 GiB
    with pytest.warns(RunWarning, match=r"\(1\.5 GiB to load it whole"):
        rec._warn_size()


# -- summary: when the host had the memory it needs ----------------------------------------


HOST_ROWS = pd.DataFrame({"time_s": [0.0, 1.0, 2.0, 3.0], "host_free": [10, 50, 100, 100]})


@pytest.mark.parametrize(
    ("needed", "reached"),
    [
        (50, 1.0),  # free >= needed: reached at the row where it is exactly 50
        (51, 2.0),
        (100, 2.0),  # the first of two rows at 100
        (101, None),  # never: not the first row's time
        (0, None),  # nothing needed
        (None, None),
    ],
)
def test_host_needed_reached_is_the_first_row_with_that_much_free(needed, reached):
    assert host_needed_reached_s(HOST_ROWS, needed) == reached


def test_host_needed_of_an_empty_host_table_is_never_reached():
    assert host_needed_reached_s(HOST_ROWS.iloc[:0], 50) is None


# -- the run's settings ---------------------------------------------------------------------


class WeightedParams(ManagerParams):
    period: Nanoseconds = "5s"
    weights: tuple[int, ...] = (1, 2)


class Weighted:
    """A manager whose settings hold a tuple, which JSON has not: run.json gives it as a list."""

    Params = WeightedParams


#: a domain's settings when the scenario sets none (the scenario model's defaults)
DEFAULT_SETTINGS = {
    "driver": "v5.12",
    "max_retry_count": 4,
    "max_schedule_delay": 32,
    "scrub_pages": True,
    "hotplug_unpopulated": 0,
    "memory_hotplug": False,
    "hz": 250,
    "arch": "x86_64",
    "type": "hvm",
    "costs": "runtime",
}


def guests() -> list[dict]:
    """a and c as the defaults (runtime costs); b timeless, PV, HZ 1000 and retrying without end."""
    return [
        {"name": "a", "memory": "1GiB"},
        {"name": "b", "memory": "1GiB", "type": "pv", "costs": "none",
         "kernel": {"hz": 1000}, "balloon": {"max_retry_count": 0}},
        {"name": "c", "memory": "1GiB", "costs": {"profile": "runtime", "xen_page_out": "8us"}},  # the default
        {"name": "d", "memory": "1GiB", "costs": {"xen_page": "50us", "hypercall": "20us"}},
    ]  # fmt: skip


def test_run_settings_group_domains_with_the_same_settings():
    settings = run_settings(make_scenario(domains=guests(), host={"free": "1GiB"}))
    b = {**DEFAULT_SETTINGS, "type": "pv", "hz": 1000, "max_retry_count": 0, "costs": "none"}
    # the profile and only what differs from it, in the fields' order
    costs = {"profile": "runtime", "hypercall": "20us", "xen_page_out": "50us", "xen_page_in": "50us"}
    d = {**DEFAULT_SETTINGS, "costs": costs}
    assert settings == {
        "manager": None,
        "domain_groups": [
            {**DEFAULT_SETTINGS, "domains": 2, "first_domain": "a"},
            {**b, "domains": 1, "first_domain": "b"},
            {**d, "domains": 1, "first_domain": "d"},
        ],
    }


@pytest.fixture
def weighted():
    with MANAGERS.registered("weighted", Weighted):
        yield


def test_the_managers_settings_are_as_run_json_keeps_them(weighted, tmp_path):
    s = make_scenario(host={"free": "1GiB", "manager": {"kind": "weighted"}})
    settings = run_settings(s)
    assert settings["manager"] == {"kind": "weighted", "period": "5s", "weights": [1, 2]}
    assert isinstance(settings["manager"]["weights"], list)  # as JSON reads it back, not a tuple
    empty = pd.DataFrame({"x": pd.Series([], dtype="int64")})
    result = Result(empty, empty, empty, empty, empty, {"scenario": "t", "seed": 1, "settings": settings})
    assert load_result(save_result(result, tmp_path / "r")).metadata["settings"] == settings


def label(groups: list[dict], manager: dict | None = None, **head) -> str:
    return run_label({**head, "settings": {"manager": manager, "domain_groups": groups}})


def group(domains: int = 1, **changes) -> dict:
    return {**DEFAULT_SETTINGS, "domains": domains, "first_domain": "a", **changes}


def test_run_label_of_one_group_names_its_driver_settings_and_costs():
    assert label([group(3)], scenario="q", seed=1) == (
        "q, seed 1: driver v5.12 (max_retry_count 4, max_schedule_delay 32 s), costs runtime"
    )
    # max_retry_count 0 retries without end; the profile, then the costs that differ from it
    costs = {"profile": "pod-boot", "xen_page_out": "50us", "hypercall": "20us"}
    assert label([group(max_retry_count=0, costs=costs)], scenario="q", seed=2) == (
        "q, seed 2: driver v5.12 (max_retry_count unlimited, max_schedule_delay 32 s), "
        "costs pod-boot, xen_page_out 50us, hypercall 20us"
    )


def test_run_label_counts_the_domains_of_each_group_and_how_many_groups_are_left_out():
    none, pv = group(2, costs="none"), group(5, driver="v5.15", max_schedule_delay=8)
    text = "driver v5.12 (max_retry_count 4, max_schedule_delay 32 s), costs"
    assert label([none, pv], scenario="q", seed=0) == (
        f"q, seed 0: 2× {text} none; 5× driver v5.15 (max_retry_count 4, max_schedule_delay 8 s), costs runtime"
    )
    # two shown (most=2), one more named by number only
    assert label([none, pv, group(1)], {"kind": "even-split", "period": "10s"}, scenario="q", seed=0) == (
        f"q, seed 0: 2× {text} none; 5× driver v5.15 (max_retry_count 4, max_schedule_delay 8 s), costs runtime; "
        "and 1 more setting groups; manager even-split"
    )
    three = run_label({"scenario": "q", "seed": 0, "settings": {"domain_groups": [none, pv, group(1)]}}, most=3)
    assert three.count("×") == 3 and "more setting groups" not in three


def test_run_label_names_what_else_tells_its_groups_apart():
    # two groups with the same driver settings and costs: their HZ and type tell them apart
    a, b = group(2, hz=100, type="pv"), group(3, hz=250, type="pv")
    text = "driver v5.12 (max_retry_count 4, max_schedule_delay 32 s), costs runtime"
    assert label([a, b], scenario="q", seed=0) == f"q, seed 0: 2× {text}, hz 100; 3× {text}, hz 250"


def test_run_label_without_settings_names_scenario_and_seed_or_question_marks():
    assert run_label({"scenario": "q", "seed": 4}) == "q, seed 4"
    assert run_label({}) == "?, seed ?"
    assert label([], {"kind": "qmemman"}, scenario="q", seed=4) == "q, seed 4: manager qmemman"
