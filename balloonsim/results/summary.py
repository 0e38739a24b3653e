"""Tables derived from a timeline: one row per target set, one row per domain."""

from __future__ import annotations

import numpy as np
import pandas as pd

from balloonsim.units import NS_PER_S


def target_episodes(timeline: pd.DataFrame) -> pd.DataFrame:
    """One row per target a domain was given, and whether (and when) it was reached.

    An episode starts at a row whose ``target_pages`` differs from the
    domain's previous row (the first row starts one too) and lasts until the
    next such row.  It is reached at its first row with ``current_pages ==
    target_pages``.
    """
    parts = []
    for domain, rows in timeline.groupby("domain", observed=True, sort=False):
        t = rows["time_ns"].to_numpy()
        cur = rows["current_pages"].to_numpy()
        tgt = rows["target_pages"].to_numpy()
        cause = rows["cause"].astype(str).to_numpy()
        start = np.flatnonzero(np.r_[True, tgt[1:] != tgt[:-1]])
        episode = np.cumsum(np.r_[True, tgt[1:] != tgt[:-1]]) - 1
        hits = np.flatnonzero(cur == tgt)
        first_hit = np.full(len(start), -1)
        hit_episodes, where = np.unique(episode[hits], return_index=True)
        first_hit[hit_episodes] = hits[where]
        reached = first_hit >= 0
        set_ns = t[start]
        reached_ns = np.where(reached, t[np.maximum(first_hit, 0)], -1)
        end_ns = np.r_[set_ns[1:], t[-1]]
        parts.append(
            pd.DataFrame(
                {
                    "domain": domain,
                    "set_ns": set_ns,
                    "set_s": set_ns / NS_PER_S,
                    "cause": cause[start],
                    "target_pages": tgt[start],
                    "start_pages": cur[start],
                    "reached": reached,
                    "reached_ns": reached_ns,
                    "time_to_reach_s": np.where(reached, (reached_ns - set_ns) / NS_PER_S, np.nan),
                    "until_ns": end_ns,
                    "end_pages": cur[np.r_[start[1:] - 1, len(t) - 1]],
                }
            )
        )
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    out["domain"] = pd.Categorical(out["domain"], categories=timeline["domain"].cat.categories)
    return out


def domain_summary(
    timeline: pd.DataFrame, events: pd.DataFrame, targets: pd.DataFrame, activity: dict[str, dict[str, int]]
) -> pd.DataFrame:
    """One row per domain: where it ended, whether it got there, what it took."""
    rows = []
    for domain, tl in timeline.groupby("domain", observed=True, sort=False):
        last = tl.iloc[-1]
        work = tl[tl["cause"] == "work"]
        states = work["state"].astype(str).value_counts()
        ep = targets[targets["domain"] == domain]
        final = ep.iloc[-1]
        ev = events[events["domain"] == domain]["kind"].astype(str).value_counts()
        c = activity.get(str(domain), {})
        rows.append(
            {
                "domain": domain,
                "final_current_pages": int(last["current_pages"]),
                "final_target_pages": int(last["target_pages"]),
                "final_state": str(last["state"]),
                "target_reached": bool(last["current_pages"] == last["target_pages"]),
                "final_target_set_s": float(final["set_s"]),
                "final_target_reached_s": float(final["reached_ns"] / 1e9) if final["reached"] else np.nan,
                "time_to_final_target_s": float(final["time_to_reach_s"]),
                "targets": int(len(ep)),
                "targets_reached": int(ep["reached"].sum()),
                "worker_passes": int(c.get("passes", len(work))),
                "loop_iterations": int(c.get("iterations", 0)),
                "pages_out": int(c.get("pages_out", 0)),
                "pages_in": int(c.get("pages_in", 0)),
                "pages_hotplugged": int(c.get("hotplugged", 0)),
                "eagain_passes": int(states.get("EAGAIN", 0)),
                "wait_passes": int(states.get("WAIT", 0)),
                "cancellations": int(states.get("ECANCELED", 0)),
                "max_retry_count": int(work["retry_count"].max()) if len(work) else 1,
                "min_mem_available": int(tl["mem_available"].min()),
                "alloc_failures": int(ev.get("alloc_failed", 0)),
                "populate_short": int(ev.get("populate_partial", 0) + ev.get("populate_refused", 0)),
            }
        )
    out = pd.DataFrame(rows)
    out["domain"] = pd.Categorical(out["domain"], categories=timeline["domain"].cat.categories)
    return out
