"""Figures identify their run and stay readable at any number of guests: each names its scenario,
seed and driver settings; summary.png shows the worst guests only, with their values; no panel
is all zero; every legend entry says what it means; sizes stay bounded; the gap matrix is the
last row's target - current at each bin start."""

from pathlib import Path

import matplotlib.image
import matplotlib.text
import numpy as np
import pandas as pd
import pytest

from balloonsim.plots import (
    HEATMAP_ROWS,
    MAX_PANELS,
    SUMMARY_ROWS,
    compare_figure,
    gap_heatmap,
    gap_matrix,
    heatmap_rows,
    host_figure,
    memory_figure,
    summary_figure,
    summed_gaps,
    target_note,
    timeline_figure,
    write_figures,
)
from balloonsim.results.result import Result
from balloonsim.scenario import load_scenario
from conftest import ZERO_RESERVES, MiB, make_scenario, run

SCENARIOS = Path(__file__).parent.parent / "scenarios"
#: the guests of a 1 GiB, oracle-like domain (conftest's make_scenario), all free at boot
BASE = {
    "memory": "1GiB",
    "initial_target": "absent",
    "kernel": ZERO_RESERVES,
    "costs": "none",
}


def guest(name: str, **fields) -> dict:
    return {**BASE, "name": name, **fields}


def all_text(fig) -> str:
    return "\n".join(t.get_text() for t in fig.findobj(matplotlib.text.Text))


def pixels(png: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = png.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


# 40 guests, 30 drawn.  By hand, worst_first's order (OOM kills, unmet demand MiB·s, target not
# reached, distance from the target; ties in file order):
# - victim: its task wants 2 GiB of anonymous memory in a 1 GiB guest without swap: the OOM
#   killer kills it (it never restarts): the only guest with an OOM kill, first;
# - cache3, cache2: tasks that read 3 GiB and 2 GiB of files in 1 GiB: the cache holds what fits,
#   the rest is unmet all run long; the same cache resident, so 3 GiB leaves more unmet: cache3;
# - up30, up20, up10: give 30/20/10 MiB back at 1 s, then other consumers take all of the host's
#   free memory at 2 s, and at 3 s are asked to return to 1 GiB: populate is refused, they end
#   30/20/10 MiB short of their target, not reached (no demand: no unmet demand);
# - then the idle guests in file order, 24 of 34 to fill 30 rows; 10 left out.
ORDER_BY_HAND = ["victim", "cache3", "cache2", "up30", "up20", "up10"] + [f"idle{i:02d}" for i in range(24)]


@pytest.fixture(scope="module")
def forty():
    ups = [guest(f"up{m}") for m in (10, 30, 20)]
    specials = [
        ups[0],
        guest("cache2", workloads=[{"name": "reader", "constant": {"cache": "2GiB"}}]),
        guest("victim", workloads=[{"name": "hog", "constant": {"anon": "2GiB"}}]),
        ups[1],
        guest("cache3", workloads=[{"name": "reader", "constant": {"cache": "3GiB"}}]),
        ups[2],
    ]
    idle = [guest(f"idle{i:02d}") for i in range(34)]
    events = [{"at": "1s", "domain": f"up{m}", "target": f"{1024 - m}MiB"} for m in (10, 20, 30)]
    events.append({"at": "2s", "host_free": "0 pages"})
    events += [{"at": "3s", "domain": f"up{m}", "target": "1GiB"} for m in (10, 20, 30)]
    scenario = make_scenario(
        events, domains=idle[:17] + specials + idle[17:], host={"free": "1GiB"}, duration="20s"
    ).replace(name="figure-check")
    return run(scenario, seed=7)


@pytest.fixture(scope="module")
def quickstart():
    return run(load_scenario(SCENARIOS / "quickstart.yaml"), seed=3)


@pytest.fixture(scope="module")
def oom():
    return run(load_scenario(SCENARIOS / "oom_spike.yaml"))


def test_every_figure_names_its_scenario_seed_and_driver(forty):
    figures = [
        timeline_figure(forty),
        host_figure(forty),
        memory_figure(forty, "victim"),
        gap_heatmap(forty),
        summary_figure(forty),
    ]
    for fig in figures:
        text = all_text(fig)
        # the scenario's name and seed as given above; its driver is the schema's default
        assert "figure-check, seed 7" in text and "driver v5.12" in text and "max_retry_count 4" in text


def test_a_result_saved_without_settings_still_names_scenario_and_seed(forty):
    old = Result(**forty.tables, metadata={k: v for k, v in forty.metadata.items() if k != "settings"})
    assert "figure-check, seed 7" in all_text(host_figure(old))


def test_compare_figure_labels_each_run_by_its_settings(quickstart):
    unlimited = run(load_scenario(SCENARIOS / "quickstart.yaml").replace({"domains.stuck.balloon.max_retry_count": 0}))
    heading = compare_figure({"four": quickstart, "zero": unlimited}, "stuck")._suptitle.get_text()
    four, zero = heading.replace("\n", " ").split(" zero: ")
    # quickstart: three guests at max_retry_count 4; the copy has stuck at 0 ("unlimited")
    assert four.startswith("four: quickstart, seed 3: driver v5.12 (max_retry_count 4")
    assert zero.startswith("quickstart, seed 0: 2× driver v5.12 (max_retry_count 4")
    assert "1× driver v5.12 (max_retry_count unlimited" in zero and "unlimited" not in four


def test_summary_shows_the_worst_guests_with_their_values(forty):
    fig = summary_figure(forty)
    took, backoff, kills, avail, unmet = fig.axes
    assert [t.get_text() for t in took.get_yticklabels()] == ORDER_BY_HAND
    assert f"the {SUMMARY_ROWS} worst of 40 guests" in all_text(fig) and "10 left out" in all_text(fig)
    s = forty.summary.set_index(forty.summary["domain"].astype(str))
    row_of = {round(p.get_y() + p.get_height() / 2): i for i, p in enumerate(kills.patches)}
    for ax, column, div in [
        (backoff, "backoff_s", 1),
        (kills, "oom_kills", 1),
        (avail, "min_mem_available", MiB),
        (unmet, "unmet_demand_mib_s", 1),
    ]:
        assert len(ax.patches) == SUMMARY_ROWS
        widths = [ax.patches[row_of[rank]].get_width() for rank in range(SUMMARY_ROWS)]
        assert np.allclose(widths, s.loc[ORDER_BY_HAND, column] / div), column
        # each bar's value is written beside it, to three significant digits
        written = {round(t.xy[1]): float(t.get_text().replace(",", "")) for t in ax.texts}
        assert np.allclose([written[rank] for rank in range(SUMMARY_ROWS)], widths, rtol=5e-3), column
    assert s.loc["victim", "oom_kills"] >= 1 and (s.loc[ORDER_BY_HAND[1:], "oom_kills"] == 0).all()
    ups = s.loc[["up30", "up20", "up10"]]
    assert list(ups["final_target_pages"] - ups["final_current_pages"]) == [30 * MiB, 20 * MiB, 10 * MiB]
    assert [t.get_text() for t in took.texts].count(" not reached") == 3


def panel_is_blank(ax) -> bool:
    return not any(p.get_width() for p in ax.patches) and " not reached" not in [t.get_text() for t in ax.texts]


def test_no_panel_is_all_zero_a_note_stands_in_for_it(forty):
    # forty: the up guests back off (refused populates) and fall short, the victim is OOM-killed,
    # the cache readers' demand goes unmet: every panel has bars
    fig = summary_figure(forty)
    assert not any(panel_is_blank(ax) for ax in fig.axes)
    # idle guests only: no OOM kills, back-off or unmet demand anywhere, and all at their target
    idle = run(make_scenario(domains=[guest(f"g{i}") for i in range(5)], duration="5s"))
    fig = summary_figure(idle)
    blank = [ax for ax in fig.axes if panel_is_blank(ax)]
    assert [ax.get_xlabel() for ax in blank] == [
        "time to final target (s)",
        "in back-off (s)",
        "OOM kills",
        "unmet demand (MiB·s)",
    ]
    for ax in blank:  # the note, and no scale
        assert len(ax.texts) == 1 and ax.texts[0].get_text() and not any(t.get_visible() for t in ax.get_xticklabels())
    heading = fig._suptitle.get_text().replace("\n", " ")
    assert "a note instead of bars: time to final target (s), in back-off (s), OOM kills, unmet demand" in heading


def legend_texts(fig) -> list[str]:
    legends = [*fig.legends, *(ax.get_legend() for ax in fig.axes if ax.get_legend())]
    return [text.get_text() for legend in legends for text in legend.get_texts()]


def test_every_line_and_mark_in_a_legend_says_what_it_means(quickstart, oom):
    figures = [timeline_figure(quickstart), timeline_figure(oom), host_figure(quickstart), memory_figure(oom, "app")]
    for fig in figures:
        # 'EAGAIN: a pass fell short; retried after a back-off': the line's label, then its meaning
        entries = dict(text.split(": ", 1) for text in legend_texts(fig))
        drawn = {a.get_label() for ax in fig.axes for a in ax.get_lines() + ax.collections}
        assert {label for label in drawn if not label.startswith("_")} == set(entries)
        assert all(len(meaning) > 8 for meaning in entries.values()), entries
    labels = {text.split(": ")[0] for fig in figures for text in legend_texts(fig)}
    assert {"current", "target", "balloon_low", "total", "MemAvailable", "EAGAIN", "ECANCELED", "OOM kill"} <= labels
    assert {"kernel", "anonymous", "page cache", "swap", "unmet demand", "host free"} <= labels


def test_rows_written_at_one_instant_are_all_drawn():
    # two target writes at 1 s, before any worker pass: rows of 900 MiB then 800 MiB at 1 s
    r = run(make_scenario([{"at": "1s", "target": "900MiB"}, {"at": "1s", "target": "800MiB"}], duration="3s"))
    line = next(li for li in timeline_figure(r).axes[0].get_lines() if li.get_label() == "target")
    at_one = line.get_ydata()[line.get_xdata() == 1.0]
    assert list(at_one[:2]) == [900.0, 800.0]


@pytest.fixture(scope="module")
def thousands():
    events = [{"at": "1s", "domain": f"g{i:04d}", "target": "512MiB"} for i in range(0, 2000, 400)]
    return run(make_scenario(events, domains=[guest(f"g{i:04d}") for i in range(2000)], duration="3s"))


def test_figures_of_2000_guests_have_bounded_sizes_and_counts(thousands, tmp_path):
    fig = summary_figure(thousands)
    assert all(len(ax.patches) == SUMMARY_ROWS for ax in fig.axes)
    assert "1,970 left out" in all_text(fig)
    timeline = timeline_figure(thousands)
    assert len(timeline.axes) == MAX_PANELS + 1
    assert f"the {MAX_PANELS} worst of 2,000 guests" in all_text(timeline)
    heat = gap_heatmap(thousands)
    image = heat.axes[0].get_images()[0]
    assert image.get_array().shape[0] == 100 == HEATMAP_ROWS  # 2000 guests, 20 to a row
    assert "each row sums 20 consecutive guests of the 2,000" in all_text(heat)
    names = write_figures(thousands, tmp_path)
    assert names == ["timeline.png", "host.png", "gap_heatmap.png", "summary.png"]  # no workloads: no memory-*
    for name in names:
        width, height = pixels(tmp_path / name)
        assert width <= 1600 and height <= 3300, (name, width, height)  # at 110 dpi: 14.5 x 30 inches
    assert pixels(tmp_path / "summary.png")[1] <= 1100  # was 48,576 px with a bar per guest


def test_gap_matrix_is_the_last_rows_gap_at_each_bin_start():
    # a: gap 0 at 0 s; two rows at 1 s (-50 then -30); 0 from 3 s.  b: first row at 2 s (+100), 0 at 4 s.
    rows = [("a", 0, 100, 100), ("a", 1, 50, 100), ("a", 1, 50, 80), ("b", 2, 200, 100), ("a", 3, 50, 50)]
    rows.append(("b", 4, 200, 200))
    timeline = pd.DataFrame(
        {
            "domain": pd.Categorical([r[0] for r in rows], categories=["a", "b"]),
            "time_ns": [r[1] * 10**9 for r in rows],
            "time_s": [float(r[1]) for r in rows],
            "target_pages": [r[2] for r in rows],
            "current_pages": [r[3] for r in rows],
        }
    )
    empty = pd.DataFrame()
    result = Result(timeline, empty, empty, empty, empty)
    matrix, starts, names = gap_matrix(result, bins=4)
    # bins start at 0, 1, 2, 3 s (the run ends at 4 s); each cell: the domain's last row at or
    # before the start (the later of two same-instant rows), 0 before its first row
    assert list(starts) == [0.0, 1.0, 2.0, 3.0] and names == ["a", "b"]
    assert matrix.tolist() == [[0, -30, -30, 0], [0, 0, 100, 100]]
    # both domains in one group: the column sums
    assert summed_gaps(timeline, np.array([0, 0]), starts).tolist() == [[0, -30, 70, 100]]


def test_many_guests_share_heat_map_rows_in_scenario_order():
    names = [f"d{i:03d}" for i in range(250)]
    group, labels, rows_are = heatmap_rows(names, rows=100)
    # ceil(250 / 100) = 3 guests a row: 84 rows, the last holding d249 only
    assert len(labels) == 84 and labels[0] == "d000 – d002" and labels[-1] == "d249 – d249"
    assert list(group[:7]) == [0, 0, 0, 1, 1, 1, 2] and group[-1] == 83
    assert rows_are == "each row sums 3 consecutive guests of the 250 (in scenario order)"
    assert heatmap_rows(names[:12], rows=100)[1] == names[:12]


@pytest.fixture(scope="module")
def swapped_then_killed():
    # 1 GiB guest with 500 MiB (128000 pages) of swap; "small" holds 300 MiB (76800 pages).  At
    # 10 s "big" wants 1600 MiB: it takes the 185344 free pages, swaps 128000 of its own out and
    # takes them again, then swap is full and the OOM killer takes big (the most memory), whose
    # swap is freed with it, all in one step: rows before and after show 0 pages in swap.
    tasks = [
        {"name": "small", "constant": {"anon": "300MiB"}},
        {"name": "big", "steps": [{"at": "10s", "anon": "1600MiB"}]},
    ]
    return run(make_scenario(domain={"kernel": {"swap": "500MiB"}, "workloads": tasks}, duration="20s"))


def test_the_swap_line_shows_the_swap_an_oom_kill_freed(swapped_then_killed):
    r = swapped_then_killed
    assert r.domain("g")["swap_pages"].max() == 0  # no row holds it
    seen = r.events[r.events["kind"] == "oom_invoked"]
    assert list(zip(seen["time_s"], seen["pages"], strict=True)) == [(10.0, 128000)]
    fig = memory_figure(r, "g")
    swap = next(line for ax in fig.axes for line in ax.get_lines() if line.get_label() == "swap")
    assert max(swap.get_ydata()) == 500  # MiB
    assert r.summary.iloc[0]["max_swap_pages"] == 128000


def test_a_refused_or_clamped_target_says_so_in_the_panel_title():
    refused = run(make_scenario([{"at": "1s", "mem_set": "2GiB"}], domain={"initial_target": "1GiB"}, duration="5s"))
    assert target_note(refused, "g") == "target not reached: the toolstack refused the last one"
    clamped = run(make_scenario([{"at": "1s", "target": "1536MiB"}], duration="5s"))
    assert target_note(clamped, "g") == "target not reached: the driver clamped it to 1024 MiB"
