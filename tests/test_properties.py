"""Invariants on random scenarios: pages are conserved, counters never go negative,
the steady-turn shortcut changes nothing, and runs are deterministic."""

import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from balloonsim.errors import SimulationError
from balloonsim.registry import MANAGERS
from balloonsim.scenario.model import Scenario
from conftest import run

ACTIONS = (
    "target",
    "mem_set",
    "max_pages",
    "take",
    "give",
    "alloc_ballooned",
    "free_ballooned",
    "online",
    "hotplug_unpopulated",
    "sysfs",
    "totalreserve",
    "mem_available",
    "host_free",
    "stop",
)


@st.composite
def domains(draw, name):
    memory = draw(st.sampled_from([4096, 30000, 65536, 200000]))
    arch = draw(st.sampled_from(["x86_64", "x86_64", "x86_32", "arm32"]))
    kernel = {
        "arch": arch,
        "hz": draw(st.sampled_from([100, 250, 300, 1000])),
        "hotplug": {
            "enabled": draw(st.booleans()),
            "auto_online": draw(st.booleans()),
            "section": f"{draw(st.sampled_from([1024, 32768]))} pages",
            "max_added": draw(st.sampled_from([None, "0 pages", f"{65536} pages"])),
        },
        "used_at_boot": f"{draw(st.integers(0, memory // 2))} pages",
        "unpopulated_alloc": draw(st.booleans()),
    }
    for key in ("totalreserve_pages", "floor_balloon", "floor_user"):
        kernel[key] = draw(st.sampled_from(["auto", 0, 100, 3000]))
    if arch in ("x86_32", "arm32"):
        kernel["lowmem"] = f"{draw(st.integers(1, memory))} pages"
    kernel["swap"] = f"{draw(st.sampled_from([0, 0, memory // 4]))} pages"
    kernel["slab_reclaimable"] = f"{draw(st.sampled_from([0, 0, memory // 20]))} pages"
    workloads = draw(
        st.lists(
            st.sampled_from(
                [
                    {"constant": {"anon": f"{memory // 8} pages", "cache": f"{memory // 3} pages"}},
                    {"steps": [{"at": "1s", "anon": f"{memory // 2} pages"}, {"at": "20s", "anon": "0"}]},
                    {"bursts": {"every": "3s", "length": "2s", "anon": ["0", f"{memory // 3} pages"]}},
                    {"periodic": {"period": "10s", "cache": ["0", f"{memory // 2} pages"], "shape": "sine"}},
                ]
            ),
            max_size=3,
        )
    )
    kind = draw(st.sampled_from(["hvm", "hvm", "pv"]))
    balloon = {
        "driver": draw(st.sampled_from(["v5.12", "v5.12", "v5.2", "v5.15", "v5.16", "faulty"])),
        "boot_timeout": draw(st.sampled_from([None, 1])),
        "max_retry_count": draw(st.sampled_from([0, 1, 4])),
        "max_schedule_delay": draw(st.sampled_from([2, 32])),
        "hotplug_unpopulated": draw(st.sampled_from([0, 0, 1])) if kernel["hotplug"]["enabled"] else 0,
    }
    if balloon["driver"] == "faulty":  # squeeze_test's drivers (kernel/fault_drivers.py)
        balloon["fault"] = draw(
            st.sampled_from(
                [
                    {"kind": "ideal", "rate": "20000 pages/s"},
                    {"kind": "hidden-floor", "rate": "20000 pages/s", "limit": f"{memory // 2} pages"},
                    {"kind": "hidden-ceiling", "rate": "5000 pages/s", "limit": f"{memory} pages"},
                    {"kind": "stuck"},
                    {"kind": "intermittent", "rate": "20000 pages/s", "interval": "300ms"},
                ]
            )
        )
    lifecycle = {}
    if draw(st.booleans()):  # what a host manager may do with it, and a start during the run
        lifecycle["dynamic_min"] = f"{memory // draw(st.sampled_from([1, 2, 4]))} pages"
    if draw(st.sampled_from([False, False, True])):
        lifecycle["start"] = f"{draw(st.sampled_from([0, 700, 3000]))}ms"
    return {
        **lifecycle,
        "name": name,
        "type": kind,
        "memory": f"{memory} pages",
        "static_max": f"{memory + draw(st.sampled_from([0, 0, 5000]))} pages",
        "initial_target": draw(st.sampled_from(["absent", f"{memory * 4}KiB", f"{memory * 3}KiB"])),
        "max_pages": f"{memory * draw(st.sampled_from([1, 2]))} pages",
        "kernel": kernel,
        "costs": draw(st.sampled_from(["none", "none", {}, {"xen_page": "1us", "cond_resched": "1ms"}])),
        "workloads": [
            {"name": f"w{i}", "oom_score_adj": draw(st.sampled_from([0, 500, -1000])), **w}
            for i, w in enumerate(workloads)
        ],
        "balloon": balloon,
    }


@st.composite
def events(draw, names, memory):
    out, t = [], 0
    for _ in range(draw(st.integers(0, 12))):
        t += draw(st.sampled_from([0, 1, 500, 2000, 9000]))  # ms
        action = draw(st.sampled_from(ACTIONS))
        domain = draw(st.sampled_from(names))
        pages = draw(st.sampled_from([0, 1, 300, 700, 5000, memory // 2, memory, memory + 40000]))
        ev = {"at": f"{t}ms", "domain": domain}
        if action == "host_free":
            ev = {"at": f"{t}ms", "host_free": pages}
        elif action in ("target", "mem_set"):
            ev[action] = f"{pages * 4}KiB"
        elif action == "alloc_ballooned":
            ev[action] = {"pages": min(pages, 20000), "signal_after": draw(st.sampled_from(["0s", "1s", None]))}
        elif action == "online":
            ev[action] = True
        elif action == "hotplug_unpopulated":
            ev[action] = draw(st.sampled_from(["0", "1", "2"]))
        elif action == "sysfs":
            attr = draw(st.sampled_from(["target_kb", "target", "max_retry_count", "max_schedule_delay"]))
            ev[action] = {attr: draw(st.sampled_from([str(pages * 4), f"{pages}K", "0", "x"]))}
        elif action == "mem_available":
            ev[action] = draw(st.sampled_from(["auto", 0, 100, 10000]))
        elif action == "stop":
            ev[action] = True
        else:
            ev[action] = pages
        out.append(ev)
    return out, t


@st.composite
def scenarios(draw):
    n = draw(st.integers(1, 3))
    doms = [draw(domains(f"d{i}")) for i in range(n)]
    names = [d["name"] for d in doms]
    evs, last = draw(events(names, 65536))
    free = draw(st.sampled_from([0, 1000, 100000]))
    if all("start" in d for d in doms):
        free = max(free, 1000)  # a host has memory: some free when every domain starts later
    return Scenario.model_validate(
        {
            "name": "random",
            "duration": f"{max(last + draw(st.sampled_from([0, 3000, 60000])), 3000)}ms",  # after every start
            "host": {
                "free": f"{free} pages",
                "manager": {"kind": draw(st.sampled_from(MANAGERS.names()))},
            },
            "domains": doms,
            "events": evs,
        }
    )


def run_or_livelock(scenario, **kw):
    try:
        return run(scenario, **kw)
    except SimulationError as err:
        assert "livelock" in str(err), str(err)  # the kernel's own endless loops, nothing else
        return None


@settings(max_examples=150)
@given(scenarios())
def test_pages_are_conserved_at_every_row(scenario):
    result = run_or_livelock(scenario)
    if result is None:
        return
    tl = result.timeline
    extra = {
        d.name: (d.static_max_pages or d.memory) - d.memory if d.type == "pv" and d.kernel.unpopulated_alloc else 0
        for d in scenario.domains
    }
    unpopulated = tl["domain"].astype(str).map(extra).to_numpy(dtype="int64")
    held = ("kernel_pages", "anon_pages", "page_cache", "slab_reclaimable")
    populated = tl["guest_free"] + sum(tl[c] for c in held)
    accounted = populated + tl["balloon_low"] + tl["balloon_high"] + tl["backend_pages"] + tl["offline_pages"]
    assert (accounted + unpopulated == tl["present_pages"]).all()
    # the guest and Xen agree on populated pages: a PoD guest's untouched pages are Xen's PoD entries,
    # backed by its PoD cache (none of these guests has video RAM); a crashed guest has none left
    gone = result.events.loc[result.events["kind"].isin(["domain_destroyed", "domain_stopped"]), "domain"]
    alive = ~tl["domain"].astype(str).isin(gone.astype(str))
    xen_view = tl["dom_pages"] - tl["pod_cache"] + tl["pod_entries"]
    assert (populated == xen_view)[alive].all()
    assert (tl["current_pages"] == xen_view)[alive].all()
    for col in ("guest_free", "balloon_low", "balloon_high", "backend_pages", "offline_pages", "host_free"):
        assert (tl[col] >= 0).all(), col
    for col in ("page_cache", "slab_reclaimable", "swap_pages", "unmet_demand"):
        assert (tl[col] >= 0).all(), col
    swap = tl["domain"].astype(str).map({d.name: d.kernel.swap for d in scenario.domains}).to_numpy(dtype="int64")
    assert (tl["swap_pages"] <= swap).all()
    assert (tl["unmet_demand"] <= tl["demand_pages"]).all()
    assert tl.groupby("domain", observed=True)["oom_count"].apply(lambda c: c.is_monotonic_increasing).all()
    host = result.host
    total = host["host_free"] + host["domain_pages"] + host["other_pages"]
    assert total.nunique() <= 1  # host free + Σ tot_pages (+ other consumers) is constant (no rows: none ran)
    last = tl.groupby("domain", observed=True).tail(1)
    assert last["dom_pages"].sum() == (host["domain_pages"].iloc[-1] if len(host) else 0)


@settings(max_examples=100)
@given(scenarios())
def test_the_steady_turn_shortcut_changes_nothing(scenario):
    fast = run_or_livelock(scenario)
    slow = run_or_livelock(scenario, bulk_iterations=False)
    assert (fast is None) == (slow is None)
    if fast is None:
        return
    for name in ("timeline", "events", "host", "targets"):
        pd.testing.assert_frame_equal(fast.tables[name], slow.tables[name])
    pd.testing.assert_frame_equal(fast.summary, slow.summary)


@settings(max_examples=30)
@given(scenarios())
def test_same_scenario_same_tables(scenario):
    a, b = run_or_livelock(scenario), run_or_livelock(scenario)
    if a is None:
        assert b is None
        return
    for name, frame in a.tables.items():
        pd.testing.assert_frame_equal(frame, b.tables[name])
