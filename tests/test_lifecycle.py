"""VM starts and stops: a start needs its memory free on the host (the manager makes room), a
failed start is a result, a stop gives the domain's memory back to Xen.

Every guest here is PV (target_diff 0, no PoD) with the conftest's zero reserves and no costs, so
the numbers follow from the pages alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from balloonsim.managers.base import PeriodicManager
from balloonsim.registry import MANAGERS
from balloonsim.scenario.model import ManagerParams
from conftest import GiB, MiB, make_scenario, run

S = 1_000_000_000
PV = {"type": "pv", "initial_target": "absent", "costs": "none"}


def starts(result):
    ev = result.events
    return [
        (row.time_s, str(row.domain), row.kind, row.value)
        for row in ev[ev["kind"].isin(["start_asked", "started", "start_failed"])].itertuples()
    ]


def test_without_a_manager_a_start_succeeds_exactly_when_xen_has_the_memory_free():
    # 4 GiB host, a (1 GiB) runs from t=0: 3 GiB free.  b (1 GiB) at 10 s fits: 2 GiB left; c (3 GiB)
    # at 20 s does not; a stops at 30 s (3 GiB free again); d (3 GiB) at 40 s fits exactly: 0 left.
    s = make_scenario(
        [{"at": "30s", "domain": "a", "stop": True}],
        domains=[
            {"name": "a", "memory": "1GiB", **PV},
            {"name": "b", "memory": "1GiB", "start": "10s", **PV},
            {"name": "c", "memory": "3GiB", "start": "20s", **PV},
            {"name": "d", "memory": "3GiB", "start": "40s", **PV},
        ],
        host={"total": "4GiB"},
        duration="60s",
    )
    r = run(s)
    assert starts(r) == [
        (10.0, "b", "start_asked", -1),
        (10.0, "b", "started", 0),  # latency 0: the build needs no wait
        (20.0, "c", "start_asked", -1),
        (20.0, "c", "start_failed", 0),
        (40.0, "d", "start_asked", -1),
        (40.0, "d", "started", 0),
    ]
    failed = r.events[r.events["kind"] == "start_failed"].iloc[0]
    assert "the host has 524288 pages (2 GiB) free, the domain needs 786432 pages (3 GiB)" in failed["message"]
    # the host row in force after each timeline row: the last host row at or before it
    after = np.searchsorted(r.host["row"].to_numpy(), np.arange(len(r.timeline)), side="right") - 1
    host = pd.Series(r.host["host_free"].to_numpy()[after], index=[r.timeline["time_s"], r.timeline["cause"]])
    assert host[(10.0, "started")] == 2 * GiB  # b's pages came from the free pool
    assert host[(30.0, "stop")] == 3 * GiB  # a's 1 GiB went back
    assert host[(40.0, "started")] == 0
    assert dict(zip(r.summary["domain"].astype(str), r.summary["ran"], strict=True)) == {
        "a": True,
        "b": True,
        "c": False,
        "d": True,
    }
    assert (r.timeline["domain"] == "c").sum() == 0  # a domain that never ran has no rows
    stopped = r.events[r.events["kind"] == "domain_stopped"].iloc[0]
    assert (stopped["domain"], stopped["pages"]) == ("a", 1 * GiB)
    assert not r.summary["crashed"].any()  # a stop is not a crash


def test_a_started_guest_boots_and_balloons_like_any_other():
    # b starts at 5 s with 1 GiB; a target of 512 MiB at 10 s is met at once (costs none): 512 MiB
    # go back to Xen's free pool, which held 1 GiB after b's build
    s = make_scenario(
        [{"at": "10s", "domain": "b", "target": "512MiB"}],
        domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "1GiB", "start": "5s", **PV}],
        host={"total": "3GiB"},
        duration="20s",
    )
    r = run(s)
    b = r.domain("b")
    assert (b["cause"].iloc[0], b["time_s"].iloc[0], b["dom_pages"].iloc[0]) == ("started", 5.0, 1 * GiB)
    done = b[b["time_s"] == 10.0].iloc[-1]
    assert (done["current_pages"], done["dom_pages"], done["host_free"]) == (512 * MiB, 512 * MiB, 1 * GiB + 512 * MiB)


def test_events_for_a_domain_not_running_yet_are_recorded_as_gone():
    s = make_scenario(
        [{"at": "1s", "domain": "b", "take": "1MiB"}],
        domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "1GiB", "start": "5s", **PV}],
        host={"total": "3GiB"},
        duration="10s",
    )
    gone = run(s).events.query("kind == 'domain_gone'")
    assert list(zip(gone["time_s"], gone["domain"].astype(str), strict=True)) == [(1.0, "b")]


class WaitForFreeParams(ManagerParams):
    pass


class WaitForFree(PeriodicManager):
    """Sets nothing; a start waits up to 10 s for the memory, looking every second."""

    Params = WaitForFreeParams
    period_ns = 1 * S
    start_timeout_ns = 10 * S

    def __init__(self, params):
        self.params = params

    def decide(self, view):
        return ()


@pytest.fixture
def waiting_manager():
    with MANAGERS.registered("wait-for-free", WaitForFree):
        yield


@pytest.mark.parametrize(
    ("deadline", "expected"),
    [
        # other consumers free 1 GiB at 4.5 s; the manager looks at 2, 3, 4, 5 s: room at 5 s
        (None, [(2.0, "start_asked", -1), (5.0, "started", 3 * S)]),
        ("4s", [(2.0, "start_asked", -1), (5.0, "started", 3 * S)]),
        # a 2 s deadline (a migration in) ends the start at 4 s, before the memory came
        ("2s", [(2.0, "start_asked", -1), (4.0, "start_failed", 2 * S)]),
    ],
)
def test_a_start_waits_for_the_manager_and_meets_or_misses_its_deadline(waiting_manager, deadline, expected):
    b = {"name": "b", "memory": "1GiB", "start": "2s", **PV}
    if deadline:
        b["start_deadline"] = deadline
    s = make_scenario(
        [{"at": "4.5s", "host_free": "1GiB"}],
        domains=[{"name": "a", "memory": "1GiB", **PV}, b],
        host={"total": "3GiB", "free": 0, "manager": {"kind": "wait-for-free"}},
        duration="20s",
    )
    r = run(s)
    assert [(t, k, v) for t, _, k, v in starts(r)] == expected


def test_a_start_the_manager_gives_up_on_fails_at_its_timeout(waiting_manager):
    # the memory never comes (other consumers hold the host's second GiB): the manager gives up
    # after its 10 s, at 12 s
    s = make_scenario(
        domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "1GiB", "start": "2s", **PV}],
        host={"total": "2GiB", "free": 0, "manager": {"kind": "wait-for-free"}},
        duration="20s",
    )
    assert [(t, k, v) for t, _, k, v in starts(run(s))] == [(2.0, "start_asked", -1), (12.0, "start_failed", 10 * S)]


def test_the_host_must_hold_the_domains_of_t0_but_not_those_started_later():
    # 2 GiB host: a and b at t=0 would be too much, but b starts later and may simply fail
    with pytest.raises(Exception, match="more than the host"):
        make_scenario(
            domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "2GiB", **PV}],
            host={"total": "2GiB"},
        )
    make_scenario(
        domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "2GiB", "start": "1s", **PV}],
        host={"total": "2GiB"},
    )


def test_a_deadline_needs_a_start_and_dynamic_min_may_not_pass_dynamic_max():
    with pytest.raises(Exception, match="start_deadline: a deadline is for a domain started during the run"):
        make_scenario(domain={"start_deadline": "5s"})
    with pytest.raises(Exception, match="dynamic_min: 262144 pages .* is above dynamic_max"):
        make_scenario(domain={"dynamic_min": "1GiB", "dynamic_max": "512MiB"})


@pytest.mark.parametrize("at", ["0s", "1500ms"])
def test_a_stop_during_a_balloon_pass_ends_it_there(at):
    # target 0 at t=0 with 1 ms a page released (xen_page_out): the pass would take 262 s, a batch of
    # 512 pages at a time, each batch's pages out at its start and its 0.512 s passing after it.  The
    # stop (at once, or at 1.5 s: batches started at 0, 0.512 and 1.024 s, 1536 pages out) destroys
    # the domain with what it still holds, and the delayed work never touches it again (no row after
    # the stop but the end's; all host memory free)
    s = make_scenario(
        [{"at": "0s", "domain": "g", "target": "0KiB"}, {"at": at, "domain": "g", "stop": True}],
        domain={**PV, "costs": {"xen_page_out": "1ms", "cond_resched": "0s"}},
        host={"total": "2GiB"},
        duration="5s",
    )
    r = run(s)
    stopped = r.events[r.events["kind"] == "domain_stopped"].iloc[0]
    released = 0 if at == "0s" else 3 * 512
    assert stopped["pages"] == 1 * GiB - released
    g = r.domain("g")
    assert list(g[g["time_s"] > stopped["time_s"]]["cause"]) == ["end"]
    assert r.host["host_free"].iloc[-1] == 2 * GiB


def test_a_host_without_memory_is_refused():
    # every domain starts later and nothing is free: the host would have 0 pages
    with pytest.raises(Exception, match="host.free: the host would have no memory at all"):
        make_scenario(domains=[{"name": "a", "memory": "1GiB", "start": "1s", **PV}], host={"free": 0})
    with pytest.raises(Exception, match="host.total: a host has some memory"):
        make_scenario(domains=[{"name": "a", "memory": "1GiB", "start": "1s", **PV}], host={"total": 0})


def test_the_room_a_manager_made_is_the_new_domains_at_once():
    # squeezed frees newvm's 4 GiB by 61.5 s (managers.yaml, asked at 59.5 s with a deadline) while
    # its balance thread is due at 60, 70 s...: the build must follow make_room in the same step, or
    # the balance thread sees the 4 GiB as surplus, hands it back to the guests, and the build then
    # leaves them nothing to populate (EAGAIN, populate_refused)
    from balloonsim.scenario import load_scenario

    s = load_scenario(Path(__file__).parents[1] / "scenarios" / "managers.yaml").replace(
        {"host.manager": {"kind": "squeezed"}, "domains.newvm.start": "59500ms", "domains.newvm.start_deadline": "30s"}
    )
    r = run(s)
    assert [(t, k) for t, _, k, _ in starts(r) if k != "start_asked"] == [(61.5, "started")]
    ev = r.events
    assert not ev["kind"].isin(["populate_refused", "EAGAIN"]).any()


def test_a_dynamic_max_above_static_max_and_a_start_after_the_end_are_refused():
    with pytest.raises(Exception, match="dynamic_max: 524288 pages .* is above static-max"):
        make_scenario(domain={"dynamic_max": "2GiB"})  # static-max defaults to memory, 1 GiB
    with pytest.raises(Exception, match="domains.1.start: after the end of the run"):
        make_scenario(
            domains=[{"name": "a", "memory": "1GiB", **PV}, {"name": "b", "memory": "1GiB", "start": "101s", **PV}],
            host={"total": "3GiB"},
            duration="100s",
        )
