"""scenarios/quickstart.yaml shows what it says: one guest shrinks, one cannot grow
fully, one backs off and cancels, with ballooning taking its calibrated time."""

from pathlib import Path

import pytest

from balloonsim.scenario import load_scenario
from conftest import MiB, run

QUICKSTART = Path(__file__).parent.parent / "scenarios" / "quickstart.yaml"
#: one full balloon-out batch of an HVM guest at the runtime costs (kernel/cost_profiles.py):
#: 512 x (alloc 200 + scrub 1,000 + Xen's release 8,000) + one hypercall 10,000 = 4,720,400 ns
BATCH_OUT_NS = 512 * (200 + 1_000 + 8_000) + 10_000


@pytest.fixture(scope="module")
def result():
    return run(load_scenario(QUICKSTART))


def test_shrinker_gives_1gib_back_in_512_costed_batches(result):
    s = result.summary.set_index("domain").loc["shrinker"]
    assert s["target_reached"] and s["final_current_pages"] == 1024 * MiB
    assert s["final_target_reached_s"] == (5_000_000_000 + 512 * BATCH_OUT_NS) / 1e9
    # the boot pass (credit 0: one turn), then 512 batches and the turn that finds credit 0
    assert s["worker_passes"] == 2 and s["loop_iterations"] == 1 + 512 + 1


def test_a_long_pass_gets_progress_rows(result):
    tl = result.domain("shrinker")
    progress = tl[tl["cause"] == "progress"]
    # rows at most once a second while the 2.42 s pass runs (5 s to 7.42 s): after the first turn
    # that ends 1 s or more after the last row, 1 s / 4,720,400 ns = 211.9, so every 212 turns
    assert list(progress["time_ns"]) == [5_000_000_000 + 212 * BATCH_OUT_NS, 5_000_000_000 + 424 * BATCH_OUT_NS]
    # a turn's pages move at its start: the row after 212 turns' time has the 213th batch's out too
    assert list(progress["current_pages"]) == [2048 * MiB - 213 * 512, 2048 * MiB - 425 * 512]


def test_grower_gets_what_the_host_can_give_and_gives_up(result):
    s = result.summary.set_index("domain").loc["grower"]
    assert not s["target_reached"] and s["final_state"] == "ECANCELED"
    assert 1024 * MiB < s["final_current_pages"] < 2048 * MiB
    ev = result.events
    assert (ev[ev["domain"] == "grower"]["kind"] == "populate_refused").any()


def test_stuck_backs_off_2_4_8_seconds_then_cancels(result):
    tl = result.domain("stuck")
    work = tl[(tl["cause"] == "work") & (tl["time_s"] >= 15)]
    # update_schedule(): delays double from 1 s; the 4th retry fails past max_retry_count 4
    assert list(zip(work["state"].astype(str), work["schedule_delay"], strict=True)) == [
        ("EAGAIN", 2),
        ("EAGAIN", 4),
        ("EAGAIN", 8),
        ("ECANCELED", 1),
    ]
    # each retry starts at the jiffy its row scheduled and moves one batch (MemAvailable is
    # below totalreserve_pages: the kernel still balloons min(MemAvailable, 512), then EAGAIN)
    expiry_ns = work["work_expiry"].to_numpy()[:-1] * 4_000_000  # HZ 250
    assert list(work["time_ns"].to_numpy()[1:] - expiry_ns) == [BATCH_OUT_NS] * 3
    assert list(-work["current_pages"].diff().dropna()) == [512] * 3
    s = result.summary.set_index("domain").loc["stuck"]
    assert s["final_current_pages"] > s["final_target_pages"]
    # A 3 GiB HVM guest with THP (the default) has DMA (3977 managed) and DMA32 (782433 present,
    # 766784 managed): khugepaged's 2 x 11 x 512 = 11264 pages.  Mins 11264 * 3977 // 770761 = 58
    # and 11264 * 766784 // 770761 = 11205, deltas 14 and 2801, highs 86 and 16807; DMA's reserve
    # 766784 // 256 = 2995: totalreserve min(3977, 86 + 2995) + 16807 = 19888.  At 15 s
    # MemAvailable is 512 MiB free - 19888 = 111184; batch 180 finds 111184 - 179 * 512 = 19536
    # under totalreserve, balloons and ends EAGAIN; the three retries take one batch each.
    assert s["final_current_pages"] == 3 * 1024 * MiB - (180 + 3) * 512
