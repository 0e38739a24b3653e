"""Shared helpers: small scenarios built in code, and runs of them."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from balloonsim.engine import Simulation
from balloonsim.kernel.mm import GuestMemory
from balloonsim.results.result import Result
from balloonsim.scenario.model import Scenario

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True)
settings.load_profile("default")

GiB = 262144  # pages
MiB = 256
#: the oracle harness's guest: no reserves below which the balloon or a program may not allocate
ZERO_RESERVES = {"totalreserve_pages": 0, "floor_balloon": 0, "floor_user": 0}

#: test_compare's and test_baseline's scenario (test_compare's docstring derives its runs)
RETRY = """\
name: retry
duration: 30s
host: {free: 0}
domains:
  - name: g
    memory: 1GiB
    initial_target: absent
    kernel: {totalreserve_pages: 0, floor_balloon: 0, floor_user: 0}
    costs: none
events:
  - {at: 1s, domain: g, target: 512MiB}
  - {at: 2s, host_free: 0}
  - {at: 10s, domain: g, target: 1GiB}
  - {at: 15s, host_free: 1GiB}
"""


def make_scenario(
    events: list[dict[str, Any]] | None = None,
    *,
    domain: dict[str, Any] | None = None,
    host: dict[str, Any] | None = None,
    duration: str = "100s",
    domains: list[dict[str, Any]] | None = None,
) -> Scenario:
    """One guest "g" (1 GiB, all free, oracle-like zero reserves, work free of cost) unless told otherwise."""
    base = {
        "name": "g",
        "memory": "1GiB",
        "initial_target": "absent",
        "kernel": dict(ZERO_RESERVES),
        "costs": "none",
    }
    doms = domains if domains is not None else [_merge(base, domain or {})]
    return Scenario.model_validate(
        {
            "name": "t",
            "duration": duration,
            "host": host or {"free": "0 pages"},
            "domains": doms,
            "events": [
                ({"domain": "g", **e} if "host_free" not in e and "domain" not in e else e) for e in events or []
            ],
        }
    )


def _merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def make_mm(**kw: Any) -> GuestMemory:
    """A guest's memory of 1000 free lowmem pages, reserves and floors 0 unless told otherwise."""
    args: dict[str, Any] = dict(
        free_low=1000, free_high=0, managed=1000, totalreserve_pages=0, wmark_low_total=0, floor_balloon=0, floor_user=0
    )
    args.update(kw)
    return GuestMemory(**args)


def run(scenario: Scenario, **kw: Any) -> Result:
    return Simulation(scenario, **kw).run(progress=False)


def work_rows(result: Result, domain: str = "g") -> list[tuple]:
    """(time_s, state, schedule_delay, retry_count, work_pending, work_expiry) of each worker pass."""
    tl = result.domain(domain)
    w = tl[tl["cause"] == "work"]
    return [
        (r.time_s, str(r.state), r.schedule_delay, r.retry_count, bool(r.work_pending), r.work_expiry)
        for r in w.itertuples()
    ]


@pytest.fixture
def tmp_results(tmp_path):
    return tmp_path / "results"
