"""Balloon drivers with faults (``driver: faulty``) move as squeeze_test's scripted drivers do
(``kernel/fault_rules.py``), inside a simulated guest.

The expected moves are replayed here from squeeze_test's rule itself: every 0.1 s tick k the
driver moves trunc(dt * rate) with dt = k/10 - (k-1)/10 in IEEE doubles (the guest's clock,
jiffies / HZ = 25k / 250, is the same double as k/10), stopping at its target.
"""

from __future__ import annotations

import math

import pytest

from conftest import GiB, MiB, make_scenario, run

RATE = 100 * MiB  # pages/s: 100 MiB/s


def faulty(name: str, **fault) -> dict:
    return {
        "name": name,
        "type": "pv",
        "memory": "1GiB",
        "initial_target": "absent",
        "costs": "none",
        "kernel": {"totalreserve_pages": 0, "floor_balloon": 0, "floor_user": 0},
        "balloon": {"driver": "faulty", "fault": fault},
    }


def moves(result, domain: str) -> list[tuple[float, int]]:
    """(time, current_pages) at each row where the driver's pages changed."""
    d = result.domain(domain)
    changed = d["current_pages"].diff().fillna(0) != 0
    return list(zip(d.loc[changed, "time_s"].round(6), d.loc[changed, "current_pages"], strict=True))


def replay(first_tick: int, start: int, target: int, awake=lambda t: True) -> list[tuple[float, int]]:
    """squeeze_test's basic_delta at each tick from ``first_tick`` (tenths of a second) to the target."""
    out, actual, k = [], start, first_tick
    while actual != target:
        t_prev, t = (k - 1) / 10, k / 10
        if awake(t_prev) and awake(t):
            step = min(math.trunc((t - t_prev) * RATE), abs(target - actual))
            actual += step if target > actual else -step
            out.append((round(t, 6), actual))
        k += 1
    return out


def run_one(*domains, events, duration="30s"):
    return run(make_scenario(events, domains=list(domains), host={"total": "8GiB"}, duration=duration))


def test_an_ideal_driver_moves_at_its_rate_tick_by_tick_as_squeeze_test_computes_it():
    r = run_one(faulty("g", kind="ideal", rate="100MiB/s"), events=[{"at": "1s", "domain": "g", "target": "512MiB"}])
    expected = replay(10, 1 * GiB, 512 * MiB)  # the tick at 1.0 s runs after the target write
    assert moves(r, "g") == expected
    # 131072 pages at ~2560 a tick: 52 ticks, some one page short (dt = 0.09999999999999998)
    assert len(expected) == 52 and any(b - a == -2559 for (_, a), (_, b) in zip(expected, expected[1:], strict=False))


def test_a_hidden_floor_stops_it_exactly_there_and_its_target_is_never_reached():
    r = run_one(
        faulty("g", kind="hidden-floor", rate="100MiB/s", limit="800MiB"),
        events=[{"at": "1s", "domain": "g", "target": "512MiB"}],
    )
    got = moves(r, "g")
    assert got[-1][1] == 800 * MiB
    # every move but the last is a full rate step; the last lands on the floor
    assert got[:-1] == replay(10, 1 * GiB, 512 * MiB)[: len(got) - 1]
    assert not r.summary.iloc[0]["target_reached"]


def test_a_hidden_ceiling_stops_a_rise_exactly_there():
    # shrink to 512 MiB first (ideal part), then ask 1 GiB back: it stops at the 900 MiB ceiling
    r = run_one(
        faulty("g", kind="hidden-ceiling", rate="100MiB/s", limit="900MiB"),
        events=[{"at": "1s", "domain": "g", "target": "512MiB"}, {"at": "10s", "domain": "g", "target": "1GiB"}],
    )
    assert r.domain("g")["current_pages"].iloc[-1] == 900 * MiB


def test_a_stuck_driver_never_moves():
    r = run_one(faulty("g", kind="stuck"), events=[{"at": "1s", "domain": "g", "target": "512MiB"}])
    assert set(r.domain("g")["current_pages"]) == {1 * GiB}


def test_an_intermittent_driver_moves_one_interval_and_stalls_the_next_losing_the_straddling_step():
    # awake while trunc(t / 1 s) is even: from the target at 1 s it first moves at 2.1 s (2.0 s
    # and 2.1 s both awake); the step from 2.9 s to 3.0 s straddles into a stall and is lost
    r = run_one(
        faulty("g", kind="intermittent", rate="100MiB/s", interval="1s"),
        events=[{"at": "1s", "domain": "g", "target": "512MiB"}],
    )
    expected = replay(11, 1 * GiB, 512 * MiB, awake=lambda t: math.trunc(t) % 2 == 0)
    assert moves(r, "g") == expected
    assert expected[0][0] == 2.1 and not any(3.0 <= t < 4.0 for t, _ in expected)


def test_a_faulty_driver_still_needs_the_guests_free_memory():
    # the guest's programs hold 900 MiB of its 1 GiB: the ideal driver can take only the 124 MiB
    # that are free (zero reserves), then every tick's batch fails and it stays there
    g = faulty("g", kind="ideal", rate="100MiB/s")
    g["kernel"]["used_at_boot"] = "900MiB"
    r = run_one(g, events=[{"at": "1s", "domain": "g", "target": "512MiB"}])
    assert r.domain("g")["current_pages"].iloc[-1] == 1 * GiB - 124 * MiB


@pytest.mark.parametrize(
    ("balloon", "message"),
    [
        ({"driver": "faulty"}, "driver faulty takes a fault"),
        ({"driver": "v5.12", "fault": {"kind": "stuck"}}, "driver faulty takes a fault"),
        ({"driver": "faulty", "fault": {"kind": "hidden-floor", "rate": "1MiB/s"}}, "needs limit"),
        ({"driver": "faulty", "fault": {"kind": "intermittent"}}, "needs rate and interval"),
    ],
)
def test_a_fault_goes_with_the_faulty_driver_and_has_what_its_kind_needs(balloon, message):
    with pytest.raises(Exception, match=message):
        make_scenario(domain={"balloon": balloon})
