"""How squeeze_test's simulated balloon drivers move: pure rules, no SimPy.

squeezed's own test (xen-api ``ocaml/squeezed/test/squeeze_test.ml``)
replaces each guest by a scripted driver that moves its memory towards the
target at a fixed rate, with a fault of its kind (a hidden floor or ceiling, a
dead driver, a driver that stalls every other interval).  These are its rules,
in whatever integer unit the caller uses (KiB in ``managers.squeeze_test``,
pages in a simulator's fault driver) and float seconds, computed as upstream
computes them: ``trunc(dt * rate)`` of IEEE doubles, so a step of 0.1 s at 100
KiB/s is often 9, not 10 (0.3 - 0.2 = 0.09999999999999998).

Each rule gives the signed change of ``actual`` for one update:
``rule.delta(target, actual, inaccuracy, t_prev, dt)``, ``t_prev`` the time of
the previous update and ``dt`` the time since it.  The caller applies it
(upstream refuses a rise larger than the host's free memory).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def basic_delta(rate: float, dt: float, target: int, actual: int, inaccuracy: int) -> int:
    """A driver moving at ``rate`` per second for ``dt`` seconds towards ``target``; it stops
    ``inaccuracy`` short of it (``compute_memory_actual_delta``)."""
    max_change = math.trunc(dt * rate)  # Int64.of_float (time *. rate)
    sign = -1 if actual > target else 1
    distance = max(0, abs(target - actual) - inaccuracy)
    return sign * min(distance, max_change)


@dataclass(frozen=True)
class Ideal:
    """``idealised_vm``: always moves at ``rate``."""

    rate: float

    def delta(self, target: int, actual: int, inaccuracy: int, t_prev: float, dt: float) -> int:
        return basic_delta(self.rate, dt, target, actual, inaccuracy)


@dataclass(frozen=True)
class HiddenFloor:
    """``idealised_vm_with_limit``: cannot go below ``floor``.  A fall that would end at or under
    the floor ends exactly on it (so a domain already below it jumps up to it)."""

    rate: float
    floor: int

    def delta(self, target: int, actual: int, inaccuracy: int, t_prev: float, dt: float) -> int:
        step = basic_delta(self.rate, dt, target, actual, inaccuracy)
        proposed = actual + step
        if proposed > actual or proposed > self.floor:
            return step
        return self.floor - actual


@dataclass(frozen=True)
class HiddenCeiling:
    """``idealised_vm_with_upper_limit``: cannot reach ``ceiling``.  A move that would end at or
    above it ends exactly on it (so a domain above it jumps down to it, even when still)."""

    rate: float
    ceiling: int

    def delta(self, target: int, actual: int, inaccuracy: int, t_prev: float, dt: float) -> int:
        step = basic_delta(self.rate, dt, target, actual, inaccuracy)
        if actual + step < self.ceiling:
            return step
        return self.ceiling - actual


@dataclass(frozen=True)
class Stuck:
    """``stuck_vm``: a dead driver, never moves."""

    def delta(self, target: int, actual: int, inaccuracy: int, t_prev: float, dt: float) -> int:
        return 0


@dataclass(frozen=True)
class IntermittentlyStuck:
    """``intermittently_stuck_vm``: moves at ``rate`` for ``interval`` seconds, then stalls for
    ``interval`` seconds, from t=0.  An update moves only if the driver is awake both at the
    previous update and at ``t_prev + dt`` (as upstream adds them): a step across a boundary is lost."""

    rate: float
    interval: float

    def awake(self, t: float) -> bool:
        return math.trunc(t / self.interval) % 2 == 0

    def delta(self, target: int, actual: int, inaccuracy: int, t_prev: float, dt: float) -> int:
        useful = dt if self.awake(t_prev) and self.awake(t_prev + dt) else 0.0
        return basic_delta(self.rate, useful, target, actual, inaccuracy)


#: any of the rules above
FaultRule = Ideal | HiddenFloor | HiddenCeiling | Stuck | IntermittentlyStuck
