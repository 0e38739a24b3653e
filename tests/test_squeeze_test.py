"""squeezed's own test suite (xen-api ocaml/squeezed/test/squeeze_test.ml) ported: the simulated
drivers (kernel/fault_rules.py), the harness (managers/squeeze_test.py), cases a-h
(scenarios/squeeze_test/*.yaml) and ``balloonsim run`` of them.  Upstream's runner never fails; these
tests assert the outcome the upstream code reaches on each case.  Sizes in KiB."""

from __future__ import annotations

import math
from itertools import accumulate
from pathlib import Path

import pandas as pd
import pytest

from balloonsim.cli import main
from balloonsim.kernel.fault_rules import HiddenCeiling, HiddenFloor, Ideal, IntermittentlyStuck, Stuck, basic_delta
from balloonsim.managers.squeeze import Domain
from balloonsim.managers.squeeze_test import Harness, HarnessFailure, SimulatedVM, expected, simulate
from balloonsim.scenario.squeeze_case import load_squeeze_test

CASES = Path(__file__).resolve().parent.parent / "scenarios" / "squeeze_test"


def case(name: str):
    return load_squeeze_test(CASES / f"{name}.yaml")


def steps_at(rate: float, updates: int) -> list[int]:
    """What a driver at ``rate`` moves at each harness update: trunc(dt * rate) with dt = i/10 - (i-1)/10
    in doubles (often 0.0999..., so 9 instead of 10 at 100 KiB/s)."""
    return [math.trunc((i / 10 - (i - 1) / 10) * rate) for i in range(1, updates + 1)]


def updates_to_move(kib: int, rate: float = 100.0) -> int:
    """The update after which a driver moving from t=0 has covered ``kib``."""
    return next(n for n, moved in enumerate(accumulate(steps_at(rate, 1000)), 1) if moved >= kib)


# -- the simulated drivers ---------------------------------------------------------------------


def test_basic_delta_truncates_the_float_step_and_stops_short():
    assert 0.3 - 0.2 < 0.1 and basic_delta(100, 0.3 - 0.2, 2000, 1000, 0) == 9  # 9.999... -> 9
    assert basic_delta(100, 0.1, 2000, 1000, 0) == 10
    assert basic_delta(100, 0.1, 0, 1000, 0) == -10
    assert basic_delta(100, 1.0, 1000, 995, 4) == 1  # 5 away, stops 4 short
    assert basic_delta(100, 1.0, 1000, 1002, 4) == 0


def test_hidden_floor():
    rule = HiddenFloor(100, 1250)
    assert rule.delta(1000, 1255, 0, 0.0, 0.1) == -5  # 1245 would be under the floor: to 1250
    assert rule.delta(1000, 1200, 0, 0.0, 0.1) == 50  # already under it: jumps up to it
    assert rule.delta(1500, 1200, 0, 0.0, 0.1) == 10  # rising is never held


def test_hidden_ceiling():
    rule = HiddenCeiling(100, 1500)
    assert rule.delta(2000, 1495, 0, 0.0, 0.1) == 5  # 1505 would pass it: to 1500
    assert rule.delta(1600, 1600, 0, 0.0, 0.1) == -100  # above it, even at its target: down to it
    assert rule.delta(1000, 1400, 0, 0.0, 0.1) == -10


def test_stuck_and_intermittently_stuck():
    assert Stuck().delta(0, 1000, 0, 0.0, 1.0) == 0
    rule = IntermittentlyStuck(500, 0.25)  # moves in [0, 0.25), stalls in [0.25, 0.5), moves in [0.5, 0.75)
    assert rule.delta(9000, 1000, 0, 0.1, 0.1) == 50
    assert rule.delta(9000, 1000, 0, 0.2, 0.1) == 0  # 0.2 awake, 0.3 asleep: the straddling step is lost
    assert rule.delta(9000, 1000, 0, 0.3, 0.1) == 0
    assert rule.delta(9000, 1000, 0, 0.5, 0.1) == 50


# -- the harness -----------------------------------------------------------------------------------


def vm(domid: int, target: int, actual: int, rate: float = 100.0, maxmem: int | None = None) -> SimulatedVM:
    mm = max(target, actual) if maxmem is None else maxmem
    return SimulatedVM(Domain(domid, True, 0, target, 10000, actual, mm, 0), Ideal(rate))


def test_execute_action_orders_maxmem_and_target():
    harness = Harness([vm(0, 1500, 1500)], free=0, target_host_free_mem=0)
    harness.execute_action(0, 2000)  # raised: maxmem first, or the target would be above it
    assert (harness.vms[0].domain.target, harness.vms[0].domain.memory_max) == (2000, 2000)
    harness.execute_action(0, 1000)  # lowered: target first, or maxmem would be below it
    assert (harness.vms[0].domain.target, harness.vms[0].domain.memory_max) == (1000, 1000)
    harness.domain_setmaxmem(0, 1200)  # a maxmem change sets the target too
    assert harness.vms[0].domain.target == 1200


def test_the_drivers_own_refusals():
    with pytest.raises(HarnessFailure) as err:
        vm(0, 1500, 1500).set_target(1600)
    assert err.value.outcome == "target_set_above_max_mem"
    with pytest.raises(HarnessFailure) as err:
        vm(0, 1500, 1500).set_maxmem(1400)
    assert err.value.outcome == "mem_max_set_below_target"


def test_wait_moves_each_vm_in_list_order_from_the_free_memory_left():
    # 0 falls 10 (frees it), then 1 rises 10 into it: fine in this order
    harness = Harness([vm(0, 0, 1000), vm(1, 2000, 1000)], free=0, target_host_free_mem=0)
    harness.wait()
    assert harness.gettimeofday() == 0.1 and harness.free == 0
    assert harness.rows == [(0.1, 0, 990, 0, 1010, 2000)]
    # the other order: 1 would take 10 of 0 free before 0 frees them
    harness = Harness([vm(1, 2000, 1000), vm(0, 0, 1000)], free=0, target_host_free_mem=0)
    with pytest.raises(HarnessFailure) as err:
        harness.wait()
    assert err.value.outcome == "attempted_to_allocate_more_than_host_free_mem"


def test_guaranteed_free():
    # free 100; a domain 10 under its target with inaccuracy 4 could still take 14: 86 guaranteed
    harness = Harness([SimulatedVM(Domain(0, True, 0, 1000, 2000, 990, 1000, 4), Stuck())], 100, 0)
    harness.guaranteed_free(86)
    with pytest.raises(HarnessFailure) as err:
        harness.guaranteed_free(87)
    assert err.value.outcome == "memory_not_guaranteed_free"
    # a domain above its target counts what it will give back: 1010 vs 1000 + 4 -> -6
    harness = Harness([SimulatedVM(Domain(0, True, 0, 1000, 2000, 1010, 1010, 4), Stuck())], 100, 0)
    harness.guaranteed_free(106)


# -- cases a-h ---------------------------------------------------------------------------------------

#: the upstream cases (host-managers.md §1.10): per domain (domid, driver, dynamic_min, target,
#: dynamic_max, actual, maxmem, inaccuracy, driver parameters), free, required, fistpoints
LIMITED = (0, "idealised_vm_with_limit", 1000, 1500, 2000, 1500, 1500, 4, {"rate": 100, "floor": 1250})
STICKY = (1, "intermittently_stuck_vm", 2500, 3500, 4500, 3500, 3500, 4, {"rate": 500, "interval": 250_000_000})
STUCK = (0, "stuck_vm", 5000, 7000, 7000, 7000, 7000, 0, {})
GROWER = (1, "idealised_vm", 5000, 6000, 11000, 6000, 6000, 0, {"rate": 100})
UPSTREAM = {
    "a": ([LIMITED, STICKY], 0, 1000, []),
    "b": (
        [
            (1, "intermittently_stuck_vm", 500, 3500, 4500, 3500, 3500, 4, {"rate": 100, "interval": 3 * 10**9}),
            (0, "intermittently_stuck_vm", 500, 1500, 2500, 1500, 1500, 4, {"rate": 100, "interval": 1_500_000_000}),
        ],
        0,
        1000,
        [],
    ),
    "c": (
        [
            (0, "idealised_vm", 1000, 1500, 2000, 1500, 1500, 0, {"rate": 100}),
            (1, "idealised_vm", 2000, 2500, 3000, 2500, 2500, 0, {"rate": 100}),
        ],
        0,
        1500,
        [],
    ),
    "d": (
        [
            (0, "idealised_vm", 1000, 1500, 2000, 1500, 1500, 0, {"rate": 100}),
            (1, "idealised_vm_with_limit", 2000, 2500, 3000, 2500, 2500, 0, {"rate": 100, "floor": 2250}),
        ],
        0,
        1000,
        [],
    ),
    "e": ([STUCK, GROWER], 0, 1000, []),
    "f": ([STUCK, GROWER], 0, 1000, ["DisableTwoPhaseTargetSets"]),
    "g": ([LIMITED, STICKY], 0, 1000, ["DisableInaccuracyCompensation"]),
    "h": (
        [
            (0, "idealised_vm_with_upper_limit", 1000, 1500, 2000, 1500, 1500, 4, {"rate": 100, "ceiling": 1500}),
            (1, "idealised_vm", 1000, 1500, 2000, 1500, 1500, 4, {"rate": 100}),
        ],
        1000,
        0,
        [],
    ),
}

#: what upstream's code reaches on each (should_succeed: a b e h; the failure kinds are §1.10's)
OUTCOMES = {
    "a": "success",
    "b": "success",
    "c": "cannot_free_this_much_memory",
    "d": "domains_refused_to_cooperate",
    "e": "success",
    "f": "attempted_to_allocate_more_than_host_free_mem",
    "g": "cannot_free_this_much_memory",
    "h": "success",
}


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_case_files_are_the_upstream_cases(name):
    c = case(name)
    domains, free, required, fistpoints = UPSTREAM[name]
    assert (c.free, c.required, c.fistpoints) == (free, required, fistpoints)
    found = [
        (d.domid, d.driver, d.dynamic_min, d.target, d.dynamic_max, d.actual, d.maxmem, d.inaccuracy) for d in c.domains
    ]
    assert found == [d[:8] for d in domains]
    for d, (*_, params) in zip(c.domains, domains, strict=True):
        assert {
            k: getattr(d, k) for k in ("rate", "floor", "ceiling", "interval") if getattr(d, k) is not None
        } == params
    assert c.expect.outcome == OUTCOMES[name]


@pytest.mark.parametrize("name", sorted(OUTCOMES))
def test_case_ends_as_upstream_code_does(name):
    c = case(name)
    result = simulate(c)
    assert result.outcome == OUTCOMES[name]
    assert expected(c, result)
    assert result.phase == 5 if result.outcome == "success" else result.phase == 1


def test_case_c_cannot_free_when_both_sit_at_dynamic_min():
    # freeable 500 + 500 < 1500: surplus 0, both targets dynamic_min; both move 500 at 100 KiB/s from
    # t=0, reached at update n; the iteration at n/10 finds everything stable and 1000 < 1500 free
    n = updates_to_move(500)
    assert n == 53  # 47 steps of 10 would do it, but 6 of them are 9s
    result = simulate(case("c"))
    assert (result.time_s, result.host_free_kib, result.phase) == (n / 10, 1000, 1)
    assert "cannot free 1500 KiB (free: 1000 KiB)" in result.message


def test_case_d_blames_the_domain_stuck_at_its_hidden_floor():
    # freeable 500 + 500 = required: targets 1000 and 2000.  Domain 1 stops at its floor 2250 after
    # 250 KiB (update m, its last progress); declared stuck at the first iteration more than 5 s
    # later, when domain 0 has long reached 1000: stable, 500 + 250 free < 1000: blame domain 1
    m = updates_to_move(250)
    k = next(k for k in range(m, 1000) if k / 10 - m / 10 > 5.0)
    result = simulate(case("d"))
    assert (result.outcome, result.domains) == ("domains_refused_to_cooperate", (1,))
    assert (result.time_s, result.host_free_kib) == (k / 10, 750)
    assert result.declarations == ((k / 10, 1, "inactive"),)


def test_case_f_grows_into_memory_not_yet_free():
    # without two-phase setting, domain 1's rise to 6500 is set with 5500 for the stuck domain 0; at the
    # first update domain 1 takes trunc(0.1 * 100) = 10 of 0 free
    result = simulate(case("f"))
    assert (result.time_s, result.host_free_kib, result.phase) == (0.1, 0, 1)
    assert "domid = 1; delta = 10; free = 0" in result.message
    assert result.timeline.empty  # the update fails before the row is written


def test_case_e_gives_up_on_the_stuck_domain_after_5_seconds():
    # domain 0, first seen at t=0 and asked for 5500 at once, never moves: stuck at the first
    # iteration more than 5 s on, 5.1 s; then domain 1 alone (freeable 1000, surplus 0) goes to 5000
    result = simulate(case("e"))
    assert result.declarations[0] == (5.1, 0, "inactive")
    tl = result.timeline
    assert tl.d0_actual_kib.eq(7000).all()
    assert tl[tl.time_s <= 5.1].d1_target_kib.eq(6000).all() and tl.d1_target_kib.min() == 5000


def test_case_a_ends_with_24_kib_free():
    # upstream's own remark under the cases: "scenario_a with < 24L after the balancing will fail"
    assert simulate(case("a")).host_free_kib == 24


def test_phase_4_shortcut_when_every_target_is_reached():
    # b: after phase 1 both domains sit at their targets and free >= 0: phase 4 returns at once, so no
    # row follows phase 1's and the end is phase 1's free less the 500 KiB used
    result = simulate(case("b"))
    assert result.host_free_kib == result.timeline.host_free_kib.iloc[-1] - 500


def test_timeline_columns_in_list_order():
    result = simulate(case("b"))
    assert list(result.timeline.columns) == [
        "time_s",
        "host_free_kib",
        "d1_actual_kib",
        "d1_target_kib",
        "d0_actual_kib",
        "d0_target_kib",
    ]
    assert result.timeline.time_s.iloc[0] == 0.1 and result.timeline.time_s.diff().dropna().round(9).eq(0.1).all()


# -- the command line ------------------------------------------------------------------------------


def test_run_a_case_file(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["run", str(CASES / "c.yaml"), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "squeeze_test c: cannot_free_this_much_memory at 5.3 s" in printed
    assert "host free at the end: 1000 KiB" in printed and "as expected" in printed
    timeline = pd.read_parquet(out / "timeline.parquet")
    assert len(timeline) == 53 and timeline.host_free_kib.iloc[-1] == 1000


def test_run_exits_1_when_the_outcome_is_not_the_expected_one(tmp_path, capsys):
    text = (CASES / "c.yaml").read_text().replace("{outcome: cannot_free_this_much_memory}", "{outcome: success}")
    wrong = tmp_path / "c.yaml"
    wrong.write_text(text)
    assert main(["run", str(wrong), "-o", str(tmp_path / "out")]) == 1
    assert "NOT AS EXPECTED" in capsys.readouterr().out


def test_bad_case_file_is_one_line_per_problem(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        "squeeze_test:\n"
        "  free: 0\n"
        "  required: 1000\n"
        "  domains:\n"
        "    - {domid: 0, driver: stuck_vm, rate: 100KiB/s, dynamic_min: 0, target: 0, dynamic_max: 0,\n"
        "       actual: 0, maxmem: 0, inaccuracy: 0}\n"
        "  expect: {outcome: success, domains: [0]}\n"
    )
    assert main(["run", str(bad), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"{bad}:3: squeeze_test.required: 1000 has no unit; write a size such as '4GiB', '512MiB', '64KiB' "
        "or '1048576 pages'",
        f"{bad}:5: squeeze_test.domains.0: driver stuck_vm takes no parameters; remove rate",
        f"{bad}:7: squeeze_test.expect: domains (the domids blamed) go only with outcome domains_refused_to_cooperate",
    ]
    assert not (tmp_path / "out").exists()


def test_a_case_takes_no_set(tmp_path, capsys):
    assert main(["run", str(CASES / "a.yaml"), "--set", "host.total=1GiB", "-o", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{CASES / 'a.yaml'}: --set changes a scenario; a squeeze_test case takes none"
    ]
    assert not (tmp_path / "out").exists()


def test_run_help_says_what_a_squeeze_test_exits_with(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "squeeze_test:" in capsys.readouterr().out


def test_validate_takes_case_files(capsys):
    assert main(["validate", str(CASES / "d.yaml")]) == 0
    assert (
        capsys.readouterr().out
        == f"{CASES / 'd.yaml'}: ok (squeeze_test, 2 domain(s), expects domains_refused_to_cooperate)\n"
    )
