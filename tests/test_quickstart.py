"""scenarios/quickstart.yaml shows what it says: one guest shrinks, one cannot grow
fully, one backs off and cancels."""

from pathlib import Path

import pytest

from balloonsim.scenario import load_scenario
from conftest import MiB, run, work_rows

QUICKSTART = Path(__file__).parent.parent / "scenarios" / "quickstart.yaml"


@pytest.fixture(scope="module")
def result():
    return run(load_scenario(QUICKSTART))


def test_shrinker_reaches_its_target_in_one_pass(result):
    s = result.summary.set_index("domain").loc["shrinker"]
    assert s["target_reached"] and s["final_current_pages"] == 1024 * MiB
    assert s["final_target_reached_s"] == 5.0


def test_grower_gets_what_the_host_can_give_and_gives_up(result):
    s = result.summary.set_index("domain").loc["grower"]
    assert not s["target_reached"] and s["final_state"] == "ECANCELED"
    assert 1024 * MiB < s["final_current_pages"] < 2048 * MiB
    ev = result.events
    assert (ev[ev["domain"] == "grower"]["kind"] == "populate_refused").any()


def test_stuck_backs_off_2_4_8_seconds_then_cancels(result):
    rows = [r for r in work_rows(result, "stuck") if r[0] >= 15]
    # update_schedule(): delays double from 1 s; the 4th retry fails past max_retry_count 4
    assert [(t, state, delay) for t, state, delay, *_ in rows] == [
        (15.0, "EAGAIN", 2),
        (17.0, "EAGAIN", 4),
        (21.0, "EAGAIN", 8),
        (29.0, "ECANCELED", 1),
    ]
    s = result.summary.set_index("domain").loc["stuck"]
    assert s["final_current_pages"] > s["final_target_pages"]
