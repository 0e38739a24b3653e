"""Random damage to a valid scenario gives a Scenario or a ScenarioError, never another exception.

The damage: a value replaced by random data of any type (huge and negative integers, inf and nan,
text, nested lists and mappings), a key removed or added, a value wrapped in a list or mapping,
the YAML text cut short, bytes replaced.  Only validation runs, not the simulation.
"""

from __future__ import annotations

import copy
import io
import warnings
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from balloonsim.errors import ScenarioError, ScenarioWarning
from balloonsim.scenario import load_scenario, parse_scenario
from balloonsim.scenario.model import Scenario

QUICKSTART = Path(__file__).parent.parent / "scenarios" / "quickstart.yaml"
TEXT = QUICKSTART.read_text()
DATA = YAML(typ="safe", pure=True).load(TEXT)

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63, 2**63 - 1, -1, 0, 10**30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["1GiB", "0s", "1e400", "-1GiB", "8766000h", "absent", "auto", "none", "hvm", "x-"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)),
    max_leaves=8,
)


def paths(node: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path to a value in a tree of dicts and lists."""
    found = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            found += paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            found += paths(v, (*prefix, i))
    return found


@st.composite
def damaged(draw) -> Any:
    data = copy.deepcopy(DATA)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(paths(data)))
        change = draw(st.sampled_from(["replace", "drop", "add", "wrap"]))
        if not path:
            data = draw(values) if change == "replace" else data
            continue
        *parent_path, last = path
        parent = data
        for part in parent_path:
            parent = parent[part]
        if change == "replace":
            parent[last] = draw(values)
        elif change == "drop":
            del parent[last]
        elif change == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.text(max_size=8))] = draw(values)
        elif change == "wrap":
            parent[last] = draw(st.sampled_from([[parent[last]], {"x": parent[last]}]))
    return data


def clean(validate) -> None:
    """``validate()`` returns a Scenario or raises a ScenarioError; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScenarioWarning)
        try:
            assert isinstance(validate(), Scenario)
        except ScenarioError as err:
            assert err.problems and all(p and "\n" not in p for p in err.problems)


@settings(max_examples=150)
@given(damaged())
def test_damaged_data_through_model_validate(data):
    clean(lambda: Scenario.model_validate(data))


@settings(max_examples=100)
@given(damaged())
def test_damaged_data_as_yaml_text(data):
    buf = io.StringIO()
    YAML(typ="safe", pure=True).dump(data, buf)
    clean(lambda: parse_scenario(buf.getvalue(), "s.yaml"))


@settings(max_examples=100)
@given(st.integers(0, len(TEXT)), st.lists(st.tuples(st.integers(0, len(TEXT)), st.binary(max_size=3)), max_size=4))
def test_cut_and_scrambled_bytes(tmp_path_factory, cut, edits):
    data = bytearray(TEXT.encode()[:cut])
    for at, chunk in edits:
        data[at : at + len(chunk)] = chunk
    path = tmp_path_factory.mktemp("damaged") / "s.yaml"
    path.write_bytes(bytes(data))
    clean(lambda: load_scenario(path))


@pytest.mark.parametrize("value", [2**5000, float("nan"), float("inf"), [[[[]]]], {"a": {"b": {}}}, b"\x00", object()])
def test_odd_python_values_anywhere_in_a_domain(value):
    for key in ("memory", "name", "kernel", "balloon", "workloads", "static_max", "max_pages"):
        data = copy.deepcopy(DATA)
        data["domains"][0][key] = value
        clean(lambda data=data: Scenario.model_validate(data))
