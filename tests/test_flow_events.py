"""A long events list read without ruamel.yaml is the document ruamel.yaml reads, lines included."""

from __future__ import annotations

import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

from balloonsim.errors import ScenarioError
from balloonsim.scenario import parse_scenario, yamldoc
from balloonsim.scenario.flow_events import split_events
from balloonsim.scenario.loader import plain

HEAD = "duration: 1h\nhost: {total: 8GiB}\ndomains: [{name: a, memory: 1GiB}]\nevents:\n"
_VALUES = st.sampled_from(
    ["5s", "1.5GiB", "a", "guest-1", "0", "17", "007", "1e5", "1.5", "true", "no", "Null", "'a'", "0x1F", "~", "x:y"]
)


def whole(text: str):
    """What ruamel.yaml alone reads (the fast path's fallback)."""
    return plain(yamldoc._load(text, "s.yaml")[0])


@given(st.lists(st.lists(st.tuples(st.sampled_from(["at", "domain", "target", "take"]), _VALUES), max_size=3)))
def test_the_fast_reading_is_ruamels(events):
    lines = ["  - {" + ", ".join(f"{k}: {v}" for k, v in pairs) + "}" for pairs in events]
    text = HEAD + "".join(line + "\n" for line in lines) + "seed: 3\n"
    try:
        expected = whole(text)
    except ScenarioError:
        return  # a YAML error (a key given twice): the fast path defers to ruamel.yaml for it
    assert plain(yamldoc.load_yaml(text, "s.yaml")) == expected


def test_quotes_words_of_yaml_and_unusual_numbers_are_left_to_ruamel():
    for value in ["'5s'", "true", "no", "1e5", "1.5", "007", "~", "&x 5s", "!!str 5"]:
        assert split_events(HEAD + f"  - {{at: {value}}}\n") is None, value


def test_each_event_keeps_its_line_for_messages():
    text = HEAD + "  - {at: 1s, domain: a, target: 1GiB}\n  # a comment\n\n  - {at: 2s, domain: b, target: 1GiB}\n"
    assert split_events(text) is not None
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "s.yaml")
    # line 5 is the first event, 6 the comment, 7 blank, 8 the second event
    assert err.value.problems == ["s.yaml:8: events.1.domain: unknown domain 'b'; domains: a"]


def test_keys_after_the_events_keep_their_lines():
    text = HEAD + "  - {at: 1s, domain: a, target: 1GiB}\nseed: -1\n"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(text, "s.yaml")
    assert err.value.problems == ["s.yaml:6: seed: Input should be greater than or equal to 0"]


def test_the_node_limit_counts_the_events_read_fast(monkeypatch):
    text = "a: 1\nevents:\n  - {at: 1s, take: 1}\n"
    # nodes: key a and 1 (2), key events (3), the list (4), the item's mapping and its 4 scalars (9), the top (10)
    monkeypatch.setattr(yamldoc, "MAX_NODES", 10)
    assert yamldoc.load_yaml(text, "s.yaml") == {"a": 1, "events": [{"at": "1s", "take": 1}]}
    monkeypatch.setattr(yamldoc, "MAX_NODES", 9)
    with pytest.raises(ScenarioError, match="more than 9 nodes"):
        yamldoc.load_yaml(text, "s.yaml")


def test_a_scenario_reads_alike_either_way():
    text = HEAD + "".join(f"  - {{at: {i}s, domain: a, target: {512 + i}MiB}}  # step {i}\n" for i in range(50))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast = parse_scenario(text, "s.yaml")
    assert fast.events[49].target == (512 + 49) * 1024  # KiB
    assert plain(yamldoc.load_yaml(text, "s.yaml")) == whole(text)
