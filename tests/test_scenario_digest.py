"""Scenario.digest stays what it was before it skipped the full JSON dump: old results stay comparable.

The pinned hashes were computed by the code before the change (commit 735eb81, ``Scenario.digest`` as
``sha256(json.dumps(model_dump(mode="json"), sort_keys=True))``); the property test checks the fast
text against that formula on random event lists.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from balloonsim import bench
from balloonsim.scenario import load_scenario
from balloonsim.scenario.model import Scenario

FIXTURE = Path(__file__).parent / "fixtures" / "digest" / "every_action.yaml"


def old_digest(scenario: Scenario) -> str:
    """The formula the digest always had (no replayed trace here)."""
    return hashlib.sha256(json.dumps(scenario.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()


def test_a_file_with_every_action_keeps_its_digest():
    scenario = load_scenario(FIXTURE)
    assert scenario.digest() == "7a1a5f02533e2c031c056b29d5f96771cc1cdca438c7e606de7dd6285f164684"
    assert scenario.digest() == old_digest(scenario)


def test_the_small_steps_benchmark_keeps_its_digest():
    assert bench.small_steps(1000).digest() == "6e82828cd7436ad59b284fd9d6e42e769dce32e3e9555b530c766d1e6b2490aa"


def test_an_events_time_and_value_change_the_digest():
    scenario = bench.small_steps(10)
    later = scenario.replace({"events.3.at": "12000001ns"})  # was 3 * 4 ms
    other = scenario.replace({"events.3.target": "4190212KiB"})  # was 4190208KiB
    assert len({scenario.digest(), later.digest(), other.digest()}) == 3


_ACTIONS = st.sampled_from(
    [
        {"target": "1GiB"},
        {"target": "1048576KiB"},  # the same value written otherwise: dumps alike
        {"mem_set": "512MiB"},
        {"take": 7},
        {"give": "4KiB"},
        {"alloc_ballooned": 3},
        {"alloc_ballooned": {"pages": 3, "signal_after": "2s"}},
        {"sysfs": {"target": "1G"}},
        {"sysfs": {"scrub_pages": True}},
        {"online": True},
        {"hotplug_unpopulated": "1"},
        {"mem_available": "auto"},
        {"mem_available": 100},
        {"stop": True},
    ]
)


@given(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(["a", "b"]), _ACTIONS), max_size=30))
def test_the_digest_is_the_json_of_the_whole_dump(steps):
    events = [{"at": f"{t}us", "domain": d, **action} for t, d, action in sorted(steps, key=lambda s: s[0])]
    data = {
        "duration": "1s",
        "host": {"total": "8GiB"},
        "domains": [{"name": "a", "memory": "1GiB"}, {"name": "b", "memory": "1GiB"}],
        "events": events,
        "name": "random",
    }
    scenario = Scenario.model_validate(data)
    assert scenario.digest() == old_digest(scenario)
