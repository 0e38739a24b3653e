"""Steady loop turns that take time, done lazily (kernel/lazy_turns.py): the same run as turn by turn.

``bulk_iterations=False`` runs every loop turn as its own SimPy event; the property test runs random
hosts both ways, with costs on, and wants every table identical.  Turn costs of exactly 1 ms put
turns of several guests, scripted events and workload steps at the same instants, where only the
order of the environment's priorities decides which came first.
"""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import balloonsim.kernel.lazy_turns as lazy_turns
from balloonsim.engine import Simulation
from balloonsim.registry import MANAGERS
from balloonsim.scenario.model import Scenario
from balloonsim.units import PAGES_PER_GIB

COSTS = [
    {},  # the runtime profile: 4,720,400 ns a balloon-out turn of 512 pages
    {"profile": "none", "cond_resched": "1ms"},  # every turn exactly 1 ms: ties with events on whole ms
    {"profile": "none", "xen_page_out": "2us", "xen_page_in": "1us"},  # 1.024 ms out, 0.512 ms in
]


@st.composite
def hosts(draw):
    n = draw(st.integers(1, 4))
    names = [f"vm{i}" for i in range(n)]
    memory = draw(st.sampled_from([32768, 131072, 262144]))
    domains = []
    for name in names:
        workloads = draw(
            st.lists(
                st.sampled_from(
                    [
                        {"bursts": {"every": "3s", "length": "1s", "anon": ["0", f"{memory // 3} pages"]}},
                        {"periodic": {"period": "7s", "cache": ["0", f"{memory // 2} pages"], "shape": "sine"}},
                        {"steps": [{"at": "2s", "anon": f"{memory // 2} pages"}, {"at": "9s", "anon": "0"}]},
                    ]
                ),
                max_size=2,
            )
        )
        domains.append(
            {
                "name": name,
                "memory": f"{memory} pages",
                "dynamic_min": f"{memory // 4} pages",
                "type": draw(st.sampled_from(["hvm", "pv"])),
                "costs": draw(st.sampled_from(COSTS)),
                "kernel": {
                    "used_at_boot": f"{memory // 16} pages",
                    "swap": f"{draw(st.sampled_from([0, memory // 4]))} pages",
                },
                "balloon": {"driver": draw(st.sampled_from(["v5.12", "v5.2", "v5.15", "v5.16"]))},
                "workloads": [{"name": f"w{i}", **w} for i, w in enumerate(workloads)],
            }
        )
    events, t = [], 0
    for _ in range(draw(st.integers(1, 10))):
        t += draw(st.sampled_from([0, 1, 3, 250, 1000, 2000]))  # ms
        if draw(st.integers(0, 5)) == 0:
            events.append({"at": f"{t}ms", "host_free": f"{draw(st.sampled_from([0, 5000, 200000]))} pages"})
            continue
        action = draw(st.sampled_from(["target", "mem_set"]))
        pages = draw(st.sampled_from([memory // 8, memory // 2, memory - 700, memory]))
        events.append({"at": f"{t}ms", "domain": draw(st.sampled_from(names)), action: f"{pages * 4}KiB"})
    return Scenario.model_validate(
        {
            "name": "lazy",
            "duration": f"{t + draw(st.sampled_from([3000, 15000]))}ms",
            "progress_every": draw(st.sampled_from(["100ms", "1s", "7ms"])),
            "host": {
                "free": f"{draw(st.sampled_from([0, 3000, 400000]))} pages",
                "manager": {"kind": draw(st.sampled_from(MANAGERS.names()))},
            },
            "domains": domains,
            "events": events,
        }
    )


def both_ways(scenario: Scenario):
    lazy = Simulation(scenario).run(progress=False)
    turn_by_turn = Simulation(scenario, bulk_iterations=False).run(progress=False)
    return lazy, turn_by_turn


@settings(max_examples=60, deadline=None)
@given(hosts())
def test_turns_done_lazily_give_the_tables_of_turn_by_turn(scenario):
    lazy, turn_by_turn = both_ways(scenario)
    for name in ("timeline", "events", "host", "targets"):
        pd.testing.assert_frame_equal(lazy.tables[name], turn_by_turn.tables[name])
    pd.testing.assert_frame_equal(lazy.summary, turn_by_turn.summary)


def two_guests_ballooning(driver: str) -> Scenario:
    # two 4 GiB guests, each asked down to 1 GiB at 1 s and back at 10 s: 3 GiB = 786,432 pages = 1536
    # turns of 512 each way, 4,720,400 ns a turn out with the runtime costs (7.25 s): one of them at a time
    return Scenario.model_validate(
        {
            "name": "two",
            "duration": "30s",
            "progress_every": "1s",
            "host": {"free": "0"},
            "domains": [
                {"name": n, "memory": "4GiB", "kernel": {"used_at_boot": "100MiB"}, "balloon": {"driver": driver}}
                for n in ("a", "b")
            ],
            "events": [
                {"at": at, "domain": n, "target": size} for at, size in (("1s", "1GiB"), ("10s", "4GiB")) for n in "ab"
            ],
        }
    )


@pytest.mark.parametrize("driver", ["v5.12", "v5.16"])  # a delayed work's loop turns; a kthread's passes
def test_a_long_costed_pass_takes_a_few_events_per_progress_row(monkeypatch, driver):
    plans = []
    made = lazy_turns.TurnPlan.__init__
    monkeypatch.setattr(lazy_turns.TurnPlan, "__init__", lambda self, *a: plans.append(a) or made(self, *a))
    sim = Simulation(two_guests_ballooning(driver))
    lazy = sim.run(progress=False)
    lazy_events = next(sim.env._eid)
    slow = Simulation(two_guests_ballooning(driver), bulk_iterations=False)
    turn_by_turn = slow.run(progress=False)
    for name in ("timeline", "events", "host"):
        pd.testing.assert_frame_equal(lazy.tables[name], turn_by_turn.tables[name])
    pd.testing.assert_frame_equal(lazy.summary, turn_by_turn.summary)  # worker passes and loop turns counted alike
    # every guest's 3,072 turns (1,536 out, 1,536 in) happen, each a full batch
    assert [g.activity.iterations >= 3072 for g in sim.guests] == [True, True]
    assert sum(g.activity.pages_out for g in sim.guests) == 2 * 3 * PAGES_PER_GIB
    # a plan ends where a progress row falls due (every 1 s): some 7-8 plans a pass out, 3-4 in
    assert 2 * (7 + 3) <= len(plans) <= 2 * (9 + 5)
    # turn by turn each turn is a SimPy event; lazily a plan costs a handful
    assert next(slow.env._eid) - lazy_events >= 2 * 3072 - 10 * len(plans)


def test_pages_coming_in_to_page_cache_that_waits_for_them_are_planned_too(monkeypatch):
    # a 4 GiB guest down at 1 GiB while its programs read 3 GiB of files: ballooned back up at 20 s, each
    # batch goes straight to the page cache (free memory stays at the cache's floor), turn after turn
    waiting = []  # each balloon-in plan: the page cache still waiting when it was made
    made = lazy_turns.TurnPlan.__init__

    def counted(self, guest, driver, direction, *rest):
        if direction > 0:
            waiting.append(guest.tasks.unmet_cache())
        made(self, guest, driver, direction, *rest)

    monkeypatch.setattr(lazy_turns.TurnPlan, "__init__", counted)
    scenario = Scenario.model_validate(
        {
            "name": "cache",
            "duration": "40s",
            "host": {"free": "0"},
            "domains": [
                {
                    "name": "a",
                    "memory": "4GiB",
                    "kernel": {"used_at_boot": "100MiB"},
                    "workloads": [{"name": "reader", "steps": [{"at": "5s", "cache": "3GiB"}]}],
                }
            ],
            "events": [{"at": "1s", "domain": "a", "target": "1GiB"}, {"at": "20s", "domain": "a", "target": "4GiB"}],
        }
    )
    lazy, turn_by_turn = both_ways(scenario)
    for name in ("timeline", "events", "host", "targets"):
        pd.testing.assert_frame_equal(lazy.tables[name], turn_by_turn.tables[name])
    pd.testing.assert_frame_equal(lazy.summary, turn_by_turn.summary)
    tl = lazy.timeline
    assert tl[tl["time_s"] < 20].iloc[-1]["unmet_cache"] > 0  # the files wait for memory when it comes back
    # ... and the turns that fill the cache are planned (not only those after it is met, which need no settle)
    assert max(waiting) > 0
