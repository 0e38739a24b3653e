"""Events that differ only in their time share one validation, and are what pydantic alone would give."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balloonsim.errors import InvalidScenario
from balloonsim.scenario.model import Event, Scenario
from balloonsim.scenario.shared_events import with_shared_validation
from balloonsim.scenario.types import time_field


def scenario(events: list[dict]) -> Scenario:
    return Scenario.model_validate(
        {"duration": "1h", "host": {"total": "8GiB"}, "domains": [{"name": "a", "memory": "1GiB"}], "events": events}
        | {"name": "s"}
    )


_EVENTS = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 10**9).map(lambda n: f"{n}ns"), st.sampled_from([0, "1.5s", "2min"])),
        st.sampled_from(
            [{"target": "1GiB"}, {"take": 5}, {"give": "8KiB"}, {"online": True}, {"mem_available": "auto"}]
        ),
    ),
    max_size=20,
)


@given(_EVENTS)
def test_each_shared_event_is_the_event_pydantic_builds(items):
    raw = [{"at": at, "domain": "a", **action} for at, action in items]
    shared = with_shared_validation(raw, Event, time_field)
    for item, event in zip(raw, shared, strict=True):
        alone = Event.model_validate(item)
        assert isinstance(event, Event)
        assert event == alone
        assert event.model_fields_set == alone.model_fields_set
        assert event.action == alone.action


def test_a_template_is_not_changed_by_the_events_made_from_it():
    first, second = with_shared_validation(
        [{"at": "1s", "domain": "a", "target": "1GiB"}, {"at": "2s", "domain": "a", "target": "1GiB"}],
        Event,
        time_field,
    )
    assert (first.at, second.at) == (1_000_000_000, 2_000_000_000)
    assert first.target == second.target == 1 << 20  # KiB


def test_what_cannot_be_shared_is_left_to_pydantic():
    raw = [
        {"at": "5", "domain": "a", "target": "1GiB"},  # a time without a unit
        {"at": "1s", "domain": "a", "target": "1GB"},  # a value its template refuses
        {"at": "1s", "domain": "a", "alloc_ballooned": {"pages": 1}},  # not a flat mapping
        "not a mapping",
    ]
    assert with_shared_validation(raw, Event, time_field) == raw


def test_equal_values_of_other_types_do_not_share_a_template():
    # True == 1 as a dict key: with the types in the key, take: true is still refused (parse_pages refuses a bool)
    with pytest.raises(InvalidScenario) as err:
        scenario([{"at": "1s", "domain": "a", "take": 1}, {"at": "2s", "domain": "a", "take": True}])
    assert [loc for loc, _ in err.value.issues] == [("events", 1, "take")]


def test_a_bad_event_among_shared_ones_is_named_as_before():
    good = {"domain": "a", "target": "1GiB"}
    with pytest.raises(InvalidScenario) as err:
        scenario([{"at": "1s", **good}, {"at": "2", **good}, {"at": "3s", **good}])
    assert err.value.problems == [
        "events.1.at: '2' has no unit; write a time such as '30s', '250ms', '1.5s', '2min' or '100us'"
    ]
