"""Proxmox VE auto-ballooning: pve-manager's own test/balloontest.pl (T1-T19) ported exactly, the
edge rules of distribute worked by hand, and pvestatd's pass in a simulation.

balloontest.pl's units are decimal (MB(x) = x * 10^6 bytes, GB(x) = x * 10^9) while compute_alg1's
dead band is 10 MiB = 10485760 bytes; maxchange is passed as MB(100).  ``abtest`` is one
compute_alg1 call whose result must have exactly the expected keys and values; ``absim`` repeats
compute_alg1 on a copy of the status, applying each move (the guest's free memory moving one for
one with its balloon, floored at 0, as upstream's "fixme" stand-in does) and taking it off the
goal, until a round moves nothing, then compares the last size given to each VM that moved.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from balloonsim.managers.autoballoon import DEAD_BAND_BYTES, VmStatus, compute_alg1, distribute
from conftest import ZERO_RESERVES, GiB, MiB, make_scenario, run


def MB(x: float) -> int:
    return int(x * 1000 * 1000)


def GB(x: float) -> int:
    return int(x * 1000 * 1000 * 1000)


# -- balloontest.pl ---------------------------------------------------------------------------

STATUS1 = {
    100: VmStatus(maxmem=GB(2), shares=2000, balloon=GB(1), balloon_min=GB(1), freemem=MB(0)),
    101: VmStatus(maxmem=GB(2), shares=1000, balloon=GB(1), balloon_min=GB(1), freemem=MB(0)),
}
STATUS2 = {
    100: VmStatus(maxmem=GB(2), shares=2000, balloon=GB(2), balloon_min=GB(2), freemem=MB(0)),
    101: VmStatus(maxmem=GB(2), shares=1000, balloon=GB(1), balloon_min=GB(1), freemem=MB(0)),
}
STATUS3 = {
    100: VmStatus(maxmem=GB(2), shares=2000, balloon=GB(2), balloon_min=GB(2), freemem=MB(0)),
    101: VmStatus(maxmem=GB(2), shares=1000, balloon=GB(1) + MB(7), balloon_min=GB(1), freemem=MB(0)),
    102: VmStatus(maxmem=GB(2), shares=1000, balloon=GB(1), balloon_min=GB(1), freemem=MB(512)),
}


def abtest(status, goal):
    return compute_alg1(status, goal, MB(100))


def absim(status, goal):
    """The sizes last given to each VM that moved, and the status at the fixed point."""
    status = dict(status)  # a copy: VmStatus is frozen, each move replaces one
    moved = {}
    while True:
        res = compute_alg1(status, goal, MB(100))
        changes = abschanges = 0
        for vmid, value in res.items():
            d = status[vmid]
            diff = value - d.balloon
            if diff:
                status[vmid] = replace(d, balloon=value, freemem=max(0, d.freemem + diff))
                moved[vmid] = value
                changes += diff
                abschanges += abs(diff)
        goal -= changes
        if not abschanges:
            return moved, status


CASES = [
    ("T1", abtest, STATUS1, 0, {}),
    ("T2", abtest, STATUS1, MB(90), {100: MB(1060), 101: MB(1030)}),
    ("T3", abtest, STATUS1, MB(150), {100: MB(1100), 101: MB(1050)}),
    ("T4", abtest, STATUS1, MB(270), {100: MB(1100), 101: MB(1090)}),
    ("T5", absim, STATUS1, MB(180), {100: MB(1120), 101: MB(1060)}),
    ("T6", absim, STATUS1, MB(270), {100: MB(1180), 101: MB(1090)}),
    ("T7", absim, STATUS1, MB(600), {100: MB(1300), 101: MB(1300)}),
    ("T8", absim, STATUS1, MB(900), {100: MB(1600), 101: MB(1300)}),
    ("T9", abtest, STATUS2, 0, {}),
    ("T10", abtest, STATUS2, MB(18), {101: MB(1018)}),
    ("T11", abtest, STATUS2, MB(500), {101: MB(1100)}),
    ("T12", abtest, STATUS3, 0, {}),
    ("T13", abtest, STATUS3, MB(11), {101: MB(1018)}),
    ("T14", abtest, STATUS3, MB(80), {101: MB(1087)}),
    ("T15", abtest, STATUS3, MB(200), {101: MB(1107)}),
    ("T16", absim, STATUS3, MB(593), {101: MB(1300), 102: MB(1300)}),
]


@pytest.mark.parametrize(("harness", "status", "goal", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_balloontest(harness, status, goal, expected):
    got = harness(status, goal)
    sizes = got[0] if harness is absim else got
    assert sizes == expected  # exactly these VMs, exactly these sizes


def t16_status():
    return absim(STATUS3, MB(593))[1]


@pytest.mark.parametrize(
    ("goal", "expected"),
    [
        (-MB(200), {101: MB(1200), 102: MB(1200)}),
        (-MB(400), {101: MB(1200), 102: GB(1)}),
        (-MB(593), {101: MB(1007), 102: GB(1)}),
    ],
    ids=["T17", "T18", "T19"],
)
def test_balloontest_shrinking_t16s_result(goal, expected):
    status = t16_status()
    assert absim(status, goal)[0] == expected
    assert status == t16_status()  # each absim works on its own copy


def test_t16_ends_with_both_small_guests_grown_and_the_full_one_untouched():
    # 593 MB handed out: 101 from 1007 MB and 102 from 1000 MB to 1300 MB each (293 + 300 = 593)
    status = t16_status()
    assert [status[v].balloon for v in (100, 101, 102)] == [GB(2), MB(1300), MB(1300)]
    # freemem moved one for one: 101 from 0 by +293 MB, 102 from 512 MB by +300 MB
    assert [status[v].freemem for v in (100, 101, 102)] == [0, MB(293), MB(812)]


# -- compute_alg1's and distribute's rules, worked by hand --------------------------------------


def vm(balloon, balloon_min=1000, maxmem=10**6, shares=1000, freemem=0):
    return VmStatus(balloon=balloon, balloon_min=balloon_min, maxmem=maxmem, shares=shares, freemem=freemem)


def test_the_dead_band_is_10_mib_either_way_exclusive():
    status = {1: vm(GB(1), balloon_min=GB(1), maxmem=GB(2))}
    assert DEAD_BAND_BYTES == 10485760
    assert compute_alg1(status, 10485760, MB(100)) == {}
    assert compute_alg1(status, -10485760, MB(100)) == {}
    # one byte more: the only (pressured) VM takes it, desired = 1 GB + int(10485761 / 1000 * 1000)
    assert compute_alg1(status, 10485761, MB(100)) == {1: GB(1) + 10485761}


def test_vms_without_driver_floor_or_shares_or_in_migration_are_left_alone():
    pressured = dict(balloon=GB(1), balloon_min=GB(1), maxmem=GB(2), freemem=0)
    status = {
        "no driver": VmStatus(**{**pressured, "balloon": 0}),
        "no floor": VmStatus(**{**pressured, "balloon_min": 0}),
        "migrating": VmStatus(**pressured, lock="migrate"),
        "no shares": VmStatus(**pressured, shares=0),
        "backup": VmStatus(**pressured, lock="backup"),  # only a migration lock excludes
        "default shares": VmStatus(**pressured, shares=None),
    }
    # the two eligible VMs share 100 MB by 1000 shares each: 1 GB + int(100 MB / 2000 * 1000)
    assert compute_alg1(status, MB(100), MB(100)) == {"backup": MB(1050), "default shares": MB(1050)}


def test_free_memory_of_exactly_a_quarter_of_the_floor_is_pressure():
    # 101 has freemem = 0.25 * balloon_min: not above it, so pressured and served first;
    # 102 has one byte more: comfortable.  10 MB + the dead band: all of it to 101.
    goal = DEAD_BAND_BYTES + MB(10)
    status = {
        101: vm(GB(1), balloon_min=GB(1), maxmem=GB(2), freemem=GB(0.25)),
        102: vm(GB(1), balloon_min=GB(1), maxmem=GB(2), freemem=GB(0.25) + 1),
    }
    assert compute_alg1(status, goal, MB(100)) == {101: GB(1) + goal}


def test_a_grow_request_no_pressured_vm_takes_goes_to_all_and_may_shrink_one():
    # 100 is pressured (freemem 0) but at its maxmem: desired = 1 GB + int(1.02 GB / 1000 * 1000)
    # clamps to 2 GB, its size, so it is done and the first call hands back all 20 MB.  The second
    # call shares 1 GB + 0 + 20 MB between 100 and the comfortable 102 (1000 shares each): desired
    # = 1 GB + 510 MB for both, so 100 shrinks by maxchange to 1.9 GB while 102 grows by it to 1.1 GB.
    status = {
        100: vm(GB(2), balloon_min=GB(1), maxmem=GB(2), freemem=0),
        102: vm(GB(1), balloon_min=GB(1), maxmem=GB(2), freemem=MB(512)),
    }
    assert compute_alg1(status, MB(20), MB(100)) == {100: MB(1900), 102: MB(1100)}


def test_distribute_over_no_vms_returns_the_amount():
    res = {}
    assert distribute({}, res, [], MB(50), MB(100)) == MB(50)
    assert res == {}


def test_distribute_truncates_each_share_and_keeps_the_rest():
    # 100 bytes over 2000 + 1000 shares: int(100 / 3000 * 2000) = int(66.67) = 66 and
    # int(33.33) = 33; 99 handed out, 1 left.  The second pass finds the same sizes: no progress.
    status = {"a": vm(1000, shares=2000), "b": vm(1000, shares=1000)}
    res = {}
    assert distribute(status, res, ["a", "b"], 100, 10**6) == 1
    assert res == {"a": 1066, "b": 1033}


def test_a_grow_request_shrinks_a_vm_above_its_share():
    # a holds 500 above its floor, b none; +100 over 1000 + 3000 shares: alloc_new = 500 + 100,
    # desired(a) = 1000 + int(600 / 4000 * 1000) = 1150 < 1500, so a shrinks, by at most maxchange
    # = 100, to 1400; desired(b) = 1000 + 450, b grows to 1000 + 100 = 1100.  The moves cancel:
    # nothing of the 100 was handed out, and the second pass changes nothing.
    status = {"a": vm(1500, shares=1000, maxmem=2000), "b": vm(1000, shares=3000, maxmem=2000)}
    res = {}
    assert distribute(status, res, ["a", "b"], 100, 100) == 100
    assert res == {"a": 1400, "b": 1100}


def test_a_vm_done_in_a_later_pass_keeps_the_move_of_an_earlier_one():
    # A shrink of 330000 over x (at its floor), a (300000 above it) and b (900000 above it), 1000
    # shares each, no step limit.  Pass 1: alloc_new = 1200000 - 330000 = 870000, each desired
    # = 1000 + 290000; x is below it (done: a shrink request never grows), a shrinks to 291000 and
    # b to 291000: changes = -10000 - 610000, rest = -330000 + 620000 = 290000.
    # Pass 2 (a, b): alloc_new = 290000 * 2 + 290000 = 870000 over 2000 shares, desired 436000,
    # above a's size before the call: a is done, keeping 291000; b goes to 436000 (+145000), rest
    # 145000.  Pass 3 (b): desired = 1000 + 290000 + 145000 + 145000 = 581000: +145000, rest 0.
    status = {"x": vm(1000), "a": vm(301000), "b": vm(901000)}
    res = {}
    assert distribute(status, res, ["x", "a", "b"], -330000, 10**9) == 0
    assert res == {"a": 291000, "b": 581000}


# -- pvestatd's pass over a simulated Xen host -------------------------------------------------

S = 1_000_000_000


def guest(name, memory, **kw):
    """A PV guest (no video RAM, so Xen's tot_pages is the target) whose ballooning costs no time."""
    return {"name": name, "type": "pv", "memory": memory, "costs": "none", "kernel": ZERO_RESERVES, **kw}


def manager_writes(result):
    tl = result.timeline
    writes = tl[tl["cause"] == "manager"]
    return list(zip(writes["time_s"], writes["domain"].astype(str), writes["target_pages"], strict=True))


def test_the_first_pass_is_one_update_time_after_start_and_shares_the_surplus_by_shares():
    # A 10 GiB host with 3 GiB free: memused = 7 GiB, goal = 8 GiB - 7 GiB = 1 GiB (bytes,
    # exactly: 10 GiB * 80 / 100 is a whole number).  Two idle 1 GiB guests, floor 1 GiB, maxmem
    # (dynamic-max = static-max) 2 GiB, shares 2000 and 1000; all their memory free: comfortable,
    # so no guest is pressured and the goal goes to both.  desired(a) = 1 GiB + int(2^30 / 3000
    # * 2000) = 1 GiB + 715827882, desired(b) = 1 GiB + 357913941 bytes.
    # pvestatd skips cycle 0 at t=0; its first pass is at 10 s and moves each guest maxchange =
    # 100 MiB: 1124 MiB = 287744 pages.  The surplus stays 1 GiB (the host's free memory shrinks
    # as the guests grow), so the desired sizes stay and each pass steps 100 MiB towards them:
    # b reaches int(1431655765 / 1024) KiB = 1398101 KiB = 349525 pages at 40 s; a reaches
    # 1789569706 bytes = 1747626 KiB = 436906 pages at 70 s.  b's size in bytes, 349525 * 4096 =
    # 1431654400, is not the 1431655765 compute_alg1 wants, so pvestatd sends it again at 50 s,
    # 60 s and 70 s.  After that the goal is 2^30 - (174762 + 87381) * 4096 = 4096 bytes: within
    # the dead band, nothing more is sent.
    s = make_scenario(
        domains=[guest("a", "1GiB", static_max="2GiB", shares=2000), guest("b", "1GiB", static_max="2GiB")],
        host={"total": "10GiB", "free": "3GiB", "manager": {"kind": "autoballoon"}},
        duration="100s",
    )
    r = run(s)
    step = [262144 + 25600 * k for k in range(1, 7)]  # 100 MiB = 25600 pages a pass
    a = [(10.0 * k, "a", pages) for k, pages in enumerate(step, 1)] + [(70.0, "a", 436906)]
    b = [(10.0 * k, "b", pages) for k, pages in enumerate(step[:3], 1)] + [(t, "b", 349525) for t in (40.0, 50, 60, 70)]
    assert manager_writes(r) == sorted(a + b)
    assert list(r.summary["final_current_pages"]) == [436906, 349525]
    # the goal: 20 % of 10 GiB free = 2 GiB, reported at the first pass and never changed
    goals = r.events[r.events["kind"] == "goal"]
    assert list(zip(goals["time_s"], goals["pages"], strict=True)) == [(10.0, 2 * GiB)]


def test_a_host_short_of_memory_shrinks_the_comfortable_guest_to_its_floor_first():
    # A 10 GiB host with two 2 GiB guests, floor 1 GiB: a runs a 1900 MiB task (148 MiB free, not
    # above a quarter of its floor: pressured), b is idle (comfortable).  2 GiB free: the host is
    # at its 80 % target, goal 0, nothing moves at 10 s.  At 15 s other consumers take 1 GiB:
    # goal = -1 GiB.  Only b is shrunk (it gives something, so the pressured a is never asked):
    # desired(b) = 1 GiB + int((1 GiB - 1 GiB) / 1000 * 1000) = its floor, reached 100 MiB a pass
    # from 20 s (2048 - 100 = 1948 MiB) to 110 s (1048 MiB); at 120 s the goal is -24 MiB and b
    # goes to its floor; at 130 s the goal is 0.
    s = make_scenario(
        [{"at": "15s", "host_free": "1GiB"}],
        domains=[
            guest("a", "2GiB", dynamic_min="1GiB", workloads=[{"name": "db", "constant": {"anon": "1900MiB"}}]),
            guest("b", "2GiB", dynamic_min="1GiB"),
        ],
        host={"total": "10GiB", "free": "2GiB", "manager": {"kind": "autoballoon"}},
        duration="150s",
    )
    r = run(s)
    shrink = [(20.0 + 10 * k, "b", (2048 - 100 * (k + 1)) * MiB) for k in range(10)]
    assert manager_writes(r) == [*shrink, (120.0, "b", GiB)]
    assert list(r.summary["final_current_pages"]) == [2 * GiB, GiB]


@pytest.mark.parametrize(("surplus", "grown"), [("10MiB", None), ("11MiB", 2059 * MiB)])
def test_a_surplus_within_the_dead_band_moves_nothing(surplus, grown):
    # 2 GiB + surplus free on a 10 GiB host: goal = the surplus.  10 MiB is not above the dead band;
    # 11 MiB = 11534336 bytes goes to the pressured guest a (1900 MiB used of 2 GiB): desired =
    # 1 GiB + int((1 GiB + 11 MiB) / 1000 * 1000) = 2059 MiB, below its static-max of 3 GiB.
    s = make_scenario(
        domains=[
            guest(
                "a",
                "2GiB",
                static_max="3GiB",
                dynamic_min="1GiB",
                workloads=[{"name": "db", "constant": {"anon": "1900MiB"}}],
            ),
            guest("b", "2GiB", static_max="3GiB", dynamic_min="1GiB"),
        ],
        host={"total": "10GiB", "free": f"{2048 + int(surplus[:-3])}MiB", "manager": {"kind": "autoballoon"}},
        duration="30s",
    )
    assert manager_writes(run(s)) == ([] if grown is None else [(10.0, "a", grown)])


def test_a_start_takes_only_what_is_free_and_the_passes_then_claw_back_the_overshoot():
    # A 10 GiB host at its 80 % target (2 GiB free) with two idle 2 GiB guests, floor 1 GiB.  c
    # (1 GiB, floor = its memory) starts at 5 s: Proxmox frees nothing for a start, but 1 GiB is
    # free, so it starts at once.  From 10 s the host uses 9 GiB: goal = -1 GiB, shared among the
    # comfortable a, b, c: desired = 1 GiB + int(2^30 / 3000 * 1000) = 1 GiB + 357913941 bytes;
    # c is below it (done: a shrink never grows), a and b step down 100 MiB a pass: 1948 MiB at
    # 10 s ... 1548 MiB at 50 s (goal then -224 + 200 = -24 MiB).  At 60 s the first pass steps a
    # and b to 1448 MiB (rest +176 MiB); the second, without the done c, wants 1 GiB + 1024 MiB / 2
    # = 1536 MiB for each, the shrink branch moves them there (+88 MiB each), rest 0.  At 70 s
    # the goal is 0.  d (3 GiB) asks at 75 s with 2 GiB free: start_timeout 0 fails it at once.
    s = make_scenario(
        domains=[
            guest("a", "2GiB", dynamic_min="1GiB"),
            guest("b", "2GiB", dynamic_min="1GiB"),
            guest("c", "1GiB", start="5s"),
            guest("d", "3GiB", start="75s"),
        ],
        host={"total": "10GiB", "free": "2GiB", "manager": {"kind": "autoballoon"}},
        duration="90s",
    )
    r = run(s)
    sizes = [1948, 1848, 1748, 1648, 1548, 1536]
    assert manager_writes(r) == [(10.0 * k, v, mib * MiB) for k, mib in enumerate(sizes, 1) for v in "ab"]
    ev = r.events[r.events["kind"].isin(["start_asked", "started", "start_failed"])]
    assert list(zip(ev["time_s"], ev["domain"].astype(str), ev["kind"], strict=True)) == [
        (5.0, "c", "start_asked"),
        (5.0, "c", "started"),
        (75.0, "d", "start_asked"),
        (75.0, "d", "start_failed"),
    ]
