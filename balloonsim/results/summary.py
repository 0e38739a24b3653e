"""Tables derived from a timeline: one row per target set, one row per domain.

Both are computed with whole-column operations, so their cost grows with the
number of rows, not with rows times domains.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from balloonsim.units import ns_to_s, pages_to_mib


def target_episodes(timeline: pd.DataFrame) -> pd.DataFrame:
    """One row per target a domain was given, and whether (and when) it was reached.

    An episode starts at a domain's first row and at every row whose
    ``target_pages`` differs from that domain's previous row, and lasts until
    the domain's next episode.  It is reached at its first row with
    ``current_pages == target_pages``.
    """
    order = np.argsort(timeline["domain"].cat.codes.to_numpy(), kind="stable")
    dom = timeline["domain"].cat.codes.to_numpy()[order]
    t = timeline["time_ns"].to_numpy()[order]
    cur = timeline["current_pages"].to_numpy()[order]
    tgt = timeline["target_pages"].to_numpy()[order]
    cause = timeline["cause"].to_numpy()[order]

    n = len(t)  # 0 when no domain ever ran (every start failed): no episodes
    new_domain = np.r_[True, dom[1:] != dom[:-1]][:n]
    starts_episode = new_domain | np.r_[True, tgt[1:] != tgt[:-1]][:n]
    start = np.flatnonzero(starts_episode)
    episode = np.cumsum(starts_episode) - 1
    hits = np.flatnonzero(cur == tgt)
    hit_episodes, first = np.unique(episode[hits], return_index=True)
    first_hit = np.full(len(start), -1)
    first_hit[hit_episodes] = hits[first]
    reached = first_hit >= 0

    last_row = np.r_[start[1:] - 1, n - 1][: len(start)]  # the episode's last row
    domain_ends = np.r_[new_domain[start][1:], True][: len(start)]  # is the next episode another domain's?
    set_ns = t[start]
    reached_ns = np.where(reached, t[np.maximum(first_hit, 0)], -1)
    until_ns = np.where(domain_ends, t[last_row], t[np.minimum(last_row + 1, n - 1)])
    return pd.DataFrame(
        {
            "domain": pd.Categorical.from_codes(dom[start], dtype=timeline["domain"].dtype),
            "set_ns": set_ns,
            "set_s": ns_to_s(set_ns),
            "cause": pd.Categorical(cause[start], dtype=timeline["cause"].dtype),
            "target_pages": tgt[start],
            "start_pages": cur[start],
            "reached": reached,
            "reached_ns": reached_ns,
            "time_to_reach_s": np.where(reached, ns_to_s(reached_ns - set_ns), np.nan),
            "until_ns": until_ns,
            "end_pages": cur[last_row],
        }
    )


def row_durations(timeline: pd.DataFrame) -> np.ndarray:
    """How long each row's state held: until the same domain's next row (0 for its last row)."""
    dom = timeline["domain"].cat.codes.to_numpy()
    order = np.lexsort((np.arange(len(dom)), dom))  # by domain, keeping time order
    t = timeline["time_ns"].to_numpy()[order]
    same_next = np.r_[dom[order][1:] == dom[order][:-1], False]
    held = np.where(same_next, np.r_[t[1:], 0] - t, 0)
    out = np.empty_like(held)
    out[order] = held
    return out


#: timeline causes that ask for a new target: a xenstore write, ``xl mem-set``, a sysfs write
#: (``target_kb``, or ``target`` in bytes, whose cause is ``target`` too)
TARGET_REQUESTS = ("target", "mem_set", "target_kb")


def domain_summary(
    timeline: pd.DataFrame, events: pd.DataFrame, targets: pd.DataFrame, activity: dict[str, dict[str, int]]
) -> pd.DataFrame:
    """One row per domain: where it ended, whether it got there, what it took."""
    domains = timeline["domain"].cat.categories
    by_domain = timeline.groupby("domain")
    last = by_domain.tail(1).set_index("domain").reindex(domains)
    final = targets.groupby("domain").tail(1).set_index("domain").reindex(domains)
    kinds = events.groupby(["domain", "kind"]).size().unstack(fill_value=0)
    kinds = kinds.reindex(index=domains, fill_value=0)

    def kind(name: str) -> pd.Series:
        return kinds[name] if name in kinds.columns else pd.Series(0, index=domains)

    def act(name: str) -> list[int]:
        return [activity.get(str(d), {}).get(name, 0) for d in domains]

    held_s = ns_to_s(row_durations(timeline))
    low_mark = (
        timeline["domain"].astype(str).map(dict(zip(map(str, domains), act("wmark_low_pages"), strict=True)))
    ).to_numpy(dtype="int64")

    def seconds_when(mask: pd.Series | np.ndarray) -> np.ndarray:
        held = pd.Series(np.where(mask, held_s, 0.0))
        return held.groupby(timeline["domain"].to_numpy()).sum().reindex(domains).to_numpy()

    def peak(column: str) -> np.ndarray:
        return by_domain[column].max().reindex(domains).to_numpy()

    # swap that filled and was freed by an OOM kill within one step is in the oom_invoked event only
    oom_swap = events[events["kind"] == "oom_invoked"].groupby("domain")["pages"].max()
    swap_peak = np.nan_to_num(np.fmax(peak("swap_pages"), oom_swap.reindex(domains).to_numpy(dtype=float))).astype(
        "int64"
    )  # a domain that never ran (its start failed) has no rows: 0

    # in back-off: EAGAIN with the retry pending (a delayed work) or the thread asleep until it (a kthread)
    retry_pending = np.zeros(len(timeline), bool)
    if "work_pending" in timeline.columns:
        retry_pending |= timeline["work_pending"].to_numpy(bool)
    if "thread_runs_at" in timeline.columns:  # asleep until a later jiffy (not running, not just woken)
        retry_pending |= timeline["thread_runs_at"].to_numpy() > timeline["jiffies"].to_numpy()
    backoff = (timeline["state"] == "EAGAIN").to_numpy() & retry_pending
    unmet_mib_s = (
        pd.Series(pages_to_mib(timeline["unmet_demand"].to_numpy() * held_s))
        .groupby(timeline["domain"].to_numpy())
        .sum()
    )
    refused, clamped = last_request_refused_or_clamped(timeline, events)
    # the toolstack destroyed it: Xen crashed it (out of PoD memory) or its kernel panicked (the boot wait)
    crashed = kind("domain_destroyed").to_numpy() > 0

    return pd.DataFrame(
        {
            "domain": pd.Categorical(domains, categories=domains),
            "final_current_pages": last["current_pages"].to_numpy(),
            "final_target_pages": last["target_pages"].to_numpy(),
            "final_state": last["state"].astype(str).to_numpy(),
            "target_reached": (last["current_pages"] == last["target_pages"]).to_numpy()
            & ~(refused | clamped | crashed),
            "crashed": crashed,
            "ran": by_domain.size().reindex(domains, fill_value=0).to_numpy() > 0,  # a failed start never did
            "static_max_pages": act("static_max_pages"),  # 0 for a domain that never ran
            "last_target_refused": refused,
            "last_target_clamped": clamped,
            "toolstack_refusals": kind("mem_set_failed").to_numpy(),
            "target_clamps": kind("target_clamped").to_numpy(),
            "final_target_set_s": final["set_s"].to_numpy(),
            "final_target_reached_s": np.where(final["reached"], ns_to_s(final["reached_ns"]), np.nan),
            "time_to_final_target_s": final["time_to_reach_s"].to_numpy(),
            "targets": targets.groupby("domain", observed=False).size().reindex(domains).to_numpy(),
            "targets_reached": targets.groupby("domain", observed=False)["reached"].sum().reindex(domains).to_numpy(),
            "worker_passes": act("passes"),
            "loop_iterations": act("iterations"),
            "pages_out": act("pages_out"),
            "pages_in": act("pages_in"),
            "pages_hotplugged": act("hotplugged"),
            "pod_faults": act("pod_faults"),
            # each worker pass that ends short is an event (a thread's pass with nothing to do is none)
            "eagain_passes": kind("EAGAIN").to_numpy(),
            "wait_passes": kind("WAIT").to_numpy(),
            "cancellations": kind("ECANCELED").to_numpy(),
            # the largest retry_count a worker pass left (1 when it never retried)
            "peak_retry_count": timeline[timeline["cause"] == "work"]
            .groupby("domain", observed=False)["retry_count"]
            .max()
            .reindex(domains)
            .fillna(1)
            .astype("int64")
            .to_numpy(),
            "backoff_s": seconds_when(backoff),
            "min_mem_available": by_domain["mem_available"].min().reindex(domains).to_numpy(),
            # __zone_watermark_ok() (mm/page_alloc.c) fails when free pages <= the mark
            "below_low_watermark_s": seconds_when(timeline["guest_free"] <= low_mark),
            "oom_kills": peak("oom_count"),
            "max_unmet_demand": peak("unmet_demand"),
            "max_unmet_anon": peak("unmet_anon"),
            "max_unmet_cache": peak("unmet_cache"),
            "unmet_demand_mib_s": unmet_mib_s.reindex(domains).to_numpy(),
            "max_swap_pages": swap_peak,
            "balloon_reclaimed": act("reclaimed"),
            "kswapd_reclaimed": act("kswapd_reclaimed"),
            "alloc_failures": kind("alloc_failed").to_numpy(),
            "populate_short": (kind("populate_partial") + kind("populate_refused")).to_numpy(),
        }
    )


def last_target_requests(timeline: pd.DataFrame) -> pd.DataFrame:
    """Each domain's last target request: its ``time_ns`` and ``cause`` (NaN: never asked)."""
    asked = timeline[timeline["cause"].isin(TARGET_REQUESTS)]
    last = asked.groupby("domain").tail(1).set_index("domain")[["time_ns", "cause"]]
    return last.reindex(timeline["domain"].cat.categories)


def last_request_refused_or_clamped(timeline: pd.DataFrame, events: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per domain: was its last target request refused by the toolstack; was a target clamped since?

    libxl refuses ``xl mem-set`` at the request (event ``mem_set_failed``, same instant); the
    no-hotplug reserve_additional_memory() clamps the target at a later worker pass (event
    ``target_clamped``).  A domain never asked counts every clamp of its initial target.
    """
    asked = last_target_requests(timeline)
    asked_ns = asked["time_ns"].fillna(-1)
    refused_ns = latest_event_ns(events, "mem_set_failed", asked.index)
    clamped_ns = latest_event_ns(events, "target_clamped", asked.index)
    refused = (asked["cause"].astype(str) == "mem_set") & (refused_ns == asked_ns)
    return refused.to_numpy(), (clamped_ns >= asked_ns).to_numpy()


def latest_event_ns(events: pd.DataFrame, kind: str, domains: pd.Index) -> pd.Series:
    """The time of each domain's last event of ``kind`` (NaN: none)."""
    of_kind = events[events["kind"] == kind]
    return of_kind.groupby(of_kind["domain"].astype(str))["time_ns"].max().reindex(domains)


#: how worst_first orders the domains, for people
WORST_FIRST_ORDER = "crashed, most OOM kills, most unmet demand (MiB·s), target not reached, farthest from target"


def worst_first(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary's rows, the guests that fared worst first (WORST_FIRST_ORDER); ties keep the
    scenario's order."""
    distance = (summary["final_target_pages"] - summary["final_current_pages"]).abs()
    crashed = summary["crashed"] if "crashed" in summary.columns else False
    keys = pd.DataFrame(
        {
            "crashed": crashed,
            "oom": summary["oom_kills"],
            "unmet": summary["unmet_demand_mib_s"],
            "missed": ~summary["target_reached"].astype(bool),
            "distance": distance,
        }
    )
    # several keys: pandas sorts them with a stable lexsort
    order = keys.sort_values(["crashed", "oom", "unmet", "missed", "distance"], ascending=False).index
    return summary.loc[order]


def host_needed_reached_s(host: pd.DataFrame, needed: int | None) -> float | None:
    """When host free memory first reached ``needed`` pages (None: never, or nothing needed)."""
    if not needed or not len(host):
        return None
    hit = host["host_free"].to_numpy() >= needed
    return float(host["time_s"].to_numpy()[hit.argmax()]) if hit.any() else None
