import textwrap

import pytest

from balloonsim.errors import ScenarioError
from balloonsim.scenario import load_scenario, parse_scenario


def problems(text: str) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(textwrap.dedent(text), "s.yaml")
    return err.value.problems


GOOD = """\
name: ok
duration: 1min
host: {total: 8GiB}
domains:
  - name: vm1
    memory: 2GiB
events:
  - {at: 5s, domain: vm1, target: 1GiB}
"""


def test_a_good_scenario_loads_with_units_converted():
    s = parse_scenario(GOOD, "s.yaml")
    assert s.duration == 60 * 10**9
    assert s.host.total == 8 * 262144
    assert s.domains[0].memory == 524288
    assert s.domains[0].static_max_pages == 524288  # defaults to memory
    assert s.domains[0].initial_target_kib == 2 * 1024 * 1024
    assert s.events[0].target == 1024 * 1024  # KiB, xenstore's unit
    assert s.events[0].cause == "target"


def test_every_problem_of_a_file_is_reported_with_its_line():
    found = problems(
        """\
        name: bad
        duration: 10
        host:
          total: 8GB
        domains:
          - name: a
            memory: -1GiB
            bogus: 1
            kernel:
              hz: 123
          - name: a
            memory: 1GiB
        events:
          - {at: 5s, domain: a, target: 1GiB}
          - {at: 1s, domain: zz, take: 10}
          - {at: 6s, host_free: 10, domain: a}
          - {at: 7s, take: 1, give: 2, domain: a}
          - {at: 8s, domain: a, sysfs: {target_kb: 10, max_retry_count: 1}}
          - {at: 9s, take: 5}
        """
    )
    assert found == [
        "s.yaml:2: duration: 10 has no unit; write a time such as '30s', '250ms', '1.5s', '2min' or '100us'",
        "s.yaml:4: host.total: '8GB': decimal units are ambiguous; write 8GiB for a power of 1024",
        "s.yaml:7: domains.0.memory: '-1GiB': must not be negative",
        "s.yaml:8: domains.0.bogus: unknown key 'bogus'; allowed: name, type, initial_domain, toolstack, "
        "memory, static_max, videoram, pod, initial_target, max_pages, kernel, balloon, costs, workloads, "
        "dynamic_min, dynamic_max, shares, start, start_deadline",
        "s.yaml:10: domains.0.kernel.hz: Input should be 100, 250, 300 or 1000",
        "s.yaml:11: domains.1.name: duplicate domain name 'a' (also domains.0)",
        "s.yaml:15: events.1.domain: unknown domain 'zz'; domains: a",
        "s.yaml:15: events.1.at: 1s is before the previous event (5s); list events in time order",
        "s.yaml:16: events.2.domain: host_free acts on the host; remove 'domain'",
        "s.yaml:17: events.3: an event has exactly one action (found give, take); actions: target, mem_set, "
        "max_pages, host_free, stop, take, give, alloc_ballooned, free_ballooned, online, hotplug_unpopulated, sysfs, "
        "totalreserve, mem_available",
        "s.yaml:18: events.4.sysfs: write exactly one attribute, one of: target_kb, target, max_retry_count, "
        "max_schedule_delay, scrub_pages",
        "s.yaml:19: events.5: take needs a 'domain' (one of: a)",
    ]


def test_missing_fields_and_unknown_top_level_keys():
    found = problems(
        """\
        duration: 1s
        hosts: {}
        domains:
          - name: a
        """
    )
    assert (
        "s.yaml:2: hosts: unknown key 'hosts'; allowed: name, description, duration, seed, progress_every, host, "
        "domains, events" in found
    )
    assert "s.yaml:1: host: required" in found
    assert "s.yaml:4: domains.0.memory: required" in found


def test_events_after_the_end_and_host_capacity():
    found = problems(
        """\
        duration: 10s
        host: {total: 1GiB}
        domains:
          - {name: a, memory: 2GiB}
        events:
          - {at: 11s, domain: a, target: 1GiB}
        """
    )
    assert found == [
        "s.yaml:2: host.total: the domains boot with 524288 pages (2 GiB), more than the host's 262144 pages (1 GiB)",
        "s.yaml:6: events.0.at: 11s is after the end of the run (duration 10s)",
    ]


def test_host_needs_total_or_free():
    assert "s.yaml:2: host: give the host's total memory, its free memory at t=0, or both" in problems(
        """\
        duration: 10s
        host: {}
        domains: [{name: a, memory: 1GiB}]
        """
    )


def test_yaml_syntax_errors_name_the_line():
    found = problems("duration: 10s\nhost: {total: 1GiB\ndomains: []\n")
    assert len(found) == 1 and found[0].startswith("s.yaml:3: YAML:")


def test_yaml_1_2_keeps_on_as_a_string():
    # YAML 1.1 would read `on` as true; here it is the text "on", which `online` refuses
    found = problems(
        """\
        duration: 10s
        host: {total: 2GiB}
        domains: [{name: a, memory: 1GiB}]
        events: [{at: 1s, domain: a, online: on}]
        """
    )
    assert found == ["s.yaml:4: events.0.online: Input should be True"]


def test_lowmem_only_on_32_bit_arches():
    found = problems(
        """\
        duration: 10s
        host: {total: 2GiB}
        domains: [{name: a, memory: 1GiB, kernel: {lowmem: 512MiB}}]
        """
    )
    assert found == ["s.yaml:3: domains.0.kernel: lowmem: x86_64 has no highmem; lowmem applies to x86_32 and arm32"]


def test_unreadable_file(tmp_path):
    with pytest.raises(ScenarioError, match="cannot read"):
        load_scenario(tmp_path / "missing.yaml")


def test_name_defaults_to_the_file_name_and_the_digest_is_stable(tmp_path):
    path = tmp_path / "my host.yaml"
    path.write_text(GOOD.replace("name: ok\n", ""))
    a, b = load_scenario(path), load_scenario(path)
    assert a.name == "my-host"
    assert a.digest() == b.digest()
    assert a.replace(duration="2min").digest() != a.digest()


def test_shorthand_and_text_values():
    s = parse_scenario(
        GOOD.replace("target: 1GiB}", "alloc_ballooned: 100}")
        + "  - {at: 6s, domain: vm1, sysfs: {max_retry_count: 0}}\n"
        + "  - {at: 7s, domain: vm1, hotplug_unpopulated: 1}\n"
        + "  - {at: 8s, domain: vm1, mem_available: auto}\n",
        "s.yaml",
    )
    assert s.events[0].alloc_ballooned.pages == 100 and s.events[0].alloc_ballooned.signal_after is None
    assert (s.events[1].cause, s.events[1].sysfs.text) == ("max_retry_count", "0")
    assert s.events[2].hotplug_unpopulated == "1"
    assert s.events[3].mem_available == "auto"


def test_replace_changes_a_knob_by_dotted_path():
    s = parse_scenario(GOOD, "s.yaml")
    t = s.replace({"domains.vm1.balloon.max_retry_count": 0, "domains.0.kernel.hz": 1000}, duration="2min")
    assert (t.domains[0].balloon.max_retry_count, t.domains[0].kernel.hz, t.duration) == (0, 1000, 120 * 10**9)
    assert s.domains[0].balloon.max_retry_count == 4  # the original is unchanged
    assert t.replace().digest() == t.digest()  # a round trip keeps every value
    with pytest.raises(KeyError, match="no item 'vm9'"):
        s.replace({"domains.vm9.memory": "1GiB"})


def test_workload_problems_are_reported_with_their_lines():
    found = problems(
        """\
        duration: 60s
        host: {total: 8GiB}
        domains:
          - name: a
            memory: 4GiB
            kernel: {kswapd_rate: fast}
            workloads:
              - {name: w, ramp: {duration: 10s, anon: [1GiB]}}
              - {name: b, bursts: {every: 1s, length: 1s, anon: [2GiB, 1GiB]}}
              - {name: r, replay: {file: nothere.csv}}
              - {name: s, steady: {anon: 1GiB}}
        """
    )
    assert found[0] == (
        "s.yaml:6: domains.0.kernel.kswapd_rate: 'fast' is not a rate such as '1GiB/s', '200MiB/s' or '50000 pages/s'"
    )
    assert (
        found[1]
        == "s.yaml:8: domains.0.workloads.0.ramp.anon: give two sizes, [from, to] or [low, high], e.g. [0, 1GiB]"
    )
    assert found[2] == "s.yaml:9: domains.0.workloads.1.bursts: anon: the smallest burst comes first, [min, max]"
    assert found[3].startswith("s.yaml:10: domains.0.workloads.2.replay: ") and "nothere.csv: cannot read" in found[3]
    assert found[4].startswith("s.yaml:11: domains.0.workloads.3.steady: unknown key 'steady'; allowed: name,")
