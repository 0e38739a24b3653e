"""A sweep's spec, its points and seeds, and the settings derived for planners (guests, overcommit).

Expected values are worked out by hand from the rules in balloonsim/sweep/derived.py's docstring
(which follow the planner's definition of overcommit, results/planner.py) and numpy's SeedSequence.
"""

from __future__ import annotations

import numpy as np
import pytest

from balloonsim.cli import main
from balloonsim.errors import ScenarioError
from balloonsim.scenario.model import Scenario
from balloonsim.sweep.derived import point_scenario, with_guests, with_overcommit
from balloonsim.sweep.points import expand, run_seeds
from balloonsim.sweep.run import plan
from balloonsim.sweep.spec import load_spec

GiB = 262144  # pages
MiB = 256

BASE = """\
name: base
duration: 10s
host: {total: 4GiB}
domains:
  - {name: a, memory: 1GiB, costs: none}
  - {name: b, memory: 512MiB, costs: none, start: 5s}
events:
  - {at: 1s, domain: a, mem_set: 768MiB}
  - {at: 2s, host_free: 0}
  - {at: 3s, domain: b, mem_set: 256MiB}
"""


def write(tmp_path, spec: str, base: str = BASE):
    (tmp_path / "base.yaml").write_text(base)
    path = tmp_path / "spec.yaml"
    path.write_text(spec)
    return path


def problems_of(path) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        plan(path)
    return err.value.problems


def test_each_spec_problem_is_one_line_with_its_file_line_and_field(tmp_path):
    path = write(
        tmp_path,
        "name: s\n"  # 1
        "scenario: base.yaml\n"  # 2
        "seeds: 0\n"  # 3
        "colour: red\n"  # 4
        "grid:\n"  # 5
        "  guests: [2, 0]\n"  # 6
        "  overcommit: [1.5, -1]\n"  # 7
        "random:\n"  # 8
        "  samples: 2\n"  # 9
        "  settings:\n"  # 10
        "    balloon.max_retry_count: {uniform: [8, 2]}\n"  # 11
        "figures: {x: memory}\n",  # 12
    )
    lines = problems_of(path)
    assert any(line.startswith(f"{path}:3: seeds: ") and "greater than or equal to 1" in line for line in lines)
    assert any(line.startswith(f"{path}:4: colour: unknown key") for line in lines)
    assert any(
        line.startswith(f"{path}:11: random.settings.balloon.max_retry_count: ") and "below" in line for line in lines
    )
    assert all(line.count("\n") == 0 for line in lines)


def test_derived_values_and_figure_axes_are_checked_after_the_schema(tmp_path):
    path = write(
        tmp_path,
        "name: s\nscenario: base.yaml\ngrid:\n  guests: [2, 0]\n  overcommit: [1.5, -1]\nfigures: {x: memory}\n",
    )
    assert problems_of(path) == [
        f"{path}:4: grid.guests.1: a number of guests is a whole number of at least 1, not 0",
        f"{path}:5: grid.overcommit.1: an overcommit ratio (Σ static-max / host total) is a number above 0, not -1",
        f"{path}:6: figures.x: 'memory' is not swept; settings swept: guests, overcommit",
    ]


def test_a_setting_may_not_be_named_as_a_column_of_the_table(tmp_path):
    # the table has its own seed, point and domain columns; the runs' seeds are the spec's seed: and seeds:
    path = write(
        tmp_path,
        "name: s\nscenario: base.yaml\ngrid: {seed: [1, 2]}\n"
        "random:\n  samples: 2\n  settings: {domain: {choice: [a]}}\n",
    )
    assert problems_of(path) == [
        f"{path}:3: grid.seed: the runs' seeds come from the spec's own seed: and seeds: (a SeedSequence), "
        "not a setting",
        f"{path}:6: random.settings.domain: 'domain' names a column of the sweep's table; choose another setting",
    ]


def test_a_cluster_address_dask_cannot_read_is_refused_before_the_folder_is_made(tmp_path, capsys):
    path = write(tmp_path, "name: s\nscenario: base.yaml\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--cluster", "schedulerhost"]) == 2
    assert capsys.readouterr().err == (
        "balloonsim: --cluster schedulerhost: missing port number in address 'schedulerhost'; "
        "give the scheduler as tcp://HOST:PORT\n"
    )
    assert not (tmp_path / "out").exists()


def test_the_command_line_prints_the_problems_and_exits_2_before_writing(tmp_path, capsys):
    path = write(tmp_path, "name: s\nscenario: base.yaml\ngrid: {guests: [0]}\n")
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--serial"]) == 2
    err = capsys.readouterr().err
    assert err == f"{path}:3: grid.guests.0: a number of guests is a whole number of at least 1, not 0\n"
    assert not (tmp_path / "out").exists()


def test_validate_checks_a_spec_and_its_points_without_running(tmp_path, capsys):
    good = write(tmp_path, "name: s\nscenario: base.yaml\nseeds: 4\ngrid: {overcommit: [0.5, 1], guests: [1, 2, 3]}\n")
    assert main(["validate", str(good)]) == 0
    assert capsys.readouterr().out == f"{good}: ok (sweep, 6 point(s) x 4 seed(s))\n"
    good.write_text("name: s\nscenario: base.yaml\ngrid: {host.total: [1MiB]}\n")
    assert main(["validate", str(good)]) == 2
    assert capsys.readouterr().err.startswith(f"{good}:3: grid.host.total: point p000 (host.total=1MiB): host.total: ")


def test_every_bad_point_is_reported_at_once_at_the_setting_it_is_about(tmp_path):
    # a 4 GiB host holds a (1 GiB at boot); 512MiB and 768MiB cannot: two bad points, one good
    path = write(tmp_path, "name: s\nscenario: base.yaml\ngrid:\n  host.total: [4GiB, 512MiB, 768MiB]\n")
    lines = problems_of(path)
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:4: grid.host.total: point p001 (host.total=512MiB): host.total: ")
    assert lines[1].startswith(f"{path}:4: grid.host.total: point p002 (host.total=768MiB): host.total: ")


def test_a_setting_that_does_not_exist_is_named(tmp_path):
    path = write(tmp_path, "name: s\nscenario: base.yaml\ngrid: {balloon.colour: [1]}\n")
    (line,) = problems_of(path)
    assert line.startswith(f"{path}:3: grid.balloon.colour: point p000 (balloon.colour=1): ")
    assert "colour" in line.split(": point p000 (balloon.colour=1): ", 1)[1]


def test_the_grid_is_the_cartesian_product_first_setting_outermost(tmp_path):
    spec = load_spec({"scenario": "x.yaml", "grid": {"a": [1, 2], "b": ["x", "y", "z"]}}).spec
    points = expand(spec)
    assert [p.id for p in points] == ["p000", "p001", "p002", "p003", "p004", "p005"]
    assert [tuple(p.settings.values()) for p in points] == [
        (1, "x"), (1, "y"), (1, "z"), (2, "x"), (2, "y"), (2, "z"),
    ]  # fmt: skip


def test_random_samples_are_reproducible_within_their_ranges_and_shared_by_grid_points():
    def spec(seed: int):
        return load_spec(
            {
                "scenario": "x.yaml",
                "seed": seed,
                "grid": {"g": [1, 2]},
                "random": {
                    "samples": 50,
                    "settings": {
                        "n": {"uniform": [2, 4]},
                        "size": {"uniform": ["1MiB", "2MiB"]},
                        "t": {"loguniform": ["1ms", "1s"]},
                        "kind": {"choice": ["none", "squeezed"]},
                    },
                },
            }
        ).spec

    points = expand(spec(7))
    assert len(points) == 100 and [p.id for p in points][-1] == "p099"
    first, second = points[:50], points[50:]
    assert [p.settings["n"] for p in first] == [p.settings["n"] for p in second]  # the same samples at g=1 and g=2
    assert {p.settings["n"] for p in first} == {2, 3, 4}  # integers, both ends included
    pages = [int(p.settings["size"].split()[0]) for p in first]
    assert all(256 <= n <= 512 for n in pages) and all(p.settings["size"].endswith(" pages") for p in first)
    assert {p.settings["kind"] for p in first} == {"none", "squeezed"}
    assert [p.settings for p in expand(spec(7))] == [p.settings for p in points]
    assert [p.settings for p in expand(spec(8))] != [p.settings for p in points]


def test_run_seeds_come_from_the_spawned_seed_sequence_whatever_the_count():
    # the seed of index j is the first 64-bit word of SeedSequence(entropy).spawn(n)[j], halved to fit an int64
    child = np.random.SeedSequence(5).spawn(3)[2]
    assert run_seeds(5, 3)[2] == int(child.generate_state(1, np.uint64)[0]) >> 1
    assert run_seeds(5, 10)[:3] == run_seeds(5, 3)  # more seeds keep the first ones
    assert len(set(run_seeds(5, 10))) == 10 and run_seeds(6, 3) != run_seeds(5, 3)
    assert all(0 <= s < 2**63 for s in run_seeds(5, 10))


def base() -> Scenario:
    return Scenario.model_validate(
        {
            "name": "base",
            "duration": "10s",
            "host": {"total": "4GiB"},
            "domains": [
                {"name": "a", "memory": "1GiB", "costs": "none", "initial_domain": True},
                {"name": "b", "memory": "512MiB", "costs": "none", "start": "5s"},
            ],
            "events": [
                {"at": "1s", "domain": "a", "mem_set": "768MiB"},
                {"at": "2s", "host_free": 0},
                {"at": "3s", "domain": "b", "mem_set": "256MiB"},
            ],
        }
    )


def test_guests_repeat_the_domains_in_order_and_their_events_for_each_copy():
    s = with_guests(base(), 5)
    assert [d.name for d in s.domains] == ["a-1", "b-1", "a-2", "b-2", "a-3"]
    assert [d.initial_domain for d in s.domains] == [True, False, False, False, False]  # one dom0
    assert [d.start for d in s.domains] == [None, 5 * 10**9, None, 5 * 10**9, None]
    assert [(e.at // 10**9, e.domain) for e in s.events] == [
        (1, "a-1"), (1, "a-2"), (1, "a-3"), (2, None), (3, "b-1"), (3, "b-2"),
    ]  # fmt: skip
    assert s.host.total == 4 * GiB  # not scaled unless asked


def test_fewer_guests_drop_the_events_of_the_domains_left_out_and_scale_host_scales_the_total():
    s = with_guests(base(), 1, scale_host=True)
    assert [d.name for d in s.domains] == ["a-1"]
    assert [e.domain for e in s.events] == ["a-1", None]
    assert s.host.total == 4 * GiB * 1 // 2  # 2 GiB: N / k = 1 / 2
    assert with_guests(base(), 3, scale_host=True).host.total == 4 * GiB * 3 // 2  # 6 GiB


def test_overcommit_sets_the_host_total_rounded_up_to_a_page():
    # Σ static-max = 1 GiB + 512 MiB (b starts later but counts) = 393216 pages; 393216 / 1.3 = 302473.8 -> 302474
    s = with_overcommit(base(), 1.3)
    assert s.host.total == 302474
    assert 393216 / s.host.total <= 1.3 < 393216 / (s.host.total - 1)
    assert with_overcommit(base(), 0.5).host.total == 786432  # exact: 393216 / 0.5


def test_overcommit_keeps_the_other_consumers_memory_when_free_is_given():
    # base: total 4 GiB, free 2 GiB, a (1 GiB) at boot: others hold 4 - 1 - 2 = 1 GiB = 262144 pages.
    # ratio 0.5: total 786432; free = 786432 - 262144 (a) - 262144 (others) = 262144
    s = with_overcommit(base().replace({"host.free": "2GiB"}), 0.5)
    assert (s.host.total, s.host.free) == (786432, 262144)


def test_guests_then_overcommit_count_every_copy_and_dotted_settings_reach_every_domain():
    s = point_scenario(base(), {"overcommit": 1.2, "guests": 4, "balloon.max_retry_count": 1}, "")
    # 4 guests: a, b, a, b = 2 x 393216 = 786432 pages; / 1.2 = 655360
    assert s.host.total == 655360
    assert [d.balloon.max_retry_count for d in s.domains] == [1, 1, 1, 1]
