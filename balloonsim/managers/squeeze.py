"""squeezed's policy and control loop (xen-api ``ocaml/squeezed/lib/squeeze.ml``), without SimPy.

Everything is in KiB, in integers, as upstream's int64s; times are float
seconds.  The pieces, in upstream's order:

* predicates on one domain: ``direction``, ``has_hit_target``, ``min_freeable``, ``range_of``;
* ``StucknessMonitor``: a driver that has made no progress towards its target for
  more than ``stuck_after`` seconds is stuck (the clock runs from its last progress
  or from its first observation in this call);
* ``compute_target_adjustments``: the ``Proportional`` policy, every domain at the
  same fraction of its dynamic range;
* ``Squeezer.one_iteration``: one decision, with the two-phase split (free first,
  allocate only when nothing is left to free);
* ``change_host_free_memory``: the control loop, written once as a generator that
  yields the seconds it wants to wait (upstream's ``io.wait 1.``) and is resumed
  with nothing, so a scripted harness (``managers.squeeze_test``) and a SimPy daemon
  (``managers.squeezed``) drive the same code;
* the entry points ``free_memory``, ``free_memory_range``, ``balance_memory``,
  ``is_host_memory_unbalanced``.

The loop's failures are exceptions, as upstream's: ``CannotFreeThisMuchMemory``
and ``DomainsRefusedToCooperate``, and ours, ``IterationLimit`` (upstream's loop
has no bound).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar, Literal, Protocol

#: squeeze.ml's fistpoints: test switches that break a safeguard on purpose
Fistpoint = Literal["DisableTwoPhaseTargetSets", "DisableInaccuracyCompensation"]
FISTPOINTS: tuple[Fistpoint, ...] = ("DisableTwoPhaseTargetSets", "DisableInaccuracyCompensation")

#: ``Stuckness_monitor.assume_balloon_driver_stuck_after`` (seconds)
ASSUME_BALLOON_DRIVER_STUCK_AFTER = 5.0

#: the loop's wait, upstream's ``io.wait 1.`` (seconds)
WAIT = 1.0

#: a control loop: yields seconds to wait; returns its entry point's value
Loop = Generator[float, None, int | None]


@dataclass(frozen=True)
class Domain:
    """One domain as squeezed sees it (``Squeeze.domain``), KiB."""

    domid: int
    can_balloon: bool  # the driver is there and usable
    dynamic_min: int  # the least target the admin allows
    target: int  # the current balloon target
    dynamic_max: int  # the most target the admin allows
    actual: int  # what dom0 believes the guest holds (memory_actual)
    memory_max: int  # Xen's maxmem
    inaccuracy: int  # how far actual may be from target and still count as there


@dataclass(frozen=True)
class Host:
    """The domains (in the order the caller lists them) and the host's free memory, KiB."""

    domains: tuple[Domain, ...]
    free: int

    def by_domid(self, domid: int) -> Domain | None:
        return next((d for d in self.domains if d.domid == domid), None)


@dataclass(frozen=True)
class TargetChange:
    """Set ``domid``'s balloon target to ``target`` KiB (upstream's ``action``)."""

    domid: int
    target: int


@dataclass(frozen=True)
class Success:
    """Enough memory is free."""


@dataclass(frozen=True)
class Failed:
    """Every target is reached and stable and still not enough: ``domids`` are the non-active
    domains that could balloon (the ones to blame)."""

    domids: tuple[int, ...]


@dataclass(frozen=True)
class AdjustTargets:
    """Set these targets and wait (none: keep waiting for the drivers)."""

    actions: tuple[TargetChange, ...]


Result = Success | Failed | AdjustTargets


class SqueezeFailure(Exception):
    """The control loop gave up; ``kind`` names how (the exception's name, in snake case)."""

    kind: ClassVar[str]


class CannotFreeThisMuchMemory(SqueezeFailure):
    """Even with every domain at its dynamic_min, ``required`` KiB cannot be free; ``free``
    KiB were free when the loop gave up."""

    kind = "cannot_free_this_much_memory"

    def __init__(self, required: int, free: int):
        super().__init__(f"cannot free {required} KiB (free: {free} KiB)")
        self.required = required
        self.free = free


class DomainsRefusedToCooperate(SqueezeFailure):
    """These domains did not move to their targets, and without them the memory cannot be freed."""

    kind = "domains_refused_to_cooperate"

    def __init__(self, domids: Sequence[int]):
        super().__init__(f"domains refused to cooperate: {', '.join(map(str, domids))}")
        self.domids = tuple(domids)


class IterationLimit(SqueezeFailure):
    """Ours: the loop iterated ``iterations`` times without success or failure (upstream would
    go on for ever); ``required`` and ``free`` as for CannotFreeThisMuchMemory."""

    kind = "iteration_limit"

    def __init__(self, required: int, free: int, iterations: int):
        super().__init__(f"no decision after {iterations} iterations: {free} KiB free, {required} KiB required")
        self.required = required
        self.free = free
        self.iterations = iterations


# -- predicates (squeeze.ml: direction_of_actual, has_hit_target, min_freeable, range) --------


def direction(inaccuracy: int, actual: int, target: int) -> Literal["rise", "fall"] | None:
    """Where ``actual`` must go to reach ``target``; None when within ``inaccuracy`` of it.
    (Upstream names them from the balloon's side: ``Down`` for rise, ``Up`` for fall.)"""
    if abs(actual - target) <= inaccuracy:
        return None
    return "rise" if target > actual else "fall"


def has_hit_target(domain: Domain, target: int | None = None) -> bool:
    """``domain`` is within its inaccuracy of ``target`` (default: its current target)."""
    return direction(domain.inaccuracy, domain.actual, domain.target if target is None else target) is None


def min_freeable(domain: Domain, fistpoints: Sequence[Fistpoint] = ()) -> int:
    """The least a target of dynamic_min frees: the driver may stop ``inaccuracy`` short, and
    ``actual`` may already be ``inaccuracy`` below the target, hence twice."""
    slack = 0 if "DisableInaccuracyCompensation" in fistpoints else 2 * domain.inaccuracy
    return max(0, domain.actual - domain.dynamic_min - slack)


def range_of(domain: Domain) -> int:
    """How far the target may move: dynamic_max - dynamic_min, at least 0."""
    return max(0, domain.dynamic_max - domain.dynamic_min)


# -- the stuckness monitor (Stuckness_monitor) ----------------------------------------------


@dataclass
class _Progress:
    last_actual: int
    last_progress: float
    stuck: bool = False


class StucknessMonitor:
    """Which drivers are stuck: asked to move (not at their target) and without progress towards
    it for more than ``stuck_after`` seconds.  A domain's clock starts when the monitor first
    sees it, so one sitting at its target that then gets a request it cannot serve may be
    declared stuck well under ``stuck_after`` after the request."""

    def __init__(self, stuck_after: float = ASSUME_BALLOON_DRIVER_STUCK_AFTER):
        self.stuck_after = stuck_after
        self._domains: dict[int, _Progress] = {}

    def update(self, host: Host, now: float) -> None:
        for domain in host.domains:
            going = direction(domain.inaccuracy, domain.actual, domain.target)
            state = self._domains.setdefault(domain.domid, _Progress(domain.actual, now))
            moved = domain.actual - state.last_actual
            state.last_actual = domain.actual
            if (moved > 0 and going == "rise") or (moved < 0 and going == "fall"):
                state.last_progress = now
                state.stuck = False
            if going is not None and now - state.last_progress > self.stuck_after:
                state.stuck = True  # until it makes progress again
        live = {d.domid for d in host.domains}
        for domid in [k for k in self._domains if k not in live]:
            del self._domains[domid]

    def is_active(self, domid: int) -> bool:
        """Known and not stuck (a domain the monitor has not seen must have been destroyed)."""
        state = self._domains.get(domid)
        return state is not None and not state.stuck


# -- the Proportional policy ------------------------------------------------------------------


def _constrain(value: float) -> float:
    """``Proportional.constrain 0. 1.``: NaN (0/0) reads 0."""
    if value < 0.0:
        return 0.0
    if value > 1.0:
        return 1.0
    if math.isnan(value):
        return 0.0
    return value


def gamma_of(surplus: int, total_range: int) -> float:
    """The fraction of its range each domain gets: surplus / total range (float), clamped to
    [0, 1]; 0/0 (NaN) is 0 and surplus/0 (+inf) is 1, as OCaml's float division gives them."""
    if total_range == 0:  # surplus is never negative
        ratio = math.nan if surplus == 0 else math.inf
    else:
        ratio = float(surplus) / float(total_range)
    return _constrain(ratio)


def allocate_memory_in_proportion(surplus: int, domains: Sequence[Domain]) -> list[tuple[Domain, int]]:
    """Each domain's target: dynamic_min + trunc(gamma * range), the same gamma for all."""
    gamma = gamma_of(surplus, sum(range_of(d) for d in domains))
    return [(d, d.dynamic_min + math.trunc(gamma * float(range_of(d)))) for d in domains]


def compute_target_adjustments(
    host: Host, host_target: int, fistpoints: Sequence[Fistpoint] = ()
) -> list[tuple[Domain, int]]:
    """``Proportional.compute_target_adjustments``: what is left of the free memory if every
    domain went to dynamic_min, over ``host_target``, shared out in proportion to the ranges."""
    maximum_free = host.free + sum(min_freeable(d, fistpoints) for d in host.domains)
    surplus = max(0, maximum_free - host_target)
    return allocate_memory_in_proportion(surplus, host.domains)


# -- one iteration (Squeezer.one_iteration) -----------------------------------------------------


@dataclass(frozen=True)
class Iteration:
    """What one iteration decided, and the domains it newly declared inactive (stuck, or unable to
    balloon) or active again."""

    result: Result
    declared_inactive: tuple[int, ...]
    declared_active: tuple[int, ...]


class Squeezer:
    """The state kept between the iterations of one control loop: the stuckness monitor and the
    domains that were not active at the last iteration."""

    def __init__(self, stuck_after: float = ASSUME_BALLOON_DRIVER_STUCK_AFTER):
        self.stuckness = StucknessMonitor(stuck_after)
        self.non_active: tuple[int, ...] = ()

    def one_iteration(
        self,
        host: Host,
        host_target: int,
        success: Callable[[int], bool],
        now: float,
        fistpoints: Sequence[Fistpoint] = (),
    ) -> Iteration:
        self.stuckness.update(host, now)
        active = [d for d in host.domains if d.can_balloon and self.stuckness.is_active(d.domid)]
        active_ids = {d.domid for d in active}
        non_active = tuple(d.domid for d in host.domains if d.domid not in active_ids)
        declared_inactive = tuple(i for i in non_active if i not in self.non_active)
        declared_active = tuple(i for i in self.non_active if i not in non_active)
        self.non_active = non_active

        targets = compute_target_adjustments(replace(host, domains=tuple(active)), host_target, fistpoints)
        # Xen hands out memory from the top and keeps low memory for last: while some domain must
        # free, set only the targets that free, so no guest takes memory that is only passing through
        freeing = [(d, t) for d, t in targets if not has_hit_target(d, t) and t < d.actual]
        if "DisableTwoPhaseTargetSets" not in fistpoints:
            targets = freeing or targets

        all_targets_reached = all(has_hit_target(d) for d in active)
        no_target_changes = all(d.target == t for d, t in targets)
        # waiting goes on until every target is reached and stable; then it is success or failure:
        # when freeing, give up once stable and short; when giving back, wait until all is allocated
        if not all_targets_reached or not no_target_changes:
            result: Result = AdjustTargets(tuple(TargetChange(d.domid, t) for d, t in targets))
        elif success(host.free):
            result = Success()
        else:  # blame only domains that could balloon
            result = Failed(tuple(i for i in non_active if (d := host.by_domid(i)) is not None and d.can_balloon))
        return Iteration(result, declared_inactive, declared_active)


# -- the control loop (change_host_free_memory) -------------------------------------------------


class SqueezeIO(Protocol):
    """What the control loop reads and does (upstream's ``io`` record), KiB and seconds."""

    target_host_free_mem: int  # the host free memory squeezed keeps (KiB)
    free_memory_tolerance: int  # how far above it still counts as balanced (KiB)

    def gettimeofday(self) -> float: ...

    def make_host(self) -> Host: ...

    def execute_action(self, domid: int, target: int) -> None: ...

    def domain_setmaxmem(self, domid: int, kib: int) -> None: ...

    def declared(self, inactive: Sequence[int], active: Sequence[int]) -> None:
        """Ours: upstream only logs "domid N has been declared inactive/active"."""


@dataclass(frozen=True)
class Settings:
    """How the loop runs: the fistpoints, the stuck time, the wait it asks for, and our guard.

    ``max_iterations``: after that many iterations that each set targets and waited, the loop
    raises ``IterationLimit`` instead of iterating again (None: no bound, as upstream).
    """

    fistpoints: tuple[Fistpoint, ...] = ()
    stuck_after: float = ASSUME_BALLOON_DRIVER_STUCK_AFTER
    wait: float = WAIT
    max_iterations: int | None = None


def maxmem_of(domain: Domain, declared_inactive: Sequence[int], new_targets: dict[int, int]) -> int:
    """The maxmem the loop sets after an iteration (squeeze.ml's ``maxmems``)."""
    if domain.domid in declared_inactive:
        # CA-41832: a sleeping driver may free memory later but must not grab what went to others
        ideal = min(domain.target, domain.actual)
        return min(domain.dynamic_max, max(domain.dynamic_min, ideal))
    return new_targets.get(domain.domid, domain.target)


def change_host_free_memory(
    io: SqueezeIO, required: int, success: Callable[[int], bool], settings: Settings = Settings()
) -> Loop:
    """Move the domains' targets until ``required`` KiB are free (``success(free)``), as a generator
    of waits (seconds).  Raises ``CannotFreeThisMuchMemory``, ``DomainsRefusedToCooperate`` or
    ``IterationLimit``."""
    host = io.make_host()
    if (
        required != io.target_host_free_mem
        and required <= host.free
        and all(has_hit_target(d) for d in host.domains if d.can_balloon)
    ):
        return None  # enough is free and nothing is moving: no need to squeeze
    squeezer = Squeezer(settings.stuck_after)
    iterations = 0
    while settings.max_iterations is None or iterations < settings.max_iterations:
        iterations += 1
        now = io.gettimeofday()
        host = io.make_host()
        step = squeezer.one_iteration(host, required, success, now, settings.fistpoints)
        io.declared(step.declared_inactive, step.declared_active)
        result = step.result
        new_targets = {a.domid: a.target for a in result.actions} if isinstance(result, AdjustTargets) else {}
        for domain in sorted(host.domains, key=lambda d: d.domid):  # an IntMap: by domid
            io.domain_setmaxmem(domain.domid, maxmem_of(domain, step.declared_inactive, new_targets))
        if isinstance(result, Success):
            return None
        if isinstance(result, Failed):
            # CA-75568: dom0 alone to blame is dom0 changing its memory unasked, not a refusal
            if result.domids in ((), (0,)):
                raise CannotFreeThisMuchMemory(required, host.free)
            raise DomainsRefusedToCooperate(result.domids)
        for action in result.actions:
            io.execute_action(action.domid, action.target)
        yield settings.wait
    raise IterationLimit(required, host.free, iterations)  # the last snapshot's (make_host acts on maxmems)


# -- entry points ---------------------------------------------------------------------------------


def free_memory(io: SqueezeIO, required: int, settings: Settings = Settings()) -> Loop:
    """Make ``required`` KiB free on top of the host's own free target (``reserve_memory``)."""
    goal = required + io.target_host_free_mem
    return change_host_free_memory(io, goal, lambda free: free >= goal, settings)


PHANTOM_DOMID = -1


def free_memory_range(io: SqueezeIO, min_kib: int, max_kib: int, settings: Settings = Settings()) -> Loop:
    """Free between ``min_kib`` and ``max_kib``, as much as a new domain of that range would get by
    the policy (a phantom domain -1 in the shares); returns the amount the caller may take."""
    phantom = Domain(PHANTOM_DOMID, True, min_kib, min_kib, max_kib, 0, 0, 4)
    host = io.make_host()
    shares = compute_target_adjustments(replace(host, domains=(phantom, *host.domains)), io.target_host_free_mem)
    target = next(t for d, t in shares if d.domid == PHANTOM_DOMID)
    least = min_kib + io.target_host_free_mem
    yield from change_host_free_memory(io, target + io.target_host_free_mem, lambda free: free >= least, settings)
    usable = io.make_host().free - io.target_host_free_mem
    return max(min_kib, min(usable, max_kib))


def is_balanced(io: SqueezeIO, free: int) -> bool:
    return free - io.target_host_free_mem < io.free_memory_tolerance


def balance_memory(io: SqueezeIO, settings: Settings = Settings()) -> Generator[float, None, SqueezeFailure | None]:
    """Give the memory above the host's free target back to the domains.  Upstream swallows every
    exception here; the failure is returned (None: balanced), for the caller to report."""
    try:
        goal = io.target_host_free_mem
        yield from change_host_free_memory(io, goal, lambda free: is_balanced(io, free), settings)
    except SqueezeFailure as failure:
        return failure
    return None


def is_host_memory_unbalanced(io: SqueezeIO, settings: Settings = Settings()) -> bool:
    """One iteration of a fresh squeezer would set some target to a new value."""
    host = io.make_host()
    step = Squeezer(settings.stuck_after).one_iteration(
        host, io.target_host_free_mem, lambda free: is_balanced(io, free), io.gettimeofday(), settings.fistpoints
    )
    result = step.result
    if not isinstance(result, AdjustTargets):
        return False
    current = {d.domid: d.target for d in host.domains}
    return any(a.target != current[a.domid] for a in result.actions)
