"""The seams new parts plug into: a driver version and a host manager are one module and a
registry line each (shown with toy ones), and what the engine no longer does itself is still done."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import pytest

from balloonsim.columns import Column
from balloonsim.errors import RunWarning, SimulationError
from balloonsim.kernel.interface import (
    BALLOON_STATS_COLUMNS,
    ENOMEM,
    GFP_BALLOON,
    BalloonKernel,
    BalloonStats,
    balloon_stats_values,
)
from balloonsim.managers.base import HostView, PeriodicManager, SetTarget
from balloonsim.registry import DRIVERS, MANAGERS
from balloonsim.results.recorder import Recorder
from balloonsim.scenario.model import ManagerParams
from balloonsim.scenario.types import Nanoseconds
from balloonsim.units import kib_to_pages, pages_to_kib
from conftest import GiB, MiB, make_scenario, run

S = 1_000_000_000


# -- a toy driver: one module's worth of code, one registry line ----------------------------


class InstantDriver:
    """Moves to every new target at once, as far as the allocator and Xen allow; no back-off, no worker."""

    COLUMNS = (*BALLOON_STATS_COLUMNS, Column("toy_moves"))

    def __init__(self, kernel: BalloonKernel, *, memory_hotplug: bool, bulk_iterations: bool = True):
        self.kernel = kernel
        self.balloon_stats = BalloonStats()
        self.backend_pages = 0
        self.moves = 0

    def balloon_init(self) -> None:
        s = self.balloon_stats
        s.current_pages = s.target_pages = s.total_pages = self.kernel.get_num_physpages()

    def balloon_set_new_target(self, target: int) -> None:
        s = self.balloon_stats
        s.target_pages = target
        credit = target - s.current_pages
        if credit < 0:
            low, high = self.kernel.alloc_pages(-credit, GFP_BALLOON)
            self.kernel.adjust_managed_page_count(-(low + high))
            s.balloon_low, s.balloon_high = s.balloon_low + low, s.balloon_high + high
            s.current_pages -= self.kernel.xenmem_reservation_decrease(low + high)
        elif credit > 0:
            got = self.kernel.xenmem_reservation_increase(min(credit, s.balloon_low + s.balloon_high))
            low = min(got, s.balloon_low)
            s.balloon_low, s.balloon_high = s.balloon_low - low, s.balloon_high - (got - low)
            self.kernel.free_reserved_pages(low, got - low)
            s.current_pages += got
        self.moves += 1

    def alloc_xenballooned_pages(self, nr_pages: int, signal_after: int | None = None):
        return -ENOMEM
        yield  # a generator, as the interface wants

    def free_xenballooned_pages(self, nr_pages: int) -> None:
        pass

    def row_values(self) -> tuple[int, ...]:
        return (*balloon_stats_values(self.balloon_stats), self.moves)

    def pass_outcome(self) -> None:
        return None


@pytest.fixture
def toy_driver():
    with DRIVERS.registered("toy-instant", InstantDriver):
        yield


def test_a_new_driver_version_is_a_class_and_a_registry_line(toy_driver):
    guests = [
        {"name": name, "memory": "1GiB", "initial_target": "absent", "costs": "none", "balloon": {"driver": driver}}
        for name, driver in (("old", "v5.12"), ("toy", "toy-instant"))
    ]
    s = make_scenario(
        [{"at": "1s", "domain": d, "target": "512MiB"} for d in ("old", "toy")],
        domains=guests,
        host={"free": "0 pages"},
    )
    r = run(s)
    tl = r.timeline
    old, toy = tl[tl["domain"] == "old"], tl[tl["domain"] == "toy"]
    # the toy's own column is in the table; the v5.12 guest, which has no such column, gets its fill
    assert (toy["toy_moves"].iloc[-1], set(old["toy_moves"])) == (1, {-1})
    # and the v5.12 columns the toy lacks get theirs: no state, no work pending
    assert set(toy["state"].astype(str)) == {"NONE"} and not toy["work_pending"].any()
    # the toy moved at the target write itself (1 s), no worker pass; both reached 512 MiB
    at_write = toy[toy["cause"] == "target"].iloc[0]
    assert (at_write["time_s"], at_write["current_pages"]) == (1.0, 512 * MiB)
    assert list(r.summary["final_current_pages"]) == [512 * MiB, 512 * MiB]
    # the v5.12 guest's rows are what it has alone (but for the host's free memory, which both share)
    alone = run(make_scenario([{"at": "1s", "domain": "old", "target": "512MiB"}], domains=guests[:1]))
    shared = [c for c in alone.timeline.columns if c not in ("domain", "cause", "host_free")]
    assert old[shared].reset_index(drop=True).equals(alone.timeline[shared])


class MiscountingDriver(InstantDriver):
    def row_values(self) -> tuple[int, ...]:
        return (*super().row_values(), 0)  # one more than its COLUMNS


class RedeclaringDriver(InstantDriver):
    COLUMNS = (*BALLOON_STATS_COLUMNS[:-1], Column(BALLOON_STATS_COLUMNS[-1].name, "bool"), Column("toy_moves"))


@pytest.mark.parametrize(
    ("driver", "message"),
    [
        (MiscountingDriver, r"MiscountingDriver\.row_values\(\) gives \d+ values for its \d+ COLUMNS"),
        (RedeclaringDriver, r"RedeclaringDriver declares Column\(name=.*kind='bool'.*, BalloonDriver Column"),
    ],
)
def test_a_driver_whose_columns_do_not_fit_the_table_is_refused_at_its_first_row(driver, message):
    # beside a v5.12 guest, so that the toy's redeclared column meets the original
    guests = [
        {"name": name, "memory": "1GiB", "costs": "none", "balloon": {"driver": kind}}
        for name, kind in (("old", "v5.12"), ("toy", "toy"))
    ]
    with DRIVERS.registered("toy", driver), pytest.raises(TypeError, match=message):
        run(make_scenario(domains=guests))


def test_an_unregistered_driver_is_refused_with_the_names_there_are():
    with pytest.raises(Exception, match=r"unknown driver 'v9\.9'; drivers: v5\.2, v5\.12, v5\.15, v5\.16"):
        make_scenario(domain={"balloon": {"driver": "v9.9"}})


# -- a toy host manager -------------------------------------------------------------------


class EvenSplitParams(ManagerParams):
    period: Nanoseconds = "10s"


class EvenSplit(PeriodicManager):
    """Shares the host's memory evenly among its guests, capped at each one's static-max."""

    Params = EvenSplitParams

    def __init__(self, params: EvenSplitParams):
        self.params = params

    @property
    def period_ns(self) -> int:
        return self.params.period

    def decide(self, view: HostView) -> Sequence[SetTarget]:
        share = (view.free_pages + sum(d.tot_pages for d in view.domains)) // len(view.domains)
        actions = []
        for d in view.domains:
            kib = pages_to_kib(min(share, kib_to_pages(d.static_max_kib)))
            if kib != d.target_kib:
                actions.append(SetTarget(d.name, kib))
        return actions


@pytest.fixture
def toy_manager():
    with MANAGERS.registered("even-split", EvenSplit):
        yield


def test_a_host_manager_is_a_decision_and_a_registry_line(toy_manager):
    # Two PV guests (target_diff 0) of 1 GiB with static-max 2 GiB on a 4 GiB host that starts
    # with 1 GiB free and 1 GiB held by other consumers; b's toolstack is xend, which keeps
    # static-max under its own key (the manager reads it there).  The manager writes raw targets, so
    # Xen's max_pages is pinned at static-max (libxl's build would cap them at memory + 1 MiB).
    guest = {"type": "pv", "memory": "1GiB", "static_max": "2GiB", "max_pages": "2GiB", "costs": "none"}
    s = make_scenario(
        [{"at": "15s", "host_free": "1GiB"}],  # the others give back their 1 GiB
        domains=[{"name": "a", **guest}, {"name": "b", **guest, "toolstack": "xend"}],
        host={"total": "4GiB", "free": "1GiB", "manager": {"kind": "even-split", "period": "10s"}},
        duration="30s",
    )
    assert s.host.manager.period == 10 * S  # validated by the manager's own settings model
    r = run(s)
    tl = r.timeline
    writes = tl[tl["cause"] == "manager"]
    # t=0: (1 GiB free + 2 GiB held) / 2 = 1.5 GiB each; 10 s: nothing changed, nothing written;
    # 20 s: (1 GiB + 3 GiB) / 2 = 2 GiB, static-max
    assert list(zip(writes["time_s"], writes["domain"].astype(str), strict=True)) == [
        (0.0, "a"),
        (0.0, "b"),
        (20.0, "a"),
        (20.0, "b"),
    ]
    targets = r.targets[r.targets["cause"] == "manager"]  # by domain, then time
    assert list(targets["target_pages"]) == [1536 * MiB, 2 * GiB, 1536 * MiB, 2 * GiB]
    assert targets["reached"].all() and (targets["time_to_reach_s"] == 0).all()  # costs none
    assert r.metadata["settings"]["manager"] == {"kind": "even-split", "period": "10s"}


def test_manager_settings_are_checked_by_its_model(toy_manager):
    with pytest.raises(Exception, match="period"):
        make_scenario(host={"free": "0 pages", "manager": {"kind": "even-split", "period": "soon"}})
    with pytest.raises(Exception, match=r"manager kind must be one of: none, (\w+, )*even-split$"):
        make_scenario(host={"free": "0 pages", "manager": {"kind": "qmemmam"}})


# -- what moved out of the engine is still done ---------------------------------------------


def test_memory_a_pass_populates_meets_waiting_demand_at_once():
    # 1 GiB guest, no reserves.  At 0 s it is ballooned to 512 MiB (131072 pages stay free).  At
    # 1 s a task that cannot be OOM-killed wants 700 MiB = 179200 pages: it gets the 131072 free
    # pages and 48128 stay unmet.  At 5 s the target is 1 GiB again: the worker populates 131072
    # pages, and the waiting task takes its 48128 at the end of that very pass.
    s = make_scenario(
        [{"at": "0s", "target": "512MiB"}, {"at": "5s", "target": "1GiB"}],
        domain={"workloads": [{"name": "svc", "oom_score_adj": -1000, "steps": [{"at": "1s", "anon": "700MiB"}]}]},
        duration="10s",
    )
    tl = run(s).domain("g")
    before = tl[(tl["time_s"] == 1.0) & (tl["cause"] == "workload")].iloc[0]
    assert (before["anon_pages"], before["unmet_anon"]) == (131072, 48128)
    after = tl[(tl["time_s"] == 5.0) & (tl["cause"] == "work")].iloc[0]
    assert (after["current_pages"], after["anon_pages"], after["unmet_anon"]) == (GiB, 179200, 0)


def test_a_no_hotplug_clamp_is_an_event_with_the_target_it_replaced():
    # static-max = memory = 1 GiB and no boot target: the first write gives target_diff 0.  1.5 GiB
    # with an empty balloon and no hotplug: reserve_additional_memory() sets target = current.
    r = run(make_scenario([{"at": "1s", "target": "1536MiB"}], duration="5s"))
    clamp = r.events[r.events["kind"] == "target_clamped"]
    assert list(zip(clamp["time_s"], clamp["pages"], clamp["value"], strict=True)) == [(1.0, 1536 * MiB, GiB)]
    assert r.events[r.events["kind"] == "ECANCELED"]["time_s"].tolist() == [1.0]


def test_a_no_hotplug_reserve_that_leaves_the_target_as_it_was_is_no_clamp():
    # 100 pages lent to a backend from an empty balloon: current 1 GiB - 100 pages, 100
    # unpopulated.  A target of 1 GiB then gives credit 100 with an empty balloon, and
    # reserve_additional_memory() sets target = current + unpopulated: 1 GiB, as it was.
    s = make_scenario([{"at": "1s", "alloc_ballooned": 100}, {"at": "2s", "target": "1GiB"}], duration="5s")
    r = run(s)
    assert r.events["kind"].tolist() == ["watch_no_target", "alloc_ballooned", "ECANCELED"]  # no target_clamped
    assert not r.summary.iloc[0]["last_target_clamped"]


def test_a_refused_mem_set_is_an_event_with_the_target_asked():
    # xl mem-set above static-max (1 GiB): libxl refuses; nothing reaches xenstore
    r = run(make_scenario([{"at": "1s", "mem_set": "2GiB"}], domain={"initial_target": "1GiB"}, duration="5s"))
    refused = r.events[r.events["kind"] == "mem_set_failed"].iloc[0]
    assert (refused["time_s"], refused["pages"]) == (1.0, 2 * GiB)
    assert "memory_dynamic_max must be less than or equal to memory_static_max" in refused["message"]


@pytest.mark.parametrize(("write", "seconds"), [(None, 1.024), ("0", 0.0), ("1", 1.024)])
def test_a_scrub_pages_write_changes_what_ballooning_costs(write, seconds):
    # Only scrubbing costs time, 1 ms a page: 1024 pages out in two turns of 512 take 1.024 s with
    # xen_scrub_pages (the default), nothing without.
    costs = dict.fromkeys(
        ("alloc_page", "free_page", "pv_page", "hypercall", "xen_page", "cond_resched", "reclaim_page"), "0s"
    )
    events = [{"at": "0s", "sysfs": {"scrub_pages": write}}] if write is not None else []
    events.append({"at": "1s", "target": f"{1024 * 1024 - 4096}KiB"})
    s = make_scenario(events, domain={"costs": {**costs, "scrub_page": "1ms"}}, duration="10s")
    final = run(s).targets.iloc[-1]
    assert final["target_pages"] == GiB - 1024 and final["time_to_reach_s"] == pytest.approx(seconds)


def test_page_cache_not_held_and_missing_anonymous_memory_are_separate_columns():
    # 1 GiB: a task wants 900 MiB anonymous and 300 MiB (76800 pages) of cache.  Anonymous memory
    # comes first (230400 of 262144 pages); the cache grows only into what is left above the low
    # watermarks, so part of it is not held while no anonymous page is missing.
    s = make_scenario(
        domain={"workloads": [{"name": "w", "constant": {"anon": "900MiB", "cache": "300MiB"}}]}, duration="2s"
    )
    last = run(s).domain("g").iloc[-1]
    assert (last["anon_pages"], last["unmet_anon"]) == (230400, 0)
    assert 0 < last["page_cache"] < 76800 - 0 and last["page_cache"] <= GiB - 230400
    assert last["unmet_cache"] == last["unmet_demand"] == 76800 - last["page_cache"]


# -- runs that cannot end well are stopped ------------------------------------------------


@pytest.mark.parametrize("costs", ["none", None])
def test_a_worker_spinning_without_delay_is_a_livelock_with_or_without_costs(costs):
    # Ballooned down to 768 MiB; the host then has no free page; the target goes back to 1 GiB.
    # Every pass is refused by Xen (EAGAIN), and with max_schedule_delay 0 it requeues itself with
    # delay 0 forever: at one instant without costs, 10 us (a hypercall) apart with them.
    domain = {"balloon": {"max_retry_count": 0, "max_schedule_delay": 0}}
    if costs is None:
        domain["costs"] = {}  # the default profile, runtime
    s = make_scenario(
        [{"at": "0s", "target": "768MiB"}, {"at": "1s", "host_free": 0}, {"at": "1s", "target": "1GiB"}],
        domain=domain,
        duration="1h",
    )
    with pytest.raises(SimulationError, match=r"livelock: g/balloon_worker ran 100000 times"):
        run(s)


def test_a_spin_with_costs_that_a_later_event_ends_is_not_a_livelock():
    # As above with costs, 24 MiB down then back up, but at 2.5 s the host has 1 GiB free again:
    # the spin (10 us a pass, some 150,000 passes) ends there and the guest gets back to 1 GiB.
    # The check at 100,000 passes sees the host event still to come and lets the worker go on.
    s = make_scenario(
        [
            {"at": "0s", "target": "1000MiB"},
            {"at": "1s", "host_free": 0},
            {"at": "1s", "target": "1GiB"},
            {"at": "2500ms", "host_free": "1GiB"},
        ],
        domain={"balloon": {"max_retry_count": 0, "max_schedule_delay": 0}, "costs": {}},
        duration="4s",
    )
    timeline = run(s).timeline
    assert len(timeline[(timeline["time_s"] > 1) & (timeline["time_s"] < 2.5)]) > 100_000  # the check ran
    assert timeline.iloc[-1]["current_pages"] == GiB


def test_a_run_says_when_its_tables_grow_large(monkeypatch):
    monkeypatch.setattr(Recorder, "WARN_ROWS", 4)
    s = make_scenario([{"at": f"{t}s", "target": "512MiB" if t % 2 else "1GiB"} for t in range(1, 8)])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = len(run(s).timeline)
    sizes = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    # warned at 4 rows, then at every doubling: 8, 16 (there are 1 init + 7 x 2 + 1 end = 16 rows)
    assert rows == 16
    assert [m.split(" rows")[0] for m in sizes] == ["the timeline has 4", "the timeline has 8", "the timeline has 16"]


def test_the_command_line_prints_each_warning_as_one_line(monkeypatch, tmp_path, capsys):
    from balloonsim.cli import main

    monkeypatch.setattr(Recorder, "WARN_ROWS", 4)
    path = tmp_path / "w.yaml"
    path.write_text(
        "name: w\nduration: 10s\nhost: {free: 0}\n"
        "domains: [{name: a, memory: 1GiB, costs: none, balloon: {max_schedule_delay: 0}}]\n"
        "events: [{at: 1s, domain: a, target: 512MiB}, {at: 2s, domain: a, target: 1GiB}]\n"
    )
    assert main(["run", str(path), "-o", str(tmp_path / "out"), "--no-plot"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"{path}:4: domains.0.balloon.max_schedule_delay: warning: 0: ")
    # rows: init, target, work, target, work, end = 6: one warning at 4
    assert [line.split(" rows")[0] for line in err[1:]] == ["balloonsim: warning: the timeline has 4"]
