"""The scenario package at its edges (issue 8, mutation testing of balloonsim/scenario/): each rule at its
boundary, every message word for word, the parts of an error location kept, the YAML limits exactly at the
limit, each workload's row estimate, the warnings and where they point, and Scenario's Python API (replace,
domain, digest, the pydantic constructor).

Expected values are worked out by hand in the comments: page and KiB arithmetic (a page is 4 KiB, so
1 GiB = 262144 pages = 1048576 KiB), the int64 limits, and the driver's, libxl's and Xen's rules the
checks follow.  Each test builds what it checks inside itself, so that mutmut, which maps a function to
the tests that reach it, runs it against every mutant it can kill.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pydantic
import pytest
from pydantic import BaseModel, TypeAdapter, field_validator
from ruamel.yaml.error import MarkedYAMLError, YAMLError

import balloonsim
from balloonsim import units
from balloonsim.errors import InvalidScenario, ScenarioError, ScenarioWarning, UnknownPath
from balloonsim.scenario import parse_scenario, rules, types, yamldoc
from balloonsim.scenario.loader import line_of
from balloonsim.scenario.messages import allowed_keys, data_loc, explain, issues_of
from balloonsim.scenario.model import Scenario, slug
from balloonsim.scenario.workloads import Workload

S = 1_000_000_000  # ns
GIB_PAGES = 262144
SIZE_HELP = "a size such as '4GiB', '512MiB', '64KiB' or '1048576 pages'"
SPINS = "0: after EAGAIN the worker runs again at once, without a delay: the kernel spins"


def data(**fields) -> dict:
    """A valid scenario's data: domain ``a`` of 1 GiB on an 8 GiB host for 10 s; ``fields`` replace its keys."""
    base = {"name": "t", "duration": "10s", "host": {"total": "8GiB"}, "domains": [{"name": "a", "memory": "1GiB"}]}
    return base | fields


def guest(**fields) -> dict:
    return {"name": "a", "memory": "1GiB"} | fields


def problems(scenario_data: dict, **options) -> list[str]:
    with pytest.raises(InvalidScenario) as err:
        Scenario.model_validate(scenario_data, **options)
    return err.value.problems


def warned(scenario_data: dict) -> list[str]:
    """The ScenarioWarnings of validating ``scenario_data`` (and no other warning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Scenario.model_validate(scenario_data)
    assert all(issubclass(w.category, ScenarioWarning) for w in caught)
    return [str(w.message) for w in caught]


def outside_balloonsim(filename: str) -> bool:
    """A warning that points at its caller, not at balloonsim's own code (mutmut's trampoline counts as a caller)."""
    return not Path(filename).resolve().is_relative_to(Path(balloonsim.__file__).resolve().parent)


# -- the field types: built at import, so each factory is called here ------------------------------------


def test_non_negative_refuses_a_negative_int_and_leaves_every_other_value_to_its_parser():
    check = types._non_negative(lambda v: units.parse_pages(v, bare="pages"))
    assert (check(0), check(5), check("1MiB")) == (0, 5, 256)  # 1 MiB = 256 pages of 4 KiB
    with pytest.raises(ValueError) as err:
        check(-1)
    assert str(err.value) == "must not be negative"
    # a bool is not a count, and a float is not an int: the parser refuses them, naming the value
    for value, shown in ((True, "True"), (-0.5, "-0.5")):
        with pytest.raises(ValueError) as err:
            check(value)
        assert str(err.value) == f"{shown} is not {SIZE_HELP}"


def test_or_words_takes_its_words_and_names_them_when_a_value_is_neither_word_nor_size():
    check = types._or_words(lambda v: units.parse_pages(v, bare="error"), "auto", "absent")
    assert (check(" absent "), check("auto"), check("1MiB"), check(0)) == ("absent", "auto", 256, 0)
    with pytest.raises(ValueError) as err:
        check("none")
    assert str(err.value) == f"'none' is not {SIZE_HELP} (or 'auto' or 'absent')"


# -- each workload's row estimate (changes_until) ---------------------------------------------------------


def workload(**kind) -> Workload:
    return Workload.model_validate({"name": "w", **kind})


def test_a_constant_demand_changes_once_and_steps_once_each():
    assert workload(constant={"anon": "1MiB"}).changes_until(100 * S) == 1
    assert workload(steps=[{"at": "1s"}, {"at": "2s"}, {"at": "3s"}]).changes_until(100 * S) == 3


def test_a_ramp_changes_before_its_start_and_at_every_step_up_to_its_end_or_the_runs():
    ramp = workload(ramp={"start": "10s", "duration": "4s", "step": "1s", "anon": [0, "4MiB"]})
    # workload._ramp: the first level from 0 s, then 10, 11, 12, 13 and 14 s (the end of the ramp)
    assert ramp.changes_until(100 * S) == 6
    # a run that ends at 12.5 s sees 0, 10, 11 and 12 s
    assert ramp.changes_until(12_500_000_000) == 4
    # a run that ends as the ramp starts sees 0 and 10 s; with 1 ns steps the next is 1 ns too late
    fine = workload(ramp={"start": "10s", "duration": "4s", "step": "1ns", "anon": [0, "4MiB"]})
    assert fine.changes_until(10 * S) == 2


def test_a_square_wave_changes_twice_in_every_period_begun():
    square = workload(periodic={"start": "5s", "period": "10s", "anon": [0, "1MiB"]})
    # workload._square: low from 0 s, then high and low at 5 and 10, 15 and 20, 25 and 30 s
    assert square.changes_until(30 * S) == 7


def test_a_sine_changes_at_every_sample_from_its_start():
    sine = {"start": "2s", "period": "16s", "shape": "sine", "anon": [0, "1MiB"]}
    # sampled every period/16 = 1 s: low from 0 s, then 2, 3, ..., 10 s by 10.5 s
    assert workload(periodic=sine).changes_until(10_500_000_000) == 10
    # every 4 s: 0, then 2, 6 and 10 s
    assert workload(periodic=sine | {"step": "4s"}).changes_until(10_500_000_000) == 4
    # a 20 ns period is sampled every 20 // 16 = 1 ns: 0, then 4, 5, ..., 24 ns
    assert workload(periodic=sine | {"start": "4ns", "period": "20ns"}).changes_until(24) == 22
    # by its start, 1 ns samples have changed it twice: at 0 and at the start
    assert workload(periodic=sine | {"start": "10ns", "step": "1ns"}).changes_until(10) == 2


def test_bursts_expect_a_start_and_an_end_per_burst():
    bursts = {"start": "5s", "every": "10s", "length": "1s", "anon": [0, "1MiB"]}
    # the estimate counts span // every bursts and the one under way: 95 s // 10 s + 1 = 10, each two changes
    assert workload(bursts=bursts).changes_until(100 * S) == 20
    # at the start, the one under way: its start and end, even with a burst due every ns
    assert workload(bursts=bursts | {"every": "1ns"}).changes_until(5 * S) == 2


def test_a_replay_changes_at_each_sample_of_each_lap(tmp_path):
    (tmp_path / "t.csv").write_text("time_s,anon_kb,cache_kb\n0,4,0\n1.5,8,0\n")

    def replay(**fields) -> Workload:
        spec = {"name": "w", "replay": {"file": "t.csv", **fields}}
        return Workload.model_validate(spec, context={"base_dir": tmp_path})

    assert replay().changes_until(100 * S) == 2  # played once: its two samples
    # a lap is the last time plus one interval, 1.5 + 1.5 = 3 s: laps begin at 0, 3, 6 and 9 s by 10.5 s
    assert replay(loop=True).changes_until(10_500_000_000) == 8


# -- the warning for a run of millions of timeline rows ----------------------------------------------------

#: A ramp from 1 s of 999998 one-microsecond steps: the level before it, then 999999 levels (Ramp.changes_until)
MILLION = {"name": "m", "ramp": {"start": "1s", "duration": "999998us", "step": "1us", "anon": [0, "1MiB"]}}
TOO_MANY = "the tables take gigabytes to load whole (the run streams them to disk)"


def test_a_million_rows_is_not_yet_too_many():
    assert warned(data(domains=[guest(workloads=[MILLION])])) == []
    events = [{"at": "1s", "domain": "a", "target": "512MiB"}]
    assert warned(data(domains=[guest(workloads=[MILLION])], events=events)) == [
        "domains.0.workloads.0: about 1,000,001 timeline rows (one per event and per workload change; "
        f"1,000,000 from here): over 1,000,000, {TOO_MANY}"
    ]


def test_a_host_event_makes_a_row_for_every_domain_and_the_busiest_workload_is_named():
    small = {"name": "s", "constant": {"anon": "1MiB"}}
    domains = [guest(workloads=[MILLION, small]), guest(name="b")]
    events = [
        {"at": "1s", "domain": "a", "target": "512MiB"},
        {"at": "2s", "host_free": "1MiB"},
        {"at": "3s", "domain": "b", "target": "512MiB"},
    ]
    # rows: 1000000 + 1 from the workloads, 1 + 2 + 1 from the events (host_free: one for each of 2 domains)
    assert warned(data(domains=domains, events=events)) == [
        "domains.0.workloads.0: about 1,000,005 timeline rows (one per event and per workload change; "
        f"1,000,000 from here): over 1,000,000, {TOO_MANY}"
    ]


def test_events_that_make_most_rows_are_named():
    # 1000 guests of 1 MiB, 1001 host events: 1001000 rows, all from the events
    domains = [guest(name=f"g{i}", memory="1MiB") for i in range(1000)]
    events = [{"at": "1s", "host_free": 1}] * 1001
    assert warned(data(domains=domains, events=events)) == [
        "events: about 1,001,000 timeline rows (one per event and per workload change; 1,001,000 from here): "
        f"over 1,000,000, {TOO_MANY}"
    ]


# -- the raw document's rules -----------------------------------------------------------------------------


def test_domains_that_are_not_a_list_of_mappings():
    assert problems(data(domains=5)) == ["domains: Input should be a valid list"]
    assert problems(data(domains=["a"])) == ["domains.0: Input should be a valid dictionary or instance of Domain"]


def test_a_domain_without_a_name_does_not_end_the_search_for_duplicates():
    assert problems(data(domains=[{"memory": "1GiB"}, guest(), guest()])) == [
        "domains.0.name: required",
        "domains.2.name: duplicate domain name 'a' (also domains.1)",
    ]


def test_an_event_that_is_no_mapping_or_has_no_time_does_not_end_the_checks_of_the_next():
    unknown = {"at": "1s", "domain": "zz", "target": "1GiB"}
    assert problems(data(events=["x", unknown])) == [
        "events.0: Input should be a valid dictionary or instance of Event",
        "events.1.domain: unknown domain 'zz'; domains: a",
    ]
    assert problems(data(events=[{"domain": "a", "target": "1GiB"}, unknown])) == [
        "events.0.at: required",
        "events.1.domain: unknown domain 'zz'; domains: a",
    ]


def test_an_event_without_a_domain_names_them_all_or_says_there_are_none():
    take = [{"at": "1s", "take": 1}]
    assert problems(data(domains=[guest(), guest(name="b")], events=take)) == [
        "events.0: take needs a 'domain' (one of: a, b)"
    ]
    assert problems(data(domains=[], events=take)) == [
        "domains: List should have at least 1 item after validation, not 0",
        "events.0: take needs a 'domain' (one of: none defined)",
    ]


def test_an_event_at_the_end_of_the_run_is_in_it_and_later_ones_compare_with_the_latest():
    at = [{"at": t, "domain": "a", "take": 1} for t in ("10s", "5s")]  # the run is 10 s
    order = "list events in time order"
    assert problems(data(events=at)) == [f"events.1.at: 5s is before the previous event (10s); {order}"]
    at = [{"at": t, "domain": "a", "take": 1} for t in ("5s", "3s", "4s")]
    assert problems(data(events=at)) == [
        f"events.1.at: 3s is before the previous event (5s); {order}",
        f"events.2.at: 4s is before the previous event (5s); {order}",
    ]


def test_an_event_or_a_workload_with_no_action_or_kind():
    actions = (
        "target, mem_set, max_pages, host_free, stop, take, give, alloc_ballooned, free_ballooned, online, "
        "hotplug_unpopulated, sysfs, totalreserve, mem_available"
    )
    assert problems(data(events=[{"at": "1s", "domain": "a"}])) == [
        f"events.0: an event has exactly one action (found none); actions: {actions}"
    ]
    assert problems(data(domains=[guest(workloads=[{"name": "w"}])])) == [
        "domains.0.workloads.0: a workload has exactly one kind (found none); kinds: constant, steps, ramp, "
        "periodic, bursts, replay"
    ]


# -- the host ---------------------------------------------------------------------------------------------


def test_free_memory_and_the_domains_may_fill_the_host_exactly():
    Scenario.model_validate(data(host={"total": "2GiB", "free": "1GiB"}))  # 1 GiB free + 1 GiB booted = 2 GiB
    # 1.5 GiB = 393216 pages free + 262144 booted = 655360 pages > 2 GiB = 524288 pages
    assert problems(data(host={"total": "2GiB", "free": "1536MiB"})) == [
        "host.free: free (393216 pages (1.50 GiB)) plus the domains' boot memory (262144 pages (1 GiB)) exceeds "
        "the host total (524288 pages (2 GiB))"
    ]


def test_a_host_given_only_free_memory_may_reach_the_int64_limit_exactly():
    # int64 bytes hold 2**63 - 1 >> 12 = 2251799813685247 pages: free + the 262144 booted pages may make exactly that
    free = units.MAX_PAGES - GIB_PAGES
    assert free == 2251799813423103
    assert Scenario.model_validate(data(host={"free": f"{free} pages"})).host.free == free
    assert problems(data(host={"free": f"{free + 1} pages"})) == [
        "host.free: free plus the domains and the host_free events: sizes must be under 8 EiB (int64 bytes)"
    ]


# -- the guests' warnings ---------------------------------------------------------------------------------


def test_every_domains_warnings_are_kept():
    spins = guest(balloon={"max_schedule_delay": 0})
    assert warned(data(domains=[spins, spins | {"name": "b"}])) == [
        f"domains.0.balloon.max_schedule_delay: {SPINS}",
        f"domains.1.balloon.max_schedule_delay: {SPINS}",
    ]


def test_progress_every_0s_with_costs_says_what_the_tables_become():
    assert warned(data(progress_every="0s")) == [
        "progress_every: 0s with costs: a timeline row after every loop turn of every worker pass (each batch of "
        "pages), so the tables grow with every page ballooned; e.g. 1s keeps them small"
    ]


def test_a_pv_guest_with_static_max_at_its_memory_is_not_warned_about():
    assert warned(data(domains=[guest(type="pv", static_max="1GiB")])) == []


def test_a_pv_guests_ram_at_boot_reaches_static_max():
    # 32-bit lowmem of 1.5 GiB = 393216 pages: within a PV guest's E820, which reaches static-max (2 GiB), as
    # does a PoD HVM guest's (maxmem - videoram), but beyond an HVM guest's RAM without PoD (its memory), or a PV
    # guest's without a static-max
    x86_32 = {"arch": "x86_32", "lowmem": "1536MiB"}
    assert warned(data(domains=[guest(type="pv", static_max="2GiB", kernel=x86_32)])) == []
    beyond = (
        "domains.0.kernel.lowmem: 393216 pages (1.50 GiB) is beyond the guest's RAM at boot (262144 pages (1 GiB)): "
        "memory hot-added below it counts as lowmem, where a 32-bit kernel's lowmem ends with its boot RAM"
    )
    assert warned(data(domains=[guest(type="hvm", static_max="2GiB", kernel=x86_32)])) == []
    assert warned(data(domains=[guest(type="hvm", static_max="2GiB", pod=False, kernel=x86_32)])) == [beyond]
    assert warned(data(domains=[guest(type="pv", static_max="absent", kernel=x86_32)])) == [beyond]


BOOT_TARGET = (
    "domains.0.initial_target: the balloon target at boot is 524288 pages (2 GiB), more than the 262144 pages "
    "(1 GiB) the guest can populate without memory hotplug: the driver cuts the target and cancels (ECANCELED) at boot"
)


def test_a_pv_guest_populates_up_to_static_max_unless_its_extra_memory_leaves_the_balloon():
    # watch_target (drivers/xen/xen-balloon.c): no target_diff for PV, so the boot target is the whole 2 GiB;
    # the E820 reaches static-max (2 GiB), all of it the balloon's, unless CONFIG_XEN_UNPOPULATED_ALLOC
    pv = guest(type="pv", static_max="2GiB", initial_target="2GiB")
    assert warned(data(domains=[pv])) == []
    assert warned(data(domains=[pv | {"kernel": {"unpopulated_alloc": True}}])) == [BOOT_TARGET]


def test_target_diff_takes_static_max_less_memory_off_an_hvm_guests_boot_target_but_not_dom0s():
    # static-max 3 GiB, memory 1 GiB, no PoD: target_diff 2 GiB, so a boot target of 3 GiB asks for 1 GiB, all
    # it has
    assert warned(data(domains=[guest(static_max="3GiB", initial_target="3GiB", pod=False)])) == []
    # dom0 (xen_initial_domain) has no target_diff: 2 GiB asked of 1 GiB
    dom0 = guest(initial_domain=True, static_max="2GiB", initial_target="2GiB", pod=False)
    assert warned(data(domains=[dom0])) == [BOOT_TARGET]


# -- errors as pydantic gives them ------------------------------------------------------------------------


def test_refusal_and_with_issues_are_pydantic_errors_of_type_scenario_rule():
    refused = rules.refusal([(("host",), "give it")])
    assert (refused.title, refused.errors()[0]["type"], refused.errors()[0]["input"]) == (
        "Scenario",
        "scenario_rule",
        None,
    )
    assert rules.refusal([(("memory",), "more")], "Domain").title == "Domain"
    with pytest.raises(pydantic.ValidationError) as err:
        TypeAdapter(int).validate_python("x")
    both = rules.with_issues(err.value, [(("host",), "give it")])
    # the type error as pydantic made it (its type and the value it was given), then the rule
    assert both.title == "Scenario"
    assert [(e["type"], e["loc"], e["msg"], e["input"]) for e in both.errors()] == [
        ("int_parsing", (), "Input should be a valid integer, unable to parse string as an integer", "x"),
        ("scenario_rule", ("host",), "give it", None),
    ]


def test_the_pydantic_constructor_checks_the_rules_and_warns_by_itself():
    with pytest.raises(pydantic.ValidationError) as err:
        Scenario(**data(duration="10", host={}))
    assert [(e["type"], e["loc"], e["input"]) for e in err.value.errors()] == [
        ("value_error", ("duration",), "10"),
        ("scenario_rule", ("host",), None),
    ]
    with pytest.warns(ScenarioWarning) as caught:
        Scenario(**data(domains=[guest(balloon={"max_schedule_delay": 0})]))
    assert [str(w.message) for w in caught] == [f"domains.0.balloon.max_schedule_delay: {SPINS}"]


def test_model_validate_warns_at_its_caller_and_passes_pydantics_options_on():
    with pytest.warns(ScenarioWarning) as caught:
        Scenario.model_validate(data(domains=[guest(balloon={"max_schedule_delay": 0})]))
    assert [str(w.message) for w in caught] == [f"domains.0.balloon.max_schedule_delay: {SPINS}"]
    assert outside_balloonsim(caught[0].filename)
    assert Scenario.model_validate(data(seed="7")).seed == 7  # pydantic's lax mode reads the digits
    assert problems(data(seed="7"), strict=True) == ["seed: Input should be a valid integer"]


# -- error locations and messages -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "doc, loc, kept",
    [
        ({"a": [10, 20]}, ("a", 2), ("a",)),  # an index past the end of the list
        ({"a": {"0": 1}}, ("a", 0), ("a",)),  # an index into a mapping
        ({"a": [10]}, ("a", "x"), ("a",)),  # a key into a list
        ({"a": "lots"}, ("a", "pages"), ("a",)),  # a key into a value (the shorthand alloc_ballooned: lots)
        ({"a": {}}, ("a", "function-after[check(), int]", "b"), ("a", "b")),  # pydantic's union branches
        ({"a": {}}, ("a", "literal['x']", "b"), ("a", "b")),
        ({"a": {}}, ("a", "b", "c"), ("a", "b")),  # a missing key is kept, and nothing below it
    ],
)
def test_data_loc_keeps_the_keys_and_items_of_the_document(doc, loc, kept):
    assert data_loc(doc, loc) == kept


def test_a_shorthand_that_is_no_size_is_reported_where_it_is_written():
    events = [{"at": "1s", "domain": "a", "alloc_ballooned": "lots"}]
    assert problems(data(events=events)) == [f"events.0.alloc_ballooned: 'lots' is not {SIZE_HELP}"]


def test_allowed_keys_are_the_fields_of_the_model_there_and_none_below_a_value():
    assert allowed_keys(Scenario, ("domains", 0, "workloads", 0, "steps", 0)) == ["at", "anon", "cache"]
    for loc in (("name",), ("name", "x"), ("host", "total"), ("nothere",)):
        assert allowed_keys(Scenario, loc) == []
    extra = {"type": "extra_forbidden", "msg": "Extra inputs are not permitted"}
    assert explain(extra, ("nothere", "x"), Scenario) == "unknown key 'x'"


class Checked(BaseModel):
    size: int

    @field_validator("size")
    @classmethod
    def _positive(cls, size: int) -> int:
        if size <= 0:  # an assert, as pytest would not rewrite it in a plug-in's module
            raise AssertionError("size must be positive")
        return size


def test_a_failed_assertion_in_a_validator_reads_as_its_own_message():
    with pytest.raises(pydantic.ValidationError) as err:
        Checked.model_validate({"size": 0})
    assert issues_of(err.value, {"size": 0}, Checked) == [(("size",), "size must be positive")]


# -- Scenario's Python API --------------------------------------------------------------------------------


def test_domain_finds_a_guest_by_name():
    s = Scenario.model_validate(data(domains=[guest(), guest(name="b")]))
    assert s.domain("b") is s.domains[1]
    with pytest.raises(KeyError) as err:
        s.domain("c")
    assert err.value.args == ("c",)


RAMP = {"name": "r", "ramp": {"duration": "1s", "anon": [0, "1MiB"]}}


def test_replace_reaches_into_a_pair_and_replaces_a_whole_item():
    s = Scenario.model_validate(
        data(domains=[guest(workloads=[RAMP])], events=[{"at": "1s", "domain": "a", "take": 1}])
    )
    assert s.replace({"domains.0.workloads.0.ramp.anon.1": "2MiB"}).domains[0].workloads[0].ramp.anon == (0, 512)
    new = {"at": "2s", "domain": "a", "give": 1}
    assert s.replace({"events.0": new}).events[0].give == 1
    with pytest.raises(UnknownPath) as err:
        s.replace({"events.1.at": "1s"})  # one event: only item 0
    assert str(err.value) == "events.1.at: no item '1' in events (items 0-0)"


def test_replace_names_the_dotted_list_it_looked_in():
    s = Scenario.model_validate(data())
    with pytest.raises(UnknownPath) as err:
        s.replace({"domains.0.workloads.3.name": "x"})
    assert str(err.value) == "domains.0.workloads.3.name: no item '3' in domains.0.workloads (no items)"


def test_replace_makes_the_mappings_a_path_goes_through():
    s = Scenario.model_validate(data(events=[{"at": "1s", "domain": "a", "target": "1GiB"}]))
    # a field that is None (sysfs) becomes a mapping: the event now writes target_kb
    t = s.replace({"events.0.target": None, "events.0.sysfs.target_kb": 1048576})
    assert (t.events[0].cause, t.events[0].sysfs.text) == ("target_kb", "1048576")
    # a key the scenario does not have becomes one, for validation to name
    with pytest.raises(InvalidScenario) as err:
        s.replace({"domains.0.bogus.x": 1})
    assert err.value.problems == [
        "domains.0.bogus: unknown key 'bogus'; allowed: name, type, initial_domain, toolstack, memory, static_max, "
        "videoram, pod, initial_target, max_pages, kernel, balloon, costs, workloads, "
        "dynamic_min, dynamic_max, shares, start, start_deadline"
    ]


def test_the_digest_counts_a_trace_by_its_content_not_its_place(tmp_path):
    def replaying(folder: str, trace: str) -> Scenario:
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / "t.csv").write_text(trace)
        workloads = [{"name": "r", "replay": {"file": "t.csv"}}]
        return Scenario.model_validate(
            data(domains=[guest(workloads=workloads)]), context={"base_dir": tmp_path / folder}
        )

    trace = "time_s,anon_kb,cache_kb\n0,4,0\n"
    here, there = replaying("here", trace), replaying("there", trace)
    assert here.domains[0].workloads[0].replay.file != there.domains[0].workloads[0].replay.file
    assert here.digest() == there.digest()
    assert replaying("other", trace.replace(",4,", ",8,")).digest() != here.digest()


@pytest.mark.parametrize(
    "name, made",
    [
        ("my host", "my-host"),
        ("X ray.", "X-ray"),  # runs of other characters become one '-', then '-' and '.' leave the ends
        ("(a)", "a"),
        ("été", "t"),
        ("ü", "scenario"),  # nothing left
    ],
)
def test_slug_makes_a_scenario_name_of_a_file_name(name, made):
    assert slug(name) == made


# -- the loader -------------------------------------------------------------------------------------------

GOOD = "duration: 10s\nhost: {total: 8GiB}\ndomains: [{name: a, memory: 1GiB}]\n"


def test_parse_scenario_names_the_text_and_the_scenario_by_default():
    assert parse_scenario(GOOD).name == "scenario"
    assert parse_scenario("name: mine\n" + GOOD).name == "mine"
    with pytest.raises(ScenarioError) as err:
        parse_scenario(GOOD.replace("10s", "10"))
    assert err.value.problems == [
        "<scenario>:1: duration: 10 has no unit; write a time such as '30s', '250ms', '1.5s', '2min' or '100us'"
    ]


def test_a_file_that_is_not_a_mapping():
    with pytest.raises(ScenarioError) as err:
        parse_scenario("- a\n- b\n", "s.yaml")
    assert err.value.problems == ["s.yaml:1: the file must be a YAML mapping (name, duration, host, domains, events)"]


def test_an_anchored_true_is_true():
    # ruamel gives an anchored boolean as a ScalarBoolean (an int); thp's default is false
    assert parse_scenario(GOOD.replace("memory: 1GiB", "memory: 1GiB, kernel: {thp: &on true}")).domains[0].kernel.thp


def test_a_files_warnings_point_at_the_caller():
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(GOOD.replace("memory: 1GiB", "memory: 1GiB, balloon: {max_schedule_delay: 0}"), "s.yaml")
    assert [str(w.message) for w in caught] == [f"s.yaml:3: domains.0.balloon.max_schedule_delay: warning: {SPINS}"]
    assert outside_balloonsim(caught[0].filename)


def test_line_of_stops_at_the_deepest_part_the_document_has():
    doc = yamldoc.load_yaml("a: 1\nitems:\n  - x\n  - y\n", "s.yaml")
    assert line_of(doc, ("items", 1)) == 4
    assert line_of(doc, ("items", 2)) == 2  # past the end of the list: the list's key
    assert line_of(doc, ("items", "x")) == 2  # a key into a list


# -- YAML limits ------------------------------------------------------------------------------------------


def yaml_problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        yamldoc.load_yaml(text, "s.yaml")
    return err.value.problems


def test_a_text_of_exactly_the_size_limit_is_read(monkeypatch):
    monkeypatch.setattr(yamldoc, "MAX_BYTES", 1 << 20)
    # 1 MiB of NUL characters is read, and refused by the YAML reader at its first character
    assert yaml_problems("\0" * (1 << 20)) == ["s.yaml:1: YAML: character #x0000: special characters are not allowed"]
    assert yaml_problems("\0" * ((1 << 20) + 1)) == ["s.yaml: larger than 1 MiB, more than a scenario needs"]


def test_a_character_yaml_cannot_read_is_named_with_its_line():
    # after two newlines (the first the text's first character): line 3
    assert yaml_problems("\nname: a\nduration: 1\0s\n") == [
        "s.yaml:3: YAML: character #x0000: special characters are not allowed"
    ]


def test_a_yaml_error_without_a_place_is_one_line_at_line_1(monkeypatch):
    def fails(self, text):
        raise YAMLError("cannot\n   load")

    monkeypatch.setattr(yamldoc.YAML, "load", fails)
    assert yaml_problems(GOOD) == ["s.yaml:1: YAML: cannot load"]
    assert yamldoc._line(MarkedYAMLError(problem="no mark")) == 1


def test_a_document_of_exactly_the_node_limit_is_read(monkeypatch):
    # a node counts once its content has: key a 1, the list's items 2 and 3, the list 4, key b 5, the alias as
    # the 3 nodes it names 8 (line 2), and the top mapping last, 9 (its place: line 1)
    text = "a: &x [1, 2]\nb: *x\n"
    limit = "nodes once aliases are expanded; a scenario needs far fewer"
    monkeypatch.setattr(yamldoc, "MAX_NODES", 9)
    assert yamldoc.load_yaml(text, "s.yaml") == {"a": [1, 2], "b": [1, 2]}
    monkeypatch.setattr(yamldoc, "MAX_NODES", 8)
    assert yaml_problems(text) == [f"s.yaml:1: YAML: more than 8 {limit}"]
    monkeypatch.setattr(yamldoc, "MAX_NODES", 7)
    assert yaml_problems(text) == [f"s.yaml:2: YAML: more than 7 {limit}"]


def test_an_alias_inside_its_own_node_is_named_at_its_line():
    assert yaml_problems("x-ok: 1\nx-loop: &a [1, *a]\n") == ["s.yaml:2: YAML: alias 'a' refers to a node around it"]


def test_an_anchor_used_twice_is_legal_yaml_and_not_warned_about():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        doc = yamldoc.load_yaml("a: &x 1\nb: &x 2\nc: *x\n", "s.yaml")
    assert doc["c"] == 2  # the later anchor wins
