"""Every figure is drawn from a real Result: its lines carry the timeline's data, its axes say
their units, and events are marked where (and when) they happened."""

from pathlib import Path

import matplotlib.collections
import matplotlib.image
import numpy as np
import pytest

from balloonsim.cli import main
from balloonsim.plots import (
    compare_figure,
    gap_heatmap,
    gap_matrix,
    host_figure,
    memory_figure,
    summary_figure,
    timeline_figure,
    write_figures,
)
from balloonsim.scenario import load_scenario
from conftest import GiB, MiB, make_scenario, run

SCENARIOS = Path(__file__).parent.parent / "scenarios"


@pytest.fixture(scope="module")
def quickstart():
    return run(load_scenario(SCENARIOS / "quickstart.yaml"))


@pytest.fixture(scope="module")
def oom():
    return run(load_scenario(SCENARIOS / "oom_spike.yaml"))


@pytest.fixture(scope="module")
def squeeze():
    return run(load_scenario(SCENARIOS / "host_squeeze.yaml"))


def lines_of(ax):
    return {line.get_label(): line for line in ax.get_lines()}


def test_timeline_lines_carry_each_domains_columns_in_mib(quickstart):
    fig = timeline_figure(quickstart)
    axes = fig.axes
    assert len(axes) == 4  # three domains, then the host
    for ax, name in zip(axes, ["shrinker", "grower", "stuck"], strict=False):
        tl = quickstart.domain(name)
        lines = lines_of(ax)
        assert np.array_equal(lines["current"].get_xdata(), tl["time_s"].to_numpy())
        for label, col in [
            ("current", "current_pages"),
            ("target", "target_pages"),
            ("total", "total_pages"),
            ("balloon_low", "balloon_low"),
            ("MemAvailable", "mem_available"),
        ]:
            assert np.allclose(lines[label].get_ydata(), tl[col].to_numpy() / MiB), (name, label)
        assert ax.get_ylabel() == "MiB"
        assert ax.get_title(loc="left").startswith(f"{name}: ")
    assert axes[-1].get_xlabel() == "time (s)"
    host = lines_of(axes[-1])["host free"]
    assert np.allclose(host.get_ydata(), quickstart.host["host_free"].to_numpy() / MiB)


def test_back_off_and_cancel_are_marked_where_they_happened(quickstart):
    ax = timeline_figure(quickstart).axes[2]  # stuck
    ev = quickstart.events[quickstart.events["domain"] == "stuck"]
    tl = quickstart.domain("stuck")
    lines = lines_of(ax)
    for kind in ("EAGAIN", "ECANCELED"):
        when = ev.loc[ev["kind"] == kind, "time_s"].to_numpy()
        assert np.allclose(lines[kind].get_xdata(), when)
        # on the current line, at the row the worker pass wrote at that instant
        at = [tl.loc[tl["time_s"] <= t, "current_pages"].iloc[-1] / MiB for t in when]
        assert np.allclose(lines[kind].get_ydata(), at)
    s = quickstart.summary.set_index("domain").loc["stuck"]
    above = (s["final_current_pages"] - s["final_target_pages"]) / MiB
    assert ax.get_title(loc="left") == f"stuck: target not reached (ends ECANCELED, {above:.0f} MiB above it)"
    # shrinker: 5 s + 512 batches x 4,720,400 ns (runtime: 512 x 9,200 + 10,000) = 7.42 s, 2.42 s after it was set
    title = timeline_figure(quickstart).axes[0].get_title(loc="left")
    assert title == "shrinker: reached its target at 7.42 s (2.42 s after it was set)"


def test_oom_kills_are_marked_on_the_timeline_and_memory_figure(oom):
    ax = timeline_figure(oom).axes[0]
    mark = lines_of(ax)["OOM kill"]
    assert list(mark.get_xdata()) == [90.0]
    mem = memory_figure(oom, "app")
    top, bottom = mem.axes
    assert [line.get_xdata()[0] for line in top.get_lines() if line.get_label() == "OOM kill"] == [90.0]
    tl = oom.domain("app")
    div = GiB  # the guest is 4 GiB: sizes in GiB
    assert top.get_ylabel() == "GiB" and bottom.get_xlabel() == "time (s)"
    assert np.allclose(lines_of(top)["MemAvailable"].get_ydata(), tl["mem_available"].to_numpy() / div)
    assert np.allclose(lines_of(bottom)["unmet demand"].get_ydata(), tl["unmet_demand"].to_numpy() / div)
    # the stacked holders add up to the guest's populated pages
    stacks = [c for c in top.collections if isinstance(c, matplotlib.collections.PolyCollection)]
    assert [c.get_label() for c in stacks] == ["kernel", "anonymous", "slab", "page cache", "free"]
    held = sum(tl[c] for c in ("kernel_pages", "anon_pages", "slab_reclaimable", "page_cache", "guest_free"))
    assert (held == tl["dom_pages"]).all()


def test_hot_added_memory_is_marked():
    s = make_scenario(
        [{"at": "1s", "target": "1280MiB"}],
        domain={"kernel": {"hotplug": {"enabled": True}}},
        host={"free": "1GiB"},
        duration="5s",
    )
    r = run(s)
    added = r.events[r.events["kind"] == "hotplug_add"]
    assert len(added) == 1
    mark = lines_of(timeline_figure(r).axes[0])["hot-added"]
    assert list(mark.get_xdata()) == list(added["time_s"])


def test_long_runs_are_drawn_in_minutes():
    r = run(load_scenario(SCENARIOS / "replay.yaml"))
    fig = timeline_figure(r)
    assert fig.axes[-1].get_xlabel() == "time (min)"
    current = lines_of(fig.axes[0])["current"]
    assert np.allclose(current.get_xdata(), r.domain("web")["time_s"].to_numpy() / 60)


def test_host_figure_shows_what_the_host_needs_and_when_it_had_it(squeeze):
    ax = host_figure(squeeze).axes[0]
    host = squeeze.host
    lines = lines_of(ax)
    assert np.allclose(lines["host free"].get_ydata(), host["host_free"].to_numpy() / GiB)
    assert np.allclose(lines["Σ domain pages"].get_ydata(), host["domain_pages"].to_numpy() / GiB)
    assert list(lines["needed"].get_ydata()) == [16.0, 16.0] and ax.get_ylabel() == "GiB"
    reached = host.loc[host["host_free"] >= 16 * GiB, "time_s"].iloc[0]
    assert f"reached at {reached:.3g} s" in ax.get_title(loc="left")
    assert lines["got there"].get_xdata()[0] == reached


def test_gap_heatmap_holds_target_minus_current_for_every_domain(squeeze):
    matrix, starts, names = gap_matrix(squeeze, bins=300)  # one bin a second
    assert len(names) == 12 and matrix.shape == (12, 300) and starts[30] == 30.0
    assert (matrix[:, 29] == 0).all()  # before the targets
    assert (matrix[:, 30] == -(5 * GiB - 3584 * MiB)).all()  # set at 30 s, nothing moved yet
    busy = names.index("busy1")
    # A busy 5 GiB guest (THP on: totalreserve 30494 pages, Σ low watermarks 21118; see
    # test_reserves) starts with MemAvailable = 241664 free - 30494 + (131072 cache - 21118)
    # + 16384 slab / 2 = 329316 pages.  Each 512-page batch lowers it by 512 (kswapd turns cache
    # into free pages one for one); the pass that finds it under totalreserve (batch 585:
    # 329316 - 584 * 512 = 30308) still balloons, then ends EAGAIN, and the three retries before
    # the cancel take a batch each: 588 * 512 = 301056 of the 1536 MiB (393216 pages) asked.
    assert matrix[busy, -1] == -(393216 - 588 * 512) == -360 * MiB
    assert matrix[names.index("idle1"), -1] == 0
    fig = gap_heatmap(squeeze, bins=300)
    image = next(a for a in fig.axes[0].get_children() if isinstance(a, matplotlib.image.AxesImage))
    assert np.allclose(image.get_array(), matrix / MiB)
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == names
    assert fig.axes[0].get_xlabel() == "time (s)" and "(MiB)" in fig.axes[1].get_ylabel()


def test_summary_bars_are_the_summary_columns(squeeze):
    fig = summary_figure(squeeze)
    s = squeeze.summary
    took, backoff, kills, avail = fig.axes[:4]
    widths = [p.get_width() for p in took.patches]
    assert np.allclose(widths, np.where(s["target_reached"], s["time_to_final_target_s"], 0.0))
    assert np.allclose([p.get_width() for p in backoff.patches], s["backoff_s"])
    assert np.allclose([p.get_width() for p in kills.patches], s["oom_kills"])
    assert np.allclose([p.get_width() for p in avail.patches], s["min_mem_available"] / MiB)
    assert sum(t.get_text() == " not reached" for t in took.texts) == (~s["target_reached"]).sum() == 4
    assert took.get_xlabel() == "time to final target (s)" and avail.get_xlabel() == "minimum MemAvailable (MiB)"


def test_run_writes_the_figures_and_plot_redraws_them_from_parquet(tmp_path, oom, capsys):
    names = write_figures(oom, tmp_path)
    assert names == ["timeline.png", "host.png", "gap_heatmap.png", "summary.png", "memory-app.png"]
    assert all((tmp_path / n).stat().st_size > 10_000 for n in names)
    out = tmp_path / "run"
    assert main(["run", str(SCENARIOS / "oom_spike.yaml"), "-o", str(out)]) == 0
    for n in names:
        (out / n).unlink()
    assert main(["plot", str(out)]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == sorted(names)
    assert main(["plot", str(tmp_path / "nothing")]) == 2
    assert "not a balloonsim result" in capsys.readouterr().err


def test_compare_figure_overlays_one_domain_from_each_run(quickstart):
    unlimited = run(load_scenario(SCENARIOS / "quickstart.yaml").replace({"domains.stuck.balloon.max_retry_count": 0}))
    fig = compare_figure({"4": quickstart, "unlimited": unlimited}, "stuck")
    top, bottom = fig.axes
    lines = lines_of(top)
    for label, r in (("4", quickstart), ("unlimited", unlimited)):
        tl = r.domain("stuck")
        assert np.allclose(lines[f"{label}: current"].get_ydata(), tl["current_pages"] / MiB)
        assert np.allclose(lines[f"{label}: target"].get_ydata(), tl["target_pages"] / MiB)
        assert np.allclose(lines_of(bottom)[label].get_ydata(), tl["mem_available"] / MiB)
    assert top.get_ylabel() == "MiB" and bottom.get_xlabel() == "time (s)"
    # unlimited retries keep ballooning a batch a retry: it ends lower than the cancelled run
    assert lines["unlimited: current"].get_ydata()[-1] < lines["4: current"].get_ydata()[-1]
