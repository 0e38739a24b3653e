"""oVirt MoM with vdsm's balloon policy (02-balloon.policy; host-managers.md §4).

Upstream has no test that feeds the policy numbers (§4.1), so the conformance cases are the
reference's worked examples M1-M4 (§4.5) and cases derived here by hand from the policy text, each
in KiB as MoM counts.  The host is T = 1,000,000 KiB so that a host free fraction h is h * T KiB
of free memory; MiB = 1024 KiB.  Requests are truncated to int (mom/Controllers/Balloon.py).
"""

from __future__ import annotations

import pytest

from balloonsim import run
from balloonsim.managers.mom import GuestSample, HostSample, MomParams, balloon_policy, stat_avg
from balloonsim.units import kib_to_pages
from conftest import ZERO_RESERVES, make_scenario

T = 1_000_000  # host total, KiB
KIB_MIB = 1024  # KiB in a MiB


def host(*free_fractions: float) -> list[HostSample]:
    """A host history, oldest first, of free memory h * T KiB."""
    return [HostSample(mem_free=round(h * T), mem_available=T) for h in free_fractions]


def guest(cur: int, unused: int | None, minimum: int, maximum: int) -> GuestSample:
    """One sample, sizes in MiB."""
    return GuestSample(
        cur * KIB_MIB, minimum * KIB_MIB, maximum * KIB_MIB, None if unused is None else unused * KIB_MIB
    )


def policy(host_history, guests, **settings) -> dict[str, int]:
    return balloon_policy(host_history, guests, MomParams(kind="mom", **settings))


# -- §4.5 worked examples (one run; each average is the single sample) ---------------------------


def test_m1_grow_to_the_floor_beats_the_5_percent_step():
    # h 0.50: no pressure, GROW.  guest_free_percent = 0.20 * (0.50 / 0.20) = 0.5.
    # used = 1024 - 300 = 724 MiB = 741376 KiB; floor = max(524288, 741376 + 0.5 * 1048576) = 1265664;
    # step = 1048576 * 1.05 = 1101004.8 < floor -> 1265664, below max 2097152; a change of 217088 KiB
    assert policy(host(0.50), {"g": [guest(1024, 300, 512, 2048)]}) == {"g": 1265664}


def test_m2_shrink_by_the_5_percent_step():
    # h 0.10 < 0.20, enabled: SHRINK.  guest_free_percent = 0.20 * (0.10 / 0.20) = 0.1.
    # used = 2048 - 1024 = 1024 MiB; floor = max(512 MiB, 1048576 + 0.1 * 2097152) = 1258291.2 KiB
    # (1228.8 MiB); step = 2097152 * 0.95 = 1992294.4 >= floor, <= cur, big enough -> int 1992294
    assert policy(host(0.10), {"g": [guest(2048, 1024, 512, 2048)]}) == {"g": 1992294}


def test_m3_critical_pressure_still_limited_to_5_percent():
    # h 0.03 <= 0.05: guest_free_percent = -0.05 + 0.03 = -0.02;
    # floor = max(524288, 1048576 - 0.02 * 2097152) = 1006632.96 KiB (~983 MiB); step 1992294.4 wins
    assert policy(host(0.03), {"g": [guest(2048, 1024, 512, 2048)]}) == {"g": 1992294}


def test_m4_shrink_refuses_a_floor_above_the_current_size():
    # h 0.10: SHRINK.  used = 1100 - 50 = 1050 MiB; floor = max(1024, 1050 + 0.1 * 1100) = 1160 MiB;
    # step = 1100 * 0.95 = 1045 MiB < floor -> size 1160 MiB > cur 1100 MiB: no request.
    # Guaranteed pass: cur 1100 >= min 1024: nothing either.
    assert policy(host(0.10), {"g": [guest(1100, 50, 1024, 2048)]}) == {}


# -- further cases from the policy text ----------------------------------------------------------


def test_the_critical_branch_includes_exactly_5_percent():
    # cur 1000 MiB = 1024000 KiB, unused 10 MiB: used = 1013760 KiB; min 256 MiB.
    # h = 50000 / 1000000 = 0.05 <= pressure_critical: guest_free_percent = -0.05 + 0.05 = 0.0,
    # floor = max(262144, 1013760 + 0) = 1013760; step 1024000 * 0.95 = 972800 < floor -> 1013760,
    # <= cur, a change of 10240 > 0.0025 * 1024000 = 2560: requested.
    g = {"g": [guest(1000, 10, 256, 2048)]}
    assert policy(host(0.05), g) == {"g": 1013760}
    # just above, h = 0.050001, the normal branch: guest_free_percent = 0.20 * (0.050001 / 0.20)
    # = 0.050001, floor = 1013760 + 0.050001 * 1024000 = 1064961.0 > cur 1024000: refused
    assert policy(host(0.050001), g) == {}


def test_grow_is_capped_at_balloon_max_and_needs_a_ballooned_guest():
    # h 0.50: GROW.  cur 1900 MiB = 1945600 KiB, unused 1000 MiB: used 900 MiB;
    # floor = max(512, 900 + 0.5 * 1900) = 1850 MiB; step 1945600 * 1.05 = 2042880 KiB (1995 MiB)
    # > floor, but > max 1950 MiB = 1996800 KiB: capped at 1996800 (a change of 51200 > 4864).
    assert policy(host(0.50), {"g": [guest(1900, 1000, 512, 1950)]}) == {"g": 1996800}
    # a guest at its max (cur = max) is not ballooned: GROW has no work
    assert policy(host(0.50), {"g": [guest(1950, 1000, 512, 1950)]}) == {}


def test_a_change_must_exceed_a_quarter_percent_of_the_current_size():
    # cur 400000 KiB: the least change is 0.0025 * 400000 = 1000.0 KiB, and it must be exceeded.
    # h 0.10: SHRINK; used = 400000 - 300000 = 100000; floor = max(min, 100000 + 0.1 * 400000 = 140000)
    # = min for the mins below; step 400000 * 0.95 = 380000 < min -> size = min.
    def shrink_to(minimum_kib: int) -> dict[str, int]:
        g = GuestSample(balloon_cur=400000, balloon_min=minimum_kib, balloon_max=800000, mem_unused=300000)
        return policy(host(0.10), {"g": [g]})

    assert shrink_to(399000) == {}  # |399000 - 400000| = 1000, not > 1000
    assert shrink_to(398999) == {"g": 398999}  # 1001 > 1000


def test_with_ballooning_disabled_every_guest_only_grows():
    # h 0.10 is pressure, but balloonEnabled 0 sends every guest to GROW.
    # a: cur 2048 MiB = max: GROW has no work.  b: cur 1024 MiB, unused 512: guest_free_percent 0.1,
    # floor = max(512 MiB, 524288 + 0.1 * 1048576) = 629145.6 KiB; step 1048576 * 1.05 = 1101004.8 -> 1101004
    guests = {"a": [guest(2048, 1024, 512, 2048)], "b": [guest(1024, 512, 512, 2048)]}
    assert policy(host(0.10), guests, balloon_enabled=False) == {"b": 1101004}
    # enabled, both SHRINK: a as M2 (1992294); b: step 1048576 * 0.95 = 996147.2 > floor 629145.6
    assert policy(host(0.10), guests) == {"a": 1992294, "b": 996147}


def test_a_guest_with_missing_memory_data_is_skipped_but_keeps_its_guaranteed_memory():
    # h 0.50.  The latest sample of a and c has no mem_unused (the guest did not report it):
    # (valid guest.balloon_cur (guest.Stat "mem_unused")) fails, no GROW/SHRINK for them, although
    # a would grow (its earlier sample has the data).  The guaranteed pass still reads balloon_cur:
    # c at 400 MiB < its min 512 MiB gets 512 MiB = 524288 KiB.  b, complete, is M1's guest.
    guests = {
        "a": [guest(1024, 300, 512, 2048), guest(1024, None, 512, 2048)],
        "b": [guest(1024, 300, 512, 2048)],
        "c": [guest(400, None, 512, 2048)],
    }
    assert policy(host(0.50), guests) == {"b": 1265664, "c": 524288}


def test_the_guaranteed_memory_rule_runs_second_and_overwrites():
    # Under pressure (h 0.10), a guest below its guaranteed memory: cur 1000 MiB, min 1024 MiB.
    # SHRINK: floor >= min 1048576 KiB > cur 1024000 -> size above cur: refused.
    # Then cur < min: request min 1048576.
    g = {"g": [guest(1000, 100, 1024, 2048)]}
    assert policy(host(0.10), g) == {"g": 1048576}
    # Without pressure (h 0.50) GROW requests first: used 900 MiB, floor = max(1024, 900 + 0.5 * 1000)
    # = 1400 MiB = 1433600 KiB > step 1075200 -> 1433600; the guaranteed rule then overwrites it with
    # the smaller 1048576 (a map per guest: the last request wins).
    assert policy(host(0.50), g) == {"g": 1048576}


def test_statavg_over_a_short_history():
    # three samples.  Host (0.5 + 0.5 + 0.05) / 3 = 0.35: no pressure, although the latest alone
    # (0.05) is critical.  Guest unused (300 + 300 + 0) / 3 = 200 MiB = 204800 KiB:
    # used = 1048576 - 204800 = 843776; floor = max(524288, 843776 + 0.35 * 1048576 = 367001.6)
    # = 1210777.6; step 1101004.8 < floor -> int 1210777.  (Latest-only unused 0 would give
    # floor 1048576 + 367001.6 = 1415577.6.)
    assert stat_avg(host(0.5, 0.5, 0.05), "mem_free") == 350000.0
    history = [guest(1024, 300, 512, 2048), guest(1024, 300, 512, 2048), guest(1024, 0, 512, 2048)]
    assert stat_avg(history, "mem_unused") == 204800.0
    assert policy(host(0.5, 0.5, 0.05), {"g": history}) == {"g": 1210777}
    # a sample without the optional field does not count: (300 + 100) / 2 MiB
    assert stat_avg([guest(1024, None, 0, 0), guest(1024, 300, 0, 0), guest(1024, 100, 0, 0)], "mem_unused") == (
        200 * KIB_MIB
    )


def test_statavg_over_a_full_history_weighs_every_sample():
    # ten samples of host free 0.10 and 0.50.  Seven low: (7 * 100000 + 3 * 500000) / 10 = 220000,
    # h = 0.22 >= 0.20: GROW, and the guest at its max has no work.  Eight low:
    # (8 * 100000 + 2 * 500000) / 10 = 180000, h = 0.18: SHRINK by the step, 2097152 * 0.95 -> 1992294
    # (floor = 1048576 + 0.18 * 2097152 = 1426063.36 is below it).
    g = {"g": [guest(2048, 1024, 512, 2048)]}
    assert policy(host(*[0.5] * 3, *[0.1] * 7), g) == {}
    assert policy(host(*[0.5] * 2, *[0.1] * 8), g) == {"g": 1992294}


def test_the_balloon_rules_variant():
    # MoM's doc/balloon.rules (e0f3d3b).  GROW keeps a fixed 20 % free: M1's guest,
    # floor = max(524288, 741376 + 0.20 * 1048576) = 951091.2 < step 1101004.8 -> 1101004 (vdsm: 1265664)
    m1 = {"g": [guest(1024, 300, 512, 2048)]}
    assert policy(host(0.50), m1, policy="balloon-rules") == {"g": 1101004}
    # no balloonEnabled switch: under pressure it shrinks (M2) even when disabled
    m2 = {"g": [guest(2048, 1024, 512, 2048)]}
    assert policy(host(0.10), m2, policy="balloon-rules", balloon_enabled=False) == {"g": 1992294}
    # no guaranteed pass: below its min, SHRINK refuses and nothing raises it (vdsm: 1048576)
    below = {"g": [guest(1000, 100, 1024, 2048)]}
    assert policy(host(0.10), below, policy="balloon-rules") == {}
    # no missing-data guard: the latest sample lacks mem_unused, StatAvg uses the earlier one (300 MiB),
    # so the guest grows as M1's does in this variant
    missing = {"g": [guest(1024, 300, 512, 2048), guest(1024, None, 512, 2048)]}
    assert policy(host(0.50), missing, policy="balloon-rules") == {"g": 1101004}


def test_settings_are_checked():
    with pytest.raises(Exception, match="policy_engine_interval"):
        MomParams(kind="mom", policy_engine_interval="0s")
    with pytest.raises(Exception, match="policy"):
        MomParams(kind="mom", policy="vdsm2")


# -- the daemon in a simulation ------------------------------------------------------------------

#: a PV guest that runs nothing (conftest's kernel: no reserves, every page free), target written
#: by the build so that libxl_set_memory_target works
PV = {
    "type": "pv",
    "memory": "1GiB",
    "kernel": ZERO_RESERVES,
    "costs": "none",
}


def manager_writes(r) -> list[tuple[float, int]]:
    t = r.targets[r.targets["cause"] == "manager"]
    return list(zip(t["set_s"], t["target_pages"], strict=True))


def test_the_first_policy_run_is_one_interval_after_start_and_grows_by_5_percent():
    # Host 4 GiB = 1048576 pages, 2 GiB free: h = 0.5.  Guest 1 GiB = 1048576 KiB, static-max 2 GiB
    # (balloon_max), guaranteed 512 MiB; all its memory free, so used = 0.  Monitors sample at 0, 5, 10;
    # the policy engine sleeps first and runs at 10 s (after that instant's samples):
    # GROW: floor = max(524288, 0 + 0.5 * 1048576) = 524288; step 1048576 * 1.05 = 1101004.8 -> 1101004 KiB
    # = 275251 pages.  The guest reaches it at once (costs none); 20 s: latest balloon_cur 1101004,
    # 1101004 * 1.05 = 1156054.2 -> 1156054 KiB = 289013 pages (KiB / 4, rounded down).
    s = make_scenario(
        domains=[{"name": "g", **PV, "static_max": "2GiB", "dynamic_min": "512MiB"}],
        host={"total": "4GiB", "free": "2GiB", "manager": {"kind": "mom"}},
        duration="25s",
    )
    r = run(s)
    assert (r.domain("g")["guest_free"] == r.domain("g")["current_pages"]).all()  # used = 0 throughout
    assert manager_writes(r) == [(10.0, kib_to_pages(1101004)), (20.0, kib_to_pages(1156054))]
    assert kib_to_pages(1156054) == 289013
    # Xen's max_pages followed each target: mem-set sets it to target + 1 MiB
    at20 = r.domain("g").query("time_s == 20 and cause == 'manager'").iloc[-1]
    assert at20["max_pages"] == kib_to_pages(1156054 + 1024)
    # the goal: the host free memory below which guests shrink, 0.20 * 1048576 = 209715.2 pages
    goal = r.events[r.events["kind"] == "goal"]
    assert list(zip(goal["time_s"], goal["domain"].astype(str), goal["pages"], strict=True)) == [
        (0.0, "(host)", 209715)
    ]


@pytest.mark.parametrize(("history", "first_shrink_s"), [(10, 90.0), (1, 60.0)])
def test_averaging_delays_the_reaction_to_a_host_free_memory_drop(history, first_shrink_s):
    # Host 4 GiB, 2 GiB free (h 0.5); the guest (1 GiB, at its max, guaranteed 256 MiB) has nothing to
    # do.  At 57 s other consumers take all but 256 MiB: h 0.0625 from the sample at 60 s on, which the
    # run at 60 s sees (the monitors sample first at a shared instant).
    # With 10 samples kept, a run at t averages samples t-45 .. t; k of them low:
    #   60 s: k=1, (9 * 0.5 + 1 * 0.0625) / 10 = 0.45625;  70 s: k=3, 0.36875;  80 s: k=5, 0.28125;
    #   90 s: k=7, (3 * 0.5 + 7 * 0.0625) / 10 = 0.19375 < 0.20: SHRINK, three runs after the first
    # that saw the drop.  With 1 sample kept, the run at 60 s already sees 0.0625.  (Were the policy to
    # run before the monitors at 60, 70, ... s, each run would see one low sample fewer: 100 s and 70 s.)
    # SHRINK: step 1048576 * 0.95 = 996147.2 -> 996147 KiB = 249036 pages (floor: used 0 + at most
    # 0.19375 * 1048576, or 256 MiB = 262144 KiB, below the step).
    s = make_scenario(
        [{"at": "57s", "host_free": "256MiB"}],
        domains=[{"name": "g", **PV, "dynamic_min": "256MiB"}],
        host={"total": "4GiB", "free": "2GiB", "manager": {"kind": "mom", "sample_history_length": history}},
        duration=f"{first_shrink_s + 5}s",
    )
    assert manager_writes(run(s)) == [(first_shrink_s, 249036)]
