"""plots.py on small hand-built Results, whose every plotted value is worked out by hand: unit
boundaries, which row an event mark sits on, what each line, band, bar and colour scale holds,
where titles and legends go, and the notes that replace empty panels."""

from pathlib import Path

import matplotlib
import matplotlib.collections
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from balloonsim import plots
from balloonsim.results.result import Result
from conftest import GiB, MiB

#: the timeline columns plots.py reads, besides domain and time; 0 unless a row says otherwise
PAGE_COLUMNS = (
    "current_pages",
    "target_pages",
    "total_pages",
    "balloon_low",
    "balloon_high",
    "mem_available",
    "demand_pages",
    "kernel_pages",
    "anon_pages",
    "slab_reclaimable",
    "page_cache",
    "guest_free",
    "unmet_demand",
    "swap_pages",
)
ORDER = "crashed, most OOM kills, most unmet demand (MiB·s), target not reached, farthest from target"


def timeline(names: list[str], rows: list[tuple[str, float, dict]]) -> pd.DataFrame:
    """rows: (domain, time in s, {column: pages})."""
    return pd.DataFrame(
        {
            "domain": pd.Categorical([r[0] for r in rows], categories=names),
            "time_ns": np.array([round(r[1] * 1e9) for r in rows], dtype=np.int64),
            "time_s": np.array([float(r[1]) for r in rows]),
            **{c: np.array([r[2].get(c, 0) for r in rows], dtype=np.int64) for c in PAGE_COLUMNS},
        }
    )


def events(names: list[str], rows: list[tuple[str, float, str, int]]) -> pd.DataFrame:
    """rows: (domain, time in s, kind, pages)."""
    return pd.DataFrame(
        {
            "time_ns": np.array([round(r[1] * 1e9) for r in rows], dtype=np.int64),
            "time_s": np.array([float(r[1]) for r in rows]),
            "domain": pd.Categorical([r[0] for r in rows], categories=[*names, "(host)"]),
            "kind": pd.Categorical([r[2] for r in rows]),
            "pages": np.array([r[3] for r in rows], dtype=np.int64),
        }
    )


def host(rows: list[tuple[float, int, int]]) -> pd.DataFrame:
    """rows: (time in s, host_free, domain_pages)."""
    return pd.DataFrame(
        {
            "time_s": np.array([float(r[0]) for r in rows]),
            "host_free": np.array([r[1] for r in rows], dtype=np.int64),
            "domain_pages": np.array([r[2] for r in rows], dtype=np.int64),
        }
    )


def summary(names: list[str], **columns) -> pd.DataFrame:
    """One row per domain: reached its target at once, nothing else happened, unless told."""
    n = len(names)
    base = {
        "target_reached": [True] * n,
        "time_to_final_target_s": [0.0] * n,
        "final_target_reached_s": [0.0] * n,
        "last_target_refused": [False] * n,
        "last_target_clamped": [False] * n,
        "final_target_pages": [GiB] * n,
        "final_current_pages": [GiB] * n,
        "final_state": ["OK"] * n,
        "oom_kills": [0] * n,
        "unmet_demand_mib_s": [0.0] * n,
        "backoff_s": [0.0] * n,
        "min_mem_available": [0] * n,
    }
    return pd.DataFrame({"domain": pd.Categorical(names, categories=names), **base, **columns})


def result(names, rows, event_rows=(), host_rows=((0.0, 0, 0),), metadata=None, **summary_columns) -> Result:
    return Result(
        timeline(names, rows),
        events(names, list(event_rows)),
        host(list(host_rows)),
        pd.DataFrame(),
        summary(names, **summary_columns),
        {"scenario": "hand", "seed": 5} if metadata is None else metadata,
    )


@pytest.fixture(autouse=True)
def small_default_font():
    """A default font size unlike any plots.py sets, as a notebook may have: the sizes it sets hold."""
    with matplotlib.rc_context({"font.size": 6}):
        yield


def lines_of(ax) -> dict[str, Line2D]:
    return {line.get_label(): line for line in ax.get_lines()}


def left_title(ax):
    return ax._left_title


def laid_out(fig: Figure) -> Figure:
    """The figure laid out, so that its axes have their final places."""
    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return fig


# -- units -------------------------------------------------------------------------------------


def test_sizes_switch_to_gib_at_4_gib_exactly():
    # 4 GiB = 4 << 30 bytes = 1048576 pages of 4 KiB; a GiB is 262144 pages, a MiB 256
    assert plots.size_unit(1048576) == (262144.0, "GiB")
    assert plots.size_unit(1048575) == (256.0, "MiB")


def test_times_switch_to_minutes_at_10_min_and_hours_at_2_h():
    assert plots.time_unit(7200) == (3600.0, "time (h)")
    assert plots.time_unit(7199.5) == (60.0, "time (min)")
    assert plots.time_unit(600) == (60.0, "time (min)")
    assert plots.time_unit(599.5) == (1.0, "time (s)")


def test_a_peak_is_at_least_1_so_an_empty_or_zero_column_has_a_scale():
    assert plots._peak(pd.Series([], dtype=float)) == 1.0
    assert plots._peak(pd.Series([0.25, 0.0])) == 1.0
    assert plots._peak(pd.DataFrame({"a": [3, 2], "b": [7, 1]})) == 7.0


def test_a_runs_end_is_its_last_row_and_0_without_rows():
    r = result(["a"], [("a", 0, {}), ("a", 2.5, {}), ("a", 1, {})])
    assert plots._end_s(r) == 2.5
    assert plots._end_s(result(["a"], [])) == 0.0


# -- picking rows ------------------------------------------------------------------------------


def test_rows_by_domain_gives_each_named_domain_its_rows_and_an_unknown_name_none():
    tl = timeline(["a", "b", "c"], [("a", 0, {}), ("b", 0, {}), ("a", 1, {}), ("c", 2, {})])
    picked = plots.rows_by_domain(tl, ["c", "nowhere", "a"])
    assert list(picked) == ["c", "nowhere", "a"]
    # "a" has category code 0: it is picked like the others
    assert list(picked["a"]["time_s"]) == [0.0, 1.0] and list(picked["c"]["time_s"]) == [2.0]
    assert len(picked["nowhere"]) == 0 and list(picked["nowhere"].columns) == list(tl.columns)


# -- headings and legends ----------------------------------------------------------------------


def test_the_heading_wraps_at_13_characters_an_inch_and_drops_empty_lines():
    fig = Figure(figsize=(10, 3))  # 130 characters to a line
    fits, wraps = "x" * 130, "y" * 129 + " z"
    plots._heading(fig, fits, "", wraps)
    assert fig._suptitle.get_text() == "\n".join([fits, "y" * 129, "z"])
    # the 9 pt the width assumes, from the figure's left edge
    assert fig._suptitle.get_fontsize() == 9 and fig._suptitle.get_ha() == "left"
    assert fig._suptitle.get_position()[0] == 0.01


def test_a_long_heading_stays_inside_the_figure():
    # a run label as wide as they come: capitals, digits, two setting groups and a manager
    label = (
        "quickstart, seed 0: 2× driver v5.12 (max_retry_count unlimited, max_schedule_delay 32 s), costs "
        "pod-boot, xen_page_out 50us, hypercall 20us, hz 1000, type HVM; 5× driver v5.12 (max_retry_count 4, "
        "max_schedule_delay 32 s), costs runtime, hz 250, type PVH; manager squeezed"
    )
    fig = Figure(figsize=(10, 3), layout="constrained")
    plots._heading(fig, label)
    laid_out(fig)
    assert fig._suptitle.get_window_extent().x1 <= fig.bbox.x1


def test_a_label_without_a_meaning_is_its_own_legend_text():
    known, unknown = Line2D([], [], label="current"), Line2D([], [], label="run A: current")
    assert plots._explain([known, unknown]) == [plots.MEANINGS["current"], "run A: current"]


def test_an_axes_legend_is_right_of_it_at_its_top_without_a_frame():
    fig = Figure(figsize=(10, 3))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="current")
    plots._legend(ax)
    legend = ax.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == [plots.MEANINGS["current"]]
    assert legend.legend_handles[0].get_label() == "current"
    # loc 2 is "upper left", anchored just right of the axes' top right corner
    assert legend._loc == 2
    assert legend.get_bbox_to_anchor().transformed(ax.transAxes.inverted()).bounds == pytest.approx((1.01, 1, 0, 0))
    assert not legend.get_frame_on() and legend.get_texts()[0].get_fontsize() == 8


def test_the_figure_legend_lists_each_label_once_below_the_panels():
    fig = Figure(figsize=(10, 6), layout="constrained")
    first, second = fig.subplots(2, 1)
    kept = first.plot([0, 1], [0, 1], label="current")[0]
    first.plot([0, 1], [1, 1], label="target")
    second.plot([0, 1], [2, 2], label="current")
    second.plot([0, 1], [3, 3], label="host free")
    plots._figure_legend(fig, [first, second])
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        plots.MEANINGS["current"],
        plots.MEANINGS["target"],
        plots.MEANINGS["host free"],
    ]
    assert legend.legend_handles[0].get_color() == kept.get_color()
    assert legend._outside_loc == "lower" and legend._loc == 8  # lower center, outside the panels
    assert legend._ncols == 2 and not legend.get_frame_on() and legend.get_texts()[0].get_fontsize() == 8


# -- one domain's panel ------------------------------------------------------------------------

# One domain "a" over 2 minutes, drawn in minutes (t_div 60) and MiB (its peak, 1024 MiB, is
# under 4 GiB).  Two rows share 60 s (a target write, then a worker pass).
A_ROWS = [
    ("a", 10, {"current_pages": 1024 * MiB, "target_pages": 1024 * MiB, "total_pages": 1024 * MiB}),
    ("a", 60, {"current_pages": 768 * MiB, "target_pages": 512 * MiB, "total_pages": 1024 * MiB}),
    ("a", 60, {"current_pages": 640 * MiB, "target_pages": 512 * MiB, "balloon_low": 384 * MiB}),
    ("a", 120, {"current_pages": 512 * MiB, "target_pages": 512 * MiB, "mem_available": 300 * MiB}),
]
# each event's mark sits on current_pages of the last row at or before it, the first row if none
A_EVENTS = [
    ("a", 5, "WAIT", 0),  # before the first row: its 1024 MiB
    ("a", 30, "EAGAIN", 0),  # the row at 10 s: 1024 MiB
    ("a", 60, "ECANCELED", 0),  # the later of the two rows at 60 s: 640 MiB
    ("a", 120, "oom_kill", 0),  # 512 MiB
    ("a", 130, "hotplug_add", 0),  # 512 MiB
    ("a", 140, "domain_destroyed", 0),  # 512 MiB (the row at 120 s is the last)
    ("a", 90, "populate_refused", 0),  # not marked
]


def domain_axes(rows, event_rows):
    fig = Figure(figsize=(10, 3))
    ax = fig.subplots()
    r = result(["a"], rows, event_rows)
    plots.draw_domain(ax, r.timeline, r.events, "a: the title", 60.0)
    return ax


def test_a_domain_panel_draws_each_column_in_its_own_style():
    ax = domain_axes(A_ROWS, [])
    lines = lines_of(ax)
    expected = {  # label: (column, colour, line style)
        "current": ("current_pages", "tab:blue", "-"),
        "target": ("target_pages", "black", "--"),
        "total": ("total_pages", "tab:gray", ":"),
        "balloon_low": ("balloon_low", "tab:green", "-"),
        "MemAvailable": ("mem_available", "tab:pink", "-"),
    }
    assert list(lines) == list(expected)  # no balloon_high: it is 0 throughout
    for label, (column, color, style) in expected.items():
        line = lines[label]
        assert list(line.get_xdata()) == [10 / 60, 1.0, 1.0, 2.0]
        assert list(line.get_ydata()) == [row[2].get(column, 0) / MiB for row in A_ROWS], label
        assert (line.get_color(), line.get_linestyle(), line.get_linewidth()) == (color, style, 1.3)
        assert line.get_drawstyle() == "steps-post"
    assert left_title(ax).get_text() == "a: the title" and left_title(ax).get_fontsize() == 10
    assert ax.get_ylabel() == "MiB"


def test_highmem_in_the_balloon_gets_its_line():
    rows = [*A_ROWS[:3], ("a", 120, {"current_pages": 512 * MiB, "balloon_high": 64 * MiB})]
    line = lines_of(domain_axes(rows, []))["balloon_high"]
    assert list(line.get_ydata()) == [0, 0, 0, 64.0]
    assert (line.get_color(), line.get_linestyle(), line.get_linewidth()) == ("tab:olive", "-", 1.3)


def test_events_are_marked_on_the_current_line_at_the_row_they_follow():
    marks = lines_of(domain_axes(A_ROWS, A_EVENTS))
    expected = {  # legend label: (time in minutes, MiB)
        "WAIT": (5 / 60, 1024.0),
        "EAGAIN": (30 / 60, 1024.0),
        "ECANCELED": (1.0, 640.0),
        "OOM kill": (2.0, 512.0),
        "hot-added": (130 / 60, 512.0),
        "destroyed": (140 / 60, 512.0),
    }
    for kind, (marker, color, label) in plots.EVENT_MARKERS.items():
        mark = marks[label]
        assert (list(mark.get_xdata()), list(mark.get_ydata())) == ([expected[label][0]], [expected[label][1]]), kind
        assert (mark.get_marker(), mark.get_color(), mark.get_linestyle(), mark.get_markersize()) == (
            marker,
            color,
            "None",
            8,
        )
    assert "populate_refused" not in marks


# -- target notes ------------------------------------------------------------------------------


def note(**columns) -> str:
    """The note on "b", whose summary row has these columns; "a", before it, reached its target at 1 s."""
    a = {"target_reached": True, "final_target_reached_s": 1.0, "time_to_final_target_s": 1.0}
    r = result(["a", "b"], [], **{k: [a.get(k, v), v] for k, v in columns.items()})
    return plots.target_note(r, "b")


def test_target_notes_say_when_it_was_reached_or_how_it_fell_short():
    assert note(final_target_reached_s=26.8, time_to_final_target_s=21.8) == (
        "reached its target at 26.8 s (21.8 s after it was set)"
    )
    assert note(final_target_reached_s=3.5, time_to_final_target_s=0.5) == (
        "reached its target at 3.5 s (0.5 s after it was set)"
    )
    # reached the moment it was set: no time after it
    assert note(final_target_reached_s=3.0, time_to_final_target_s=0.0) == "reached its target at 3 s"
    assert (
        note(target_reached=False, last_target_refused=True) == "target not reached: the toolstack refused the last one"
    )
    assert note(target_reached=False, last_target_clamped=True, final_target_pages=300 * MiB) == (
        "target not reached: the driver clamped it to 300 MiB"
    )
    # 100 MiB below its 1 GiB target, or 50 MiB above it
    short = {"target_reached": False, "final_state": "EAGAIN", "final_current_pages": 924 * MiB}
    assert note(**short) == "target not reached (ends EAGAIN, 100 MiB short)"
    above = {"target_reached": False, "final_state": "ECANCELED", "final_current_pages": 1074 * MiB}
    assert note(**above) == "target not reached (ends ECANCELED, 50 MiB above it)"
    assert plots.target_note(result(["a"], []), "nowhere") == ""


# -- the host ----------------------------------------------------------------------------------

# free memory 100, 200, 300, 250 MiB at 0..3 s; the domains hold 500 MiB then 400 MiB
HOST_ROWS = [(0, 100 * MiB, 500 * MiB), (1, 200 * MiB, 500 * MiB), (2, 300 * MiB, 400 * MiB), (3, 250 * MiB, 400 * MiB)]


def host_axes(needed=None, t_div=None, end_s=3.0, domain_pages=True, host_rows=HOST_ROWS):
    fig = Figure(figsize=(10, 3))
    ax = fig.subplots()
    r = result(["a"], [("a", end_s, {})], host_rows=host_rows, metadata={"host_needed_pages": needed})
    plots.draw_host(ax, r, t_div, domain_pages=domain_pages)
    return ax


def test_the_host_panel_shows_when_free_memory_first_reached_what_the_host_needs():
    ax = host_axes(needed=300 * MiB, t_div=1.0)
    lines = lines_of(ax)
    free, held, needed = lines["host free"], lines["Σ domain pages"], lines["needed"]
    assert list(free.get_xdata()) == [0, 1, 2, 3] and list(free.get_ydata()) == [100, 200, 300, 250]
    assert list(held.get_ydata()) == [500, 500, 400, 400]
    assert free.get_drawstyle() == held.get_drawstyle() == "steps-post"
    assert list(needed.get_ydata()) == [300, 300]
    reached = lines["got there"]
    assert list(reached.get_xdata()) == [2, 2]  # 300 MiB free first at 2 s
    assert left_title(ax).get_text() == "host free memory: needs 300 MiB, reached at 2 s"
    assert left_title(ax).get_fontsize() == 10 and ax.get_ylabel() == "MiB"
    assert (free.get_color(), held.get_color()) == ("tab:gray", "tab:blue")
    assert (needed.get_color(), needed.get_linestyle(), needed.get_linewidth()) == ("tab:red", "--", 1)
    assert (reached.get_color(), reached.get_alpha(), reached.get_linewidth()) == ("tab:red", 0.4, 1)


def test_the_time_the_host_got_there_is_marked_in_the_panels_unit():
    ax = host_axes(needed=300 * MiB, t_div=60.0)  # reached at 2 s: 1/30 min
    assert list(lines_of(ax)["got there"].get_xdata()) == [1 / 30, 1 / 30]


def test_the_host_panel_says_when_free_memory_never_got_there():
    ax = host_axes(needed=400 * MiB, t_div=1.0)
    assert left_title(ax).get_text() == "host free memory: needs 400 MiB, not reached"
    assert "got there" not in lines_of(ax)


def test_without_a_need_the_host_panel_has_free_memory_only():
    ax = host_axes(needed=None, t_div=1.0, domain_pages=False)
    assert list(lines_of(ax)) == ["host free"] and left_title(ax).get_text() == "host free memory"


def test_the_host_panels_unit_covers_what_it_draws():
    # free memory stays under 4 GiB; the domains' 4 GiB, or the 4 GiB needed, makes it GiB
    big = [(0, 100 * MiB, 4 * GiB)]
    assert host_axes(host_rows=big, t_div=1.0).get_ylabel() == "GiB"
    assert host_axes(host_rows=big, t_div=1.0, domain_pages=False).get_ylabel() == "MiB"
    assert host_axes(needed=4 * GiB, host_rows=big, t_div=1.0, domain_pages=False).get_ylabel() == "GiB"


def test_the_host_panel_picks_its_time_unit_from_the_runs_end_unless_given_one():
    hours = host_axes(end_s=7200)  # a 2 h run: hours
    assert list(lines_of(hours)["host free"].get_xdata()) == [0, 1 / 3600, 2 / 3600, 3 / 3600]
    assert list(lines_of(host_axes(end_s=7200, t_div=1.0))["host free"].get_xdata()) == [0, 1, 2, 3]


def test_the_host_figure_labels_its_axes_and_legend_and_names_the_run():
    r = result(["a"], [("a", 3, {})], host_rows=HOST_ROWS, metadata={"scenario": "hand", "seed": 5})
    fig = plots.host_figure(r)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "time (s)" and fig._suptitle.get_text() == "hand, seed 5"
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert texts == [plots.MEANINGS["host free"], plots.MEANINGS["Σ domain pages"]]


# -- timeline panels ---------------------------------------------------------------------------


def many(count: int, **summary_columns) -> Result:
    names = [f"d{i:02d}" for i in range(count)]
    rows = [(name, 0, {"current_pages": 100 * MiB}) for name in names]
    return result(names, rows, **summary_columns)


def test_twelve_domains_are_all_drawn_and_more_are_cut_to_twelve():
    twelve = many(12)
    assert plots.timeline_panels(twelve) == ([f"d{i:02d}" for i in range(12)], "")
    asked = (f"d{i:02d}" for i in reversed(range(12)))  # any iterable, in its order
    assert plots.timeline_panels(twelve, asked) == ([f"d{i:02d}" for i in reversed(range(12))], "")
    thirteen = [f"d{i:02d}" for i in range(13)]
    assert plots.timeline_panels(many(13), thirteen) == (thirteen[:12], "the first 12 of the 13 domains asked for")


def test_of_more_than_twelve_guests_the_twelve_worst_are_drawn_worst_first():
    # d05 had an OOM kill: first; the others tie and keep their order, d12 is left out
    kills = [1 if i == 5 else 0 for i in range(1013)]
    shown, why = plots.timeline_panels(many(1013, oom_kills=kills))
    assert shown == ["d05"] + [f"d{i:02d}" for i in range(12) if i != 5]
    assert why == f"the 12 worst of 1,013 guests, worst first ({ORDER}); gap_heatmap.png shows them all"


def test_the_timeline_figure_draws_the_domains_asked_for_over_the_host():
    names = ["a", "b", "c"]
    rows = [(n, t, {"current_pages": (i + 1) * 100 * MiB}) for i, n in enumerate(names) for t in (0, 1)]
    r = result(names, rows, host_rows=HOST_ROWS, metadata={"scenario": "hand", "seed": 5, "host_needed_pages": 1})
    fig = plots.timeline_figure(r, ["c", "a"])
    c, a, host_ax = fig.axes
    assert left_title(c).get_text().startswith("c: ") and left_title(a).get_text().startswith("a: ")
    assert list(lines_of(c)["current"].get_ydata()) == [300, 300]
    assert "Σ domain pages" not in lines_of(host_ax) and "host free" in lines_of(host_ax)
    assert host_ax.get_xlabel() == "time (s)" and c.get_shared_x_axes().joined(c, host_ax)
    assert fig._suptitle.get_text() == "hand, seed 5"
    assert {t.get_text() for t in fig.legends[0].get_texts()} >= {plots.MEANINGS["current"], plots.MEANINGS["needed"]}
    # nothing asked for: the host alone
    assert len(plots.timeline_figure(r, []).axes) == 1


# -- one guest's memory ------------------------------------------------------------------------

# Guest "m" for 20 min (drawn in minutes), 1 GiB populated; OOM kills at 10 and 15 min, the first
# after the killer saw 200 MiB of swap.  Guest "other" has an OOM kill of its own, not drawn here.
M_ROWS = [
    (
        "m",
        0,
        {
            "current_pages": 1024 * MiB,
            "kernel_pages": 100 * MiB,
            "anon_pages": 300 * MiB,
            "slab_reclaimable": 24 * MiB,
            "page_cache": 200 * MiB,
            "guest_free": 400 * MiB,
            "mem_available": 600 * MiB,
            "demand_pages": 500 * MiB,
        },
    ),
    (
        "m",
        600,
        {
            "current_pages": 1024 * MiB,
            "kernel_pages": 100 * MiB,
            "anon_pages": 800 * MiB,
            "slab_reclaimable": 24 * MiB,
            "page_cache": 50 * MiB,
            "guest_free": 50 * MiB,
            "mem_available": 100 * MiB,
            "demand_pages": 1200 * MiB,
            "unmet_demand": 100 * MiB,
        },
    ),
    ("m", 1200, {"current_pages": 1024 * MiB, "kernel_pages": 100 * MiB, "guest_free": 924 * MiB}),
    ("other", 1200, {"current_pages": 1024 * MiB}),
]
M_EVENTS = [
    ("m", 600, "oom_invoked", 200 * MiB),
    ("m", 600, "oom_kill", 0),
    ("m", 900, "oom_kill", 0),
    ("other", 300, "oom_kill", 0),
]


@pytest.fixture  # drawn for each test: mutmut runs a mutant only with the tests it saw call the function
def memory():
    r = result(["m", "other"], M_ROWS, M_EVENTS, metadata={"scenario": "hand", "seed": 5})
    return plots.memory_figure(r, "m")


def test_the_holders_are_stacked_bottom_to_top_in_their_colours(memory):
    top, _ = memory.axes
    bands = [c for c in top.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert [band.get_label() for band in bands] == [label for _, label, _ in plots.HOLDERS]
    # each band's upper edge is the sum of the holders up to it; its highest point, in MiB:
    # kernel 100, +anonymous 900 (at 10 min), +slab 924, +page cache 974 (at 10 min) or
    # 624 (at 0), +free 1024 throughout
    tops = [max(band.get_paths()[0].vertices[:, 1]) for band in bands]
    assert tops == pytest.approx([100, 900, 924, 974, 1024])
    for band, (_, _, color) in zip(bands, plots.HOLDERS, strict=True):
        assert tuple(band.get_facecolor()[0]) == to_rgba(color, 0.75)


def test_the_memory_figure_draws_available_demand_unmet_and_swap(memory):
    top, bottom = memory.axes
    available, demand = lines_of(top)["MemAvailable"], lines_of(top)["demand"]
    assert list(available.get_xdata()) == [0, 10, 20] and list(available.get_ydata()) == [600, 100, 0]
    assert list(demand.get_ydata()) == [500, 1200, 0] and demand.get_drawstyle() == "steps-post"
    assert available.get_drawstyle() == "steps-post"
    assert (available.get_color(), available.get_linewidth()) == ("black", 1.2)
    assert (demand.get_color(), demand.get_linestyle(), demand.get_linewidth()) == ("tab:purple", "--", 1)
    unmet, swap = lines_of(bottom)["unmet demand"], lines_of(bottom)["swap"]
    assert list(unmet.get_ydata()) == [0, 100, 0] and unmet.get_color() == "tab:purple"
    assert unmet.get_drawstyle() == "steps-post"
    # the 200 MiB the OOM killer saw at 10 min, before that instant's row
    assert list(swap.get_xdata()) == [0, 10, 10, 20] and list(swap.get_ydata()) == [0, 200, 0, 0]
    assert swap.get_color() == "tab:cyan" and swap.get_drawstyle() == "steps-post"


def test_each_oom_kill_of_the_guest_is_a_red_line_in_both_panels_named_once(memory):
    for ax in memory.axes:
        kills = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
        assert [list(line.get_xdata()) for line in kills] == [[10, 10], [15, 15]]
        assert kills[0].get_label() == "OOM kill" and kills[1].get_label().startswith("_")
        assert all((k.get_color(), k.get_linewidth()) == ("tab:red", 1.5) for k in kills)


def test_the_memory_figures_titles_axes_and_legends(memory):
    top, bottom = memory.axes
    assert left_title(top).get_text() == "m: memory by holder (populated pages)"
    assert left_title(bottom).get_text() == "unmet demand, swap, OOM kills"
    assert left_title(top).get_fontsize() == left_title(bottom).get_fontsize() == 10
    assert top.get_ylabel() == bottom.get_ylabel() == "MiB" and bottom.get_xlabel() == "time (min)"
    assert top.get_shared_x_axes().joined(top, bottom)
    assert top.get_gridspec().get_height_ratios() == [3, 1.4]
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == [
        plots.MEANINGS[label] for label in ("unmet demand", "swap", "OOM kill")
    ]
    assert plots.MEANINGS["MemAvailable"] in [t.get_text() for t in top.get_legend().get_texts()]
    assert memory._suptitle.get_text() == "hand, seed 5"


def test_the_swap_line_puts_what_the_killer_saw_before_the_rows_of_its_instant():
    # 20 rows at 0 s and 20 at 1 s (swap 0..39 pages); the killer saw 99 pages at 1 s.  Sorting
    # must keep the rows' order within an instant: too many for numpy's default sort to keep it.
    rows = timeline(["g"], [("g", i // 20, {"swap_pages": i}) for i in range(40)])
    seen = events(["g"], [("g", 1, "oom_invoked", 99), ("g", 1, "oom_kill", 7)])
    times, values = plots.swap_line(rows, seen)
    assert list(values) == [*range(20), 99, *range(20, 40)]
    assert list(times) == [0.0] * 20 + [1.0] * 21


# -- the gap heat map --------------------------------------------------------------------------


def test_gaps_are_whole_pages_and_no_domains_give_no_rows():
    tl = timeline(["a"], [("a", 0, {"target_pages": 3, "current_pages": 1})])
    gaps = plots.summed_gaps(tl, np.array([0]), np.array([0.0, 1.0]))
    assert gaps.tolist() == [[2, 2]] and gaps.dtype == np.int64
    none = plots.summed_gaps(timeline([], []), np.array([], dtype=np.int64), np.array([0.0]))
    assert none.shape == (0, 1)


def test_the_gap_matrix_and_heat_map_have_200_bins_unless_told():
    r = result(["a"], [("a", 0, {}), ("a", 10, {"target_pages": 1})])
    matrix, starts, _ = plots.gap_matrix(r)
    assert matrix.shape == (1, 200) and starts[1] == 0.05  # 10 s in 200 bins
    assert plots.gap_heatmap(r).axes[0].get_images()[0].get_array().shape == (1, 200)


def test_a_run_without_time_has_one_bin_at_0():
    at_zero = result(["a"], [("a", 0, {})])
    assert plots._bin_starts(at_zero, 5).tolist() == [0.0]
    assert plots._bin_starts(result(["a"], [("a", 10, {})]), 5).tolist() == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_heat_map_rows_hold_one_domain_up_to_the_limit_then_groups():
    names = [f"g{i}" for i in range(201)]
    assert plots.heatmap_rows(names[:100], rows=100)[2] == "one row per domain"
    group, labels, rows_are = plots.heatmap_rows(names[:200], rows=100)  # 2 a row
    assert labels[0] == "g0 – g1" and len(labels) == 100 and group[199] == 99
    assert rows_are == "each row sums 2 consecutive guests of the 200 (in scenario order)"
    assert plots.heatmap_rows(names, rows=100)[1][-1] == "g198 – g200"  # 201: 3 a row


def heat(names, rows, bins=4):
    fig = plots.gap_heatmap(result(names, rows, metadata={"scenario": "hand", "seed": 5}), bins=bins)
    return fig, fig.axes[0], fig.axes[0].get_images()[0]


def test_the_heat_map_colour_scale_is_symmetric_around_0():
    # a gives back 512 MiB from 1 s (target below current), b is short 256 MiB from 2 s;
    # the run ends at 4 s: bins start at 0, 1, 2, 3 s
    rows = [
        ("a", 0, {}),
        ("b", 0, {}),
        ("a", 1, {"target_pages": 512 * MiB, "current_pages": 1024 * MiB}),
        ("b", 2, {"target_pages": 256 * MiB}),
        ("b", 4, {}),
    ]
    fig, ax, image = heat(["a", "b"], rows)
    assert image.get_array().tolist() == [[0, -512, -512, -512], [0, 0, 256, 256]]
    assert (image.norm.vmin, image.norm.vmax) == (-512, 512) and image.get_cmap().name == "RdBu"
    assert image.get_extent() == [0, 4, 1.5, -0.5]  # domain rows centred on 0 and 1
    assert (image.get_interpolation(), ax.get_aspect()) == ("nearest", "auto")  # a cell per bin, filling the axes
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b"]
    assert ax.get_yticklabels()[0].get_fontsize() == 7 and ax.get_xlabel() == "time (s)"
    title = left_title(ax)
    assert title.get_text() == "target - current (red: still to give back, blue: still to get)"
    assert title.get_fontsize() == 10
    assert fig.axes[1].get_ylabel() == "target - current (MiB)"
    assert fig._suptitle.get_text() == "hand, seed 5\none row per domain"


def test_a_heat_map_of_domains_at_their_targets_says_so():
    fig, _, image = heat(["a"], [("a", 0, {}), ("a", 900, {})])
    assert (image.norm.vmin, image.norm.vmax) == (-1, 1)
    assert image.get_extent() == [0, 15, 0.5, -0.5]  # 900 s: minutes
    heading = fig._suptitle.get_text()
    assert heading == "hand, seed 5\none row per domain\nevery domain was at its target at every bin start"


def test_the_heat_map_labels_at_most_about_40_rows():
    # 80 rows: every second one (80 // 40); 79: each
    for count, step in ((79, 1), (80, 2)):
        names = [f"d{i:02d}" for i in range(count)]
        _, ax, _ = heat(names, [(n, 1, {}) for n in names])
        assert [t.get_text() for t in ax.get_yticklabels()] == names[::step]


def test_the_colour_bar_is_as_tall_as_the_heat_map_until_6_inches():
    # 2 rows: 2.92 inches tall, the bar at full height; 100 rows: 18 inches, the bar a third
    for count, shrink in ((2, 1.0), (100, 1 / 3)):
        names = [f"d{i:03d}" for i in range(count)]
        fig, ax, _ = heat(names, [(n, 1, {}) for n in names])
        laid_out(fig)
        bar = fig.axes[1]
        ratio = bar.get_position().height / ax.get_position().height
        assert ratio == pytest.approx(shrink, rel=0.05), count


# -- the summary figure ------------------------------------------------------------------------


def test_numbers_beside_bars_have_three_significant_digits_and_whole_thousands():
    assert [plots._number(v) for v in (0.0, 0.25, 12.5, 999.4)] == ["0", "0.25", "12.5", "999"]
    # from 999.5 up three significant digits would read 1e+03
    assert [plots._number(v) for v in (999.5, 1000.0, 1100.0, -1250.0)] == ["1,000", "1,000", "1,100", "-1,250"]


def test_a_panel_is_blank_when_every_value_is_0_and_none_fell_short():
    def bars(values, texts):
        return plots.Bars("x", "black", np.array(values), texts, "none")

    assert bars([0.0, 0.0], ["0", "0"]).is_blank()
    assert not bars([0.0, 0.0], ["0", plots.NOT_REACHED]).is_blank()
    assert not bars([0.0, 2.0], ["0", "2"]).is_blank()


def test_the_summary_panels_hold_the_summary_columns():
    s = summary(
        ["a", "b"],
        target_reached=[True, False],
        time_to_final_target_s=[2.5, 7.0],
        backoff_s=[0.0, 1500.0],
        oom_kills=[3, 0],
        min_mem_available=[4 * GiB, 2 * GiB],  # GiB: the peak is 4 GiB
        unmet_demand_mib_s=[0.125, 0.0],
    )
    panels = [(b.xlabel, b.color, b.values.tolist(), b.texts, b.zero_note) for b in plots.summary_panels(s)]
    assert panels == [
        # not reached: no bar, and the words instead of its time
        (
            "time to final target (s)",
            "tab:blue",
            [2.5, 0.0],
            ["2.5", plots.NOT_REACHED],
            "0 s: each reached its final target the moment it was set",
        ),
        ("in back-off (s)", "tab:orange", [0.0, 1500.0], ["0", "1,500"], "none was in back-off"),
        ("OOM kills", "black", [3.0, 0.0], ["3", "0"], "no OOM kills"),
        ("minimum MemAvailable (GiB)", "tab:pink", [4.0, 2.0], ["4", "2"], "each fell to 0"),
        ("unmet demand (MiB·s)", "tab:purple", [0.125, 0.0], ["0.125", "0"], "no unmet demand"),
    ]


def bar_axes(values, texts, note="none"):
    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    plots._draw_bars(ax, np.arange(len(values)), plots.Bars("the label", "tab:blue", np.array(values), texts, note))
    return ax


def test_bars_carry_their_values_written_beside_them():
    ax = bar_axes([2.0, 0.0], ["2", plots.NOT_REACHED])
    assert [p.get_width() for p in ax.patches] == [2.0, 0.0] and ax.get_xlabel() == "the label"
    assert all(p.get_facecolor() == to_rgba("tab:blue") for p in ax.patches)
    written = ax.texts
    assert [t.get_text() for t in written] == ["2", plots.NOT_REACHED]
    assert [t.get_color() for t in written] == ["black", "tab:red"]  # the default, and the shortfall in red
    assert all(t.xyann == (2, 0) and t.get_fontsize() == 7 for t in written)
    assert ax.get_xlim() == pytest.approx((0, 2.6))  # 30 % room for the values
    assert ax.xaxis.get_major_locator()._nbins == 4  # the values are written out: few ticks
    # every target missed and no values: the panel stays, with room for its words
    assert bar_axes([0.0], [plots.NOT_REACHED]).get_xlim() == pytest.approx((0, 1.3e-9))


def test_an_all_zero_panel_shows_its_note_wrapped_at_22_characters_and_no_scale():
    ax = bar_axes([0.0, 0.0], ["0", "0"], note="x" * 22 + " " + "y" * 20 + " zz")
    (text,) = ax.texts
    assert text.get_text() == "\n".join(["x" * 22, "y" * 20, "zz"])
    assert text.get_position() == (0.5, 0.5) and text.get_transform() == ax.transAxes
    assert (text.get_ha(), text.get_va(), text.get_fontsize()) == ("center", "center", 8)
    tick = ax.xaxis.get_major_ticks()[0]
    assert not tick.tick1line.get_visible() and not tick.label1.get_visible()
    assert not ax.yaxis.get_major_ticks()[0].tick1line.get_visible()
    assert not any(spine.get_visible() for spine in ax.spines.values())
    assert [p.get_width() for p in ax.patches] == [0.0, 0.0]


def test_the_summary_figure_ranks_the_worst_guests_at_the_top():
    # c had an OOM kill, a missed its target: c, a, then b (its target reached)
    r = result(
        ["a", "b", "c"],
        [],
        oom_kills=[0, 0, 1],
        target_reached=[False, True, True],
        backoff_s=[0.0, 0.0, 0.0],
        metadata={"scenario": "hand", "seed": 5},
    )
    fig = plots.summary_figure(r, rows=2)
    took, backoff, kills, available, unmet = fig.axes
    assert [t.get_text() for t in took.get_yticklabels()] == ["c", "a"]
    assert took.get_yticklabels()[0].get_fontsize() == 8 and took.yaxis_inverted()
    assert took.get_shared_y_axes().joined(took, unmet)
    assert [round(p.get_y() + p.get_height() / 2) for p in kills.patches] == [1, 0]  # a, then c, in table order
    assert kills.xaxis.get_major_locator()._integer
    # in back-off, MemAvailable and unmet demand all 0: half-width panels with notes
    assert took.get_gridspec().get_width_ratios() == [1.0, 0.5, 1.0, 0.5, 0.5]
    assert fig._suptitle.get_text().replace("\n", " ") == (
        f"hand, seed 5 the 2 worst of 3 guests, worst first ({ORDER}); 1 left out (the summary table has every guest) "
        "0 for every guest shown, so a note instead of bars: in back-off (s), minimum MemAvailable (MiB), "
        "unmet demand (MiB·s)"
    )
    assert plots._summary_note(1200, 1200) == f"all 1,200 guests, worst first ({ORDER})"


def test_a_summary_figure_without_empty_panels_has_no_note_about_them():
    # every panel has a bar above 0: the heading is the run and the guests shown, nothing more
    r = result(
        ["a", "b"],
        [],
        time_to_final_target_s=[2.0, 0.0],
        oom_kills=[1, 0],
        backoff_s=[4.0, 0.0],
        min_mem_available=[MiB, 0],
        unmet_demand_mib_s=[3.0, 0.0],
    )
    fig = plots.summary_figure(r)
    assert fig._suptitle.get_text().replace("\n", " ") == f"hand, seed 5 all 2 guests, worst first ({ORDER})"
    assert fig.axes[0].get_gridspec().get_width_ratios() == [1.0] * 5


# -- comparing runs ----------------------------------------------------------------------------


def test_compare_figure_gives_each_run_one_colour_current_solid_target_dashed():
    first = result(["s"], [("s", 0, {"current_pages": 300 * MiB, "target_pages": 200 * MiB, "mem_available": 5})])
    # the second run lasts 10 min (minutes) and holds 4 GiB (GiB); its copy lacks the domain
    second = result(["s"], [("s", 0, {}), ("s", 600, {"current_pages": 4 * GiB, "target_pages": 2 * GiB})])
    lacking = result(["t"], [("t", 9000, {})])
    fig = plots.compare_figure({"one": first, "two": second, "none": lacking}, "s")
    top, bottom = fig.axes
    lines, below = lines_of(top), lines_of(bottom)
    assert list(lines["two: current"].get_xdata()) == [0, 10] and list(lines["two: target"].get_ydata()) == [0, 2]
    assert list(lines["one: current"].get_ydata()) == [300 / 1024]
    assert list(below["one"].get_ydata()) == [5 / GiB]
    for i, label in enumerate(("one", "two")):
        current, target = lines[f"{label}: current"], lines[f"{label}: target"]
        assert current.get_color() == target.get_color() == below[label].get_color() == f"C{i}"
        assert (current.get_linestyle(), target.get_linestyle()) == ("-", "--")
        assert {line.get_drawstyle() for line in (current, target, below[label])} == {"steps-post"}
    assert top.get_ylabel() == bottom.get_ylabel() == "GiB" and bottom.get_xlabel() == "time (min)"
    assert left_title(top).get_text() == "s: current and target in each run"
    assert left_title(bottom).get_text() == "MemAvailable"
    assert left_title(top).get_fontsize() == left_title(bottom).get_fontsize() == 10
    assert top.get_shared_x_axes().joined(top, bottom) and top.get_gridspec().get_height_ratios() == [2, 1]
    assert [t.get_text() for t in bottom.get_legend().get_texts()] == ["one", "two", "none"]
    heading = fig._suptitle.get_text()
    assert heading == "one: hand, seed 5\ntwo: hand, seed 5\nnone: hand, seed 5"


# -- the set written to disk -------------------------------------------------------------------


def test_memory_figures_go_to_the_worst_guests_with_workloads():
    # p0..p4 had demand, idle none; p3 and p1 fared worst (OOM kills, then unmet demand)
    names = ["idle", "p0", "p1", "p2", "p3", "p4"]
    rows = [(n, 0, {"demand_pages": 0 if n == "idle" else 1}) for n in names]
    r = result(names, rows, oom_kills=[9, 0, 0, 0, 2, 0], unmet_demand_mib_s=[0, 0, 5, 0, 0, 0])
    assert plots.most_pressed(r, 2) == ["p3", "p1"]
    assert plots.most_pressed(r, 9) == ["p3", "p1", "p0", "p2", "p4"]


def pixels(png: Path) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    head = png.read_bytes()[16:24]
    return int.from_bytes(head[:4], "big"), int.from_bytes(head[4:], "big")


def test_write_figures_draws_the_set_one_at_a_time_at_110_dpi(tmp_path, monkeypatch):
    drawn_for = []

    def recorder(kind):
        def draw(*args):
            drawn_for.append((kind, *args))
            return Figure(figsize=(1, 0.5))  # 110 x 55 pixels at 110 dpi

        return draw

    for kind in ("timeline", "host", "memory", "summary"):
        monkeypatch.setattr(plots, f"{kind}_figure", recorder(kind))
    monkeypatch.setattr(plots, "gap_heatmap", recorder("gap_heatmap"))
    names = [f"p{i}" for i in range(5)]
    r = result(names, [(n, 1, {"demand_pages": 1}) for n in names])
    told = []
    written = plots.write_figures(r, tmp_path, on_figure=lambda done, total: told.append((done, total)))
    # four memory figures at most: five guests had demand and tie, the first four in file order
    memory = [f"memory-p{i}.png" for i in range(4)]
    assert written == ["timeline.png", "host.png", "gap_heatmap.png", "summary.png", *memory]
    assert drawn_for == [(kind, r) for kind in ("timeline", "host", "gap_heatmap", "summary")] + [
        ("memory", r, f"p{i}") for i in range(4)
    ]
    assert told == [(i, 8) for i in range(9)]  # before each, and 8/8 at the end
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(written)
    assert pixels(tmp_path / "host.png") == (110, 55)
    low = tmp_path / "low"
    low.mkdir()
    plots.write_figures(r, low, dpi=20)
    assert pixels(low / "host.png") == (20, 10)


def test_compare_figure_of_a_domain_no_run_has_is_empty_and_in_seconds():
    fig = plots.compare_figure({"one": result(["s"], [("s", 900, {})])}, "missing")
    top, bottom = fig.axes
    assert [list(line.get_xdata()) for line in top.get_lines()] == [[], []]
    assert bottom.get_xlabel() == "time (s)" and top.get_ylabel() == "MiB"
