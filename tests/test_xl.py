"""``xl create`` with autoballoon (managers/xl.py): freemem() balloons dom0 down for a new domain.

dom0 here is a PV guest marked initial_domain (no target_diff) with zero reserves and no costs,
so it reaches a target at the instant it is written; libxl's wait looks at it every 2 s.
Host: 6 GiB, dom0 holds 4 GiB, 2 GiB free.
"""

from __future__ import annotations

import pytest

from conftest import ZERO_RESERVES, GiB, make_scenario, run

S = 1_000_000_000


ORACLE_LIKE = {"costs": "none", "kernel": ZERO_RESERVES}


def host(dom0: dict | None = None, **xl) -> dict:
    return {
        "domains": [
            {"name": "dom0", "type": "pv", "memory": "4GiB", "initial_domain": True, **ORACLE_LIKE, **(dom0 or {})},
            {"name": "vm", "type": "pv", "memory": "3GiB", "start": "5s", "initial_target": "absent", **ORACLE_LIKE},
        ],
        "host": {"total": "6GiB", "manager": {"kind": "xl", **xl}},
        "duration": "30s",
    }


def start_events(r):
    ev = r.events[r.events["kind"].isin(["started", "start_failed"])]
    return list(zip(ev["time_s"], ev["kind"].astype(str), ev["value"], strict=True))


def test_dom0_gives_the_shortfall_and_the_start_goes_on_at_the_next_look():
    # 5 s: 2 GiB free, 3 GiB needed: dom0's target falls by the 1 GiB short, 4 -> 3 GiB, reached at
    # once; libxl's wait looks at 7 s, finds dom0 at its target; freemem's next round finds 3 GiB free
    r = run(make_scenario(**host()))
    assert start_events(r) == [(7.0, "started", 2 * S)]
    dom0 = r.domain("dom0")
    assert dom0[dom0["cause"] == "manager"]["target_pages"].tolist() == [3 * GiB]
    assert r.host["host_free"].iloc[-1] == 0


def test_a_dom0_that_does_not_move_fails_the_start_after_ten_seconds_without_progress():
    # dom0's driver is dead: the looks at 7 s (the first: progress from nothing), 9, 11, 13, 15 and
    # 17 s (each without progress, 2 s of the 10 gone) end the wait at 17 s: freemem fails
    stuck = {"balloon": {"driver": "faulty", "fault": {"kind": "stuck"}}}
    r = run(make_scenario(**host(stuck)))
    assert start_events(r) == [(17.0, "start_failed", 12 * S)]
    assert "dom0 did not reach its target" in set(r.events["message"])


def test_without_autoballoon_a_start_needs_its_memory_free_at_once():
    r = run(make_scenario(**host(autoballoon=False)))
    assert start_events(r) == [(5.0, "start_failed", 0)]
    assert (r.domain("dom0")["cause"] != "manager").all()  # dom0 was never asked


def test_without_a_dom0_there_is_nobody_to_balloon():
    s = host()
    s["domains"][0]["initial_domain"] = False
    r = run(make_scenario(**s))
    assert start_events(r) == [(5.0, "start_failed", 0)]
    assert "no dom0" in r.events[r.events["kind"] == "freemem_failed"]["message"].iloc[0]


@pytest.mark.parametrize("free", ["3GiB", "4GiB"])
def test_when_the_memory_is_free_nothing_is_asked(free):
    s = host()
    s["host"]["total"] = "7GiB" if free == "3GiB" else "8GiB"
    r = run(make_scenario(**s))
    assert start_events(r) == [(5.0, "started", 0)]


def test_a_dom0_that_takes_time_is_waited_for_while_it_makes_progress():
    # with the runtime costs dom0 gives pages back at 9.2 us each (README, "The time ballooning
    # takes"): 1 GiB = 262144 pages take ~2.4 s, so at the 7 s look it has moved (progress) but is
    # not there; at 9 s it is: the start goes on at 9 s
    r = run(make_scenario(**host({"costs": "runtime"})))
    assert start_events(r) == [(9.0, "started", 4 * S)]


def test_dom0_is_not_asked_below_128_mib():
    # an 8 GiB start on the 6 GiB host: dom0's target would be 4 GiB + 2 GiB - 8 GiB < 0, so 0, below
    # LIBXL_MIN_DOM0_MEM (128 MiB): libxl refuses it and freemem fails at once, dom0 untouched
    s = host()
    s["domains"][1]["memory"] = "8GiB"
    r = run(make_scenario(**s))
    assert start_events(r) == [(5.0, "start_failed", 0)]
    assert (r.domain("dom0")["cause"] != "manager").all()
    assert "below 128MiB" in r.events[r.events["kind"] == "freemem_failed"]["message"].iloc[0]
