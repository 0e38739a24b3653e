"""The summary table and the console: every column against a value derived by hand.

The timelines and events here are built by hand with the dtypes build_result gives them
(categorical domain/cause/state, int64 pages, bool work_pending), so each expected value can
be worked out from the rows in a comment.  The end-to-end checks at the bottom run tiny
scenarios.
"""

import math

import numpy as np
import pandas as pd
import pytest

from balloonsim.cli import SUMMARY_ROWS, render_summary
from balloonsim.results.result import HOST, Result
from balloonsim.results.summary import WORST_FIRST_ORDER, domain_summary, target_episodes, worst_first
from conftest import GiB, MiB, make_scenario, run

S = 1_000_000_000
#: the timeline's state categories: NONE before the first pass, then balloon_process()'s BP_* states
STATES = ("NONE", "DONE", "WAIT", "EAGAIN", "ECANCELED")
DOMAINS = ["a", "b", "c", "d", "e"]
#: every column a hand-built row carries, with the value it has unless told otherwise
ROW_DEFAULTS = {
    "current_pages": 1000,
    "target_pages": 1000,
    "state": "NONE",
    "work_pending": False,
    "retry_count": 1,
    "guest_free": 500,
    "mem_available": 600,
    "oom_count": 0,
    "unmet_anon": 0,
    "unmet_cache": 0,
    "swap_pages": 0,
}

# Domain a: a target that backs off twice, then is reached; a WAIT pass; an OOM kill.
# Its low watermark is 100 pages.  (t in seconds)
A_ROWS = [
    dict(t=0, cause="init"),
    dict(t=1, cause="target", target_pages=800, work_pending=True),
    dict(
        t=1, cause="work", current_pages=900, target_pages=800, state="EAGAIN", work_pending=True, retry_count=2,
        guest_free=100, mem_available=150, unmet_anon=30, unmet_cache=50,
    ),
    dict(
        t=3, cause="work", current_pages=850, target_pages=800, state="EAGAIN", work_pending=True, retry_count=3,
        guest_free=99, mem_available=120, unmet_cache=70, swap_pages=5,
    ),
    dict(
        t=7, cause="work", current_pages=800, target_pages=800, state="DONE", guest_free=100, mem_available=200,
        oom_count=1, unmet_anon=40, swap_pages=3,
    ),
    dict(t=8, cause="target", current_pages=800, target_pages=1200, state="DONE", work_pending=True, oom_count=1,
         unmet_anon=40, swap_pages=3, mem_available=300),
    dict(t=8, cause="work", current_pages=900, target_pages=1200, state="WAIT", oom_count=1, unmet_anon=40,
         swap_pages=3, mem_available=300),
    dict(t=10, cause="end", current_pages=900, target_pages=1200, state="WAIT", oom_count=1, unmet_anon=40,
         swap_pages=3, mem_available=300),
]  # fmt: skip
# Domain b: `xl mem-set` above static-max at 2 s, refused by libxl: the target stays 1000.
B_ROWS = [dict(t=0, cause="init"), dict(t=2, cause="mem_set"), dict(t=10, cause="end")]
# Domain c: asked for more than it has, without hotplug: the worker pass clamps the target
# back to current_pages + target_unpopulated (= 1000) and returns BP_ECANCELED.
C_ROWS = [
    dict(t=0, cause="init"),
    dict(t=1, cause="target", target_pages=1500, work_pending=True),
    dict(t=1, cause="work", state="ECANCELED"),
    dict(t=10, cause="end", state="ECANCELED"),
]
# Domain d: a refused mem-set at 2 s, then, at the same instant, a xenstore write it reaches.
D_ROWS = [
    dict(t=0, cause="init"),
    dict(t=2, cause="mem_set"),
    dict(t=2, cause="target", target_pages=900, work_pending=True),
    dict(t=2, cause="work", current_pages=900, target_pages=900, state="DONE"),
    dict(t=10, cause="end", current_pages=900, target_pages=900, state="DONE"),
]
# Domain e: clamped at 1 s, then a sysfs target_kb write at 5 s that it reaches.
E_ROWS = [
    dict(t=0, cause="init"),
    dict(t=1, cause="target", target_pages=1500, work_pending=True),
    dict(t=1, cause="work", state="ECANCELED"),
    dict(t=5, cause="target_kb", target_pages=800, state="ECANCELED", work_pending=True),
    dict(t=5, cause="work", current_pages=800, target_pages=800, state="DONE"),
    dict(t=10, cause="end", current_pages=800, target_pages=800, state="DONE"),
]
ROWS = {"a": A_ROWS, "b": B_ROWS, "c": C_ROWS, "d": D_ROWS, "e": E_ROWS}

# (t, domain, kind, pages, value): a worker pass that ends short is an event of its state (as the
# engine records them), the failed allocations and short populates are counted, and (host) events
# belong to no domain.
EVENTS = [
    (1, "a", "EAGAIN", -1, -1),
    (1, "a", "alloc_failed", 512, 100),
    (1, "c", "target_clamped", 1500, 1000),
    (1, "c", "ECANCELED", -500, 1),
    (1, "e", "target_clamped", 1500, 1000),
    (1, "e", "ECANCELED", -500, 1),
    (8, "a", "WAIT", 300, 1),
    (2, "b", "mem_set_failed", 2000, -1),
    (2, "d", "mem_set_failed", 2000, -1),
    (3, "a", "EAGAIN", -1, -1),
    (3, "a", "alloc_failed", 512, 50),
    (8, "a", "populate_partial", 512, 100),
    (9, "a", "populate_refused", 412, 0),
    (9, HOST, "host_free", 5, -1),
]
ACTIVITY = {
    "a": {"passes": 4, "iterations": 9, "pages_out": 200, "pages_in": 100, "hotplugged": 7, "reclaimed": 11,
          "kswapd_reclaimed": 22, "wmark_low_pages": 100},
    "b": {"wmark_low_pages": 50},
    "c": {"passes": 1, "iterations": 1, "wmark_low_pages": 50},
    "d": {"passes": 1, "iterations": 1, "pages_out": 100, "wmark_low_pages": 50},
    "e": {"passes": 2, "iterations": 2, "pages_out": 200, "wmark_low_pages": 50},
}  # fmt: skip


def hand_timeline(rows_by_domain: dict[str, list[dict]]) -> pd.DataFrame:
    """The rows in time order (a domain's rows keep their order), typed as build_result types them."""
    rows = [
        {**ROW_DEFAULTS, **row, "domain": name, "time_ns": row["t"] * S}
        for name, rows in rows_by_domain.items()
        for row in rows
    ]
    frame = pd.DataFrame(rows).sort_values("time_ns", kind="stable").reset_index(drop=True)
    causes = ["init", "work", "end", *dict.fromkeys(c for c in frame["cause"] if c not in ("init", "work", "end"))]
    return pd.DataFrame(
        {
            "time_ns": frame["time_ns"].astype("int64"),
            "time_s": frame["time_ns"] / S,
            "domain": pd.Categorical(frame["domain"], categories=list(rows_by_domain)),
            "cause": pd.Categorical(frame["cause"], categories=causes),
            **{c: frame[c].astype("int64") for c in ("current_pages", "target_pages", "retry_count")},
            "state": pd.Categorical(frame["state"], categories=STATES),
            "work_pending": frame["work_pending"].astype(bool),
            **{c: frame[c].astype("int64") for c in ("guest_free", "mem_available", "swap_pages")},
            "unmet_demand": (frame["unmet_anon"] + frame["unmet_cache"]).astype("int64"),
            "unmet_anon": frame["unmet_anon"].astype("int64"),
            "unmet_cache": frame["unmet_cache"].astype("int64"),
            "oom_count": frame["oom_count"].astype("int64"),
        }
    )


def hand_events(events: list[tuple], domains: list[str]) -> pd.DataFrame:
    kinds = list(dict.fromkeys(e[2] for e in events))
    return pd.DataFrame(
        {
            "time_ns": np.array([e[0] * S for e in events], dtype=np.int64),
            "time_s": np.array([float(e[0]) for e in events]),
            "domain": pd.Categorical([e[1] for e in events], categories=[*domains, HOST]),
            "kind": pd.Categorical([e[2] for e in events], categories=kinds),
            "pages": np.array([e[3] for e in events], dtype=np.int64),
            "value": np.array([e[4] for e in events], dtype=np.int64),
            "message": pd.Series([""] * len(events), dtype="string"),
        }
    )


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    timeline = hand_timeline(ROWS)
    s = domain_summary(timeline, hand_events(EVENTS, DOMAINS), target_episodes(timeline), ACTIVITY)
    return s.set_index(s["domain"].astype(str))


def test_domain_a_every_column(summary):
    a = summary.loc["a"]
    # the last row: 900 of 1200, the WAIT pass's state; never refused or clamped
    assert (a["final_current_pages"], a["final_target_pages"], a["final_state"]) == (900, 1200, "WAIT")
    assert not a["target_reached"] and not a["last_target_refused"] and not a["last_target_clamped"]
    assert (a["toolstack_refusals"], a["target_clamps"]) == (0, 0)
    # targets: 1000 at 0 s (reached at once), 800 at 1 s (reached at 7 s), 1200 at 8 s (never)
    assert (a["targets"], a["targets_reached"]) == (3, 2)
    assert a["final_target_set_s"] == 8.0
    assert math.isnan(a["final_target_reached_s"]) and math.isnan(a["time_to_final_target_s"])
    # the activity counters are the driver's own, passed through
    assert (a["worker_passes"], a["loop_iterations"], a["pages_out"], a["pages_in"]) == (4, 9, 200, 100)
    assert (a["pages_hotplugged"], a["balloon_reclaimed"], a["kswapd_reclaimed"]) == (7, 11, 22)
    # the passes that ended short: EAGAIN at 1 and 3 s, WAIT at 8 s (a WAIT is no EAGAIN)
    assert (a["eagain_passes"], a["wait_passes"], a["cancellations"]) == (2, 1, 0)
    # retry_count after the passes: 2, 3, then 1 and 1: the peak is 3 (the last and the least are 1)
    assert a["peak_retry_count"] == 3
    # EAGAIN with the worker pending: 1 s -> 3 s and 3 s -> 7 s
    assert a["backoff_s"] == 2.0 + 4.0
    assert a["min_mem_available"] == 120  # the pass at 3 s
    # guest_free <= 100 (the low mark): 100 at 1 s (held 2 s), 99 at 3 s (4 s), 100 at 7 s (1 s)
    assert a["below_low_watermark_s"] == 2.0 + 4.0 + 1.0
    assert a["oom_kills"] == 1
    # unmet anon + cache per row: 30+50 at 1 s, 0+70 at 3 s, 40+0 from 7 s: the peaks are at
    # different rows, so the total's peak (80) is not the sum of the parts' (40 + 70)
    assert (a["max_unmet_demand"], a["max_unmet_anon"], a["max_unmet_cache"]) == (80, 40, 70)
    # pages x seconds held: 80 x 2 + 70 x 4 + 40 x 1 (7 -> 8 s) + 40 x 0 (the 8 s target row)
    # + 40 x 2 (8 -> 10 s) = 560; a page is 1/256 MiB
    assert a["unmet_demand_mib_s"] == 560 / 256
    assert a["max_swap_pages"] == 5
    assert a["alloc_failures"] == 2
    assert a["populate_short"] == 1 + 1  # one partial, one refused


def test_a_refused_mem_set_is_not_reached(summary):
    b = summary.loc["b"]
    # current == target == 1000 at the end, but the target asked for at 2 s was refused
    assert b["final_current_pages"] == b["final_target_pages"] == 1000
    assert not b["target_reached"] and b["last_target_refused"] and not b["last_target_clamped"]
    assert (b["toolstack_refusals"], b["target_clamps"]) == (1, 0)
    # the one episode is the boot target, met at 0 s
    assert (b["targets"], b["targets_reached"], b["final_target_reached_s"]) == (1, 1, 0.0)
    # never a worker pass: no retry, retry_count 1; guest_free 500 > 50: never below the mark
    assert (b["peak_retry_count"], b["below_low_watermark_s"], b["backoff_s"]) == (1, 0.0, 0.0)


def test_a_clamped_target_is_not_reached(summary):
    c = summary.loc["c"]
    # the pass at 1 s set target 1500 -> 1000 == current: equal, but only because it gave up
    assert c["final_current_pages"] == c["final_target_pages"] == 1000 and c["final_state"] == "ECANCELED"
    assert not c["target_reached"] and c["last_target_clamped"] and not c["last_target_refused"]
    assert (c["toolstack_refusals"], c["target_clamps"], c["cancellations"]) == (0, 1, 1)
    # episodes: 1000 (0 s, met), 1500 (1 s, never), 1000 (1 s, the clamp, met at once)
    assert (c["targets"], c["targets_reached"], c["final_target_set_s"]) == (3, 2, 1.0)


def test_only_the_last_request_decides(summary):
    d, e = summary.loc["d"], summary.loc["e"]
    # d: the refused mem-set and the accepted write share 2 s; the write came last
    assert d["target_reached"] and not d["last_target_refused"] and d["toolstack_refusals"] == 1
    assert d["time_to_final_target_s"] == 0.0 and d["final_target_reached_s"] == 2.0
    # e: clamped at 1 s, then a sysfs target_kb write at 5 s, reached in the same instant
    assert e["target_reached"] and not e["last_target_clamped"] and e["target_clamps"] == 1


def test_worst_first_orders_by_oom_unmet_missed_distance():
    summary = pd.DataFrame(
        {
            "domain": list("pqrstu"),
            "oom_kills": [0, 0, 0, 0, 2, 0],
            "unmet_demand_mib_s": [0.0, 5.0, 0.0, 0.0, 1.0, 0.0],
            "target_reached": [True, True, False, True, False, True],
            "final_target_pages": [100, 100, 100, 100, 100, 100],
            "final_current_pages": [100, 100, 100, 300, 100, 90],
        }
    )
    # t: 2 OOM kills; q: 5 MiB·s unmet; r: not reached (refused, distance 0); then s (200
    # pages away) before u (10 away); p last
    assert list(worst_first(summary)["domain"]) == list("tqrsup")


def summary_row(name: str, **values) -> dict:
    """A summary row of a domain that reached 1 GiB and suffered nothing, unless told otherwise."""
    row = {
        "domain": name, "final_current_pages": GiB, "final_target_pages": GiB, "final_state": "DONE",
        "target_reached": True, "last_target_refused": False, "last_target_clamped": False,
        "time_to_final_target_s": 1.5, "backoff_s": 0.0, "cancellations": 0, "oom_kills": 0,
        "min_mem_available": 512 * MiB, "max_unmet_anon": 0, "max_unmet_cache": 0, "unmet_demand_mib_s": 0.0,
    }  # fmt: skip
    return {**row, **values}


def console(rows: list[dict]) -> list[str]:
    """render_summary's table lines (the header line and blank line dropped)."""
    summary = pd.DataFrame(rows)
    meta = {"scenario": "t", "domains": len(rows), "duration_ns": 10 * S, "timeline_rows": 1, "wall_s": 0.1}
    result = Result(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), summary, meta)
    return render_summary(result).splitlines()[2:]


def test_console_says_why_a_target_was_not_reached():
    lines = console(
        [
            summary_row("ok"),
            summary_row("refused", target_reached=False, last_target_refused=True),
            summary_row("clamped", target_reached=False, last_target_clamped=True, final_state="ECANCELED"),
            summary_row("short", target_reached=False, final_current_pages=GiB - 256),
        ]
    )
    reached = {line.split()[0]: line for line in lines[1:]}
    assert reached["ok"].split()[5:8] == ["DONE", "yes", "1.5s"]  # after name, "1024 MiB" twice
    assert reached["refused"].split()[6:9] == ["no", "(refused)", "-"]
    assert reached["clamped"].split()[5:9] == ["ECANCELED", "no", "(clamped)", "-"]
    assert reached["short"].split()[1:3] == ["1023", "MiB"]  # 1 GiB - 256 pages = 1023 MiB
    assert reached["short"].split()[6:8] == ["no", "-"]
    for name in ("refused", "clamped", "short"):  # no time to a target not reached
        assert "1.5s" not in reached[name]


def test_console_keeps_columns_aligned_for_wide_values():
    huge = 10**10 * 256  # 10,000,000,000 MiB in pages: a 14-character "10000000000 MiB"
    lines = console(
        [
            summary_row("a-guest-with-a-rather-long-name", final_current_pages=huge, max_unmet_anon=huge),
            summary_row("b", max_unmet_cache=GiB),
        ]
    )
    header = lines[0]
    # every right-aligned column ends where its header ends, on every line
    for title in ("current", "target", "min avail", "max anon unmet", "max cache unmet"):
        end = header.index(title) + len(title)
        for line in lines[1:]:
            assert line[end - 1] != " " and line[end : end + 2] in ("  ", ""), (title, line)
    for title in ("state", "reached"):  # left-aligned: every cell starts where its header starts
        start = header.index(title)
        for line in lines[1:]:
            assert line[start - 2 : start] == "  " and line[start] != " ", (title, line)
    assert lines[1].split()[1] == "10000000000" and lines[2].split()[-2] == "1024"


def test_console_shows_anon_and_cache_unmet_apart():
    line = console([summary_row("g", max_unmet_anon=3 * MiB, max_unmet_cache=5 * MiB)])[1]
    assert line.split()[-4:] == ["3", "MiB", "5", "MiB"]  # anonymous, then page cache


def test_console_lists_the_worst_first_past_summary_rows():
    rows = [summary_row(f"g{i:02}") for i in range(SUMMARY_ROWS + 6)]
    rows[-1] = summary_row("killed", oom_kills=1)  # the last in file order
    lines = console(rows)
    assert lines[1].split()[0] == "killed"
    assert len(lines) == 1 + SUMMARY_ROWS + 2
    assert lines[-2] == "... and 6 more domains, not shown (all in summary.parquet)"
    assert lines[-1] == f"rows ordered worst first: {WORST_FIRST_ORDER}"


def test_console_keeps_scenario_order_when_all_fit():
    rows = [summary_row("first"), summary_row("second", oom_kills=3)]
    assert [line.split()[0] for line in console(rows)[1:]] == ["first", "second"]


# -- end to end: tiny scenarios ----------------------------------------------------------------


def test_mem_set_above_static_max_is_refused_and_not_reached():
    s = make_scenario(
        [{"at": "1s", "mem_set": "2GiB"}], domain={"initial_target": "1GiB", "static_max": "1GiB"}, duration="5s"
    )
    r = run(s)
    row = r.summary.iloc[0]
    # libxl_set_memory_target(): a new target above static-max fails; the target stays 1 GiB
    assert row["final_current_pages"] == row["final_target_pages"] == GiB
    assert r.events[r.events["kind"] == "mem_set_failed"]["pages"].tolist() == [2 * GiB]
    assert not row["target_reached"] and row["last_target_refused"] and row["toolstack_refusals"] == 1


def test_a_no_hotplug_guest_asked_above_its_memory_is_clamped():
    s = make_scenario(
        [{"at": "1s", "target": "1536MiB"}],
        # static-max = memory = the initial target: xen-balloon's target_diff is 0 and nothing is
        # ballooned at boot, so the guest is asked for 1.5 GiB itself
        domain={"initial_target": "1GiB"},
        host={"free": "4GiB"},
        duration="5s",
    )
    r = run(s)
    row = r.summary.iloc[0]
    # nothing ballooned: balloon_process() calls reserve_additional_memory(), whose no-hotplug
    # build sets target_pages = current_pages + target_unpopulated (1 GiB) and cancels
    assert row["final_current_pages"] == row["final_target_pages"] == GiB
    assert not row["target_reached"] and row["last_target_clamped"] and row["target_clamps"] == 1
    clamp = r.events[r.events["kind"] == "target_clamped"].iloc[0]
    assert (clamp["pages"], clamp["value"]) == (1536 * MiB, GiB)


def test_the_console_lists_an_oom_killed_guest_first_among_30():
    idle = {"memory": "256MiB", "initial_target": "absent", "costs": "none"}
    domains = [{"name": f"idle{i:02}", **idle} for i in range(29)]
    # 400 MiB of anonymous memory in a 256 MiB guest without swap: the OOM killer takes it
    domains.append({**idle, "name": "hog", "workloads": [{"name": "big", "constant": {"anon": "400MiB"}}]})
    r = run(make_scenario(domains=domains, duration="2s"))
    hog = r.summary.iloc[-1]
    # no restart_after: one kill, and the killed task's whole 400 MiB stays unmet
    assert (hog["oom_kills"], hog["max_unmet_anon"], hog["max_unmet_cache"]) == (1, 400 * MiB, 0)
    lines = render_summary(r).splitlines()
    assert lines[3].split()[0] == "hog"  # after the run line, a blank line and the header
    assert "... and 6 more domains, not shown (all in summary.parquet)" in lines
