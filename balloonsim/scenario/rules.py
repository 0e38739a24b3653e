"""Rules that span several fields, and warnings for legal but odd scenarios.

Every way into a ``Scenario`` (a file, ``parse_scenario``,
``Scenario.model_validate``, ``Scenario.replace``) runs these from the
models' own validators, so they hold for all of them.  The rules on the raw
document (domain names, event order and references) run even when a field is
invalid, so that a file's problems are reported together; the rules on
values run once the values are valid.  Each refusal says which check of Xen,
its toolstack or the kernel it follows.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from balloonsim import units
from balloonsim.errors import Loc, ScenarioWarning, dotted
from balloonsim.units import format_pages

if TYPE_CHECKING:
    from balloonsim.scenario.model import Domain, Scenario

Issue = tuple[Loc, str]

#: ``Scenario.model_validate(data, context={WARNINGS: found})`` puts its warnings into the list
#: ``found`` instead of calling ``warnings.warn``.
WARNINGS = "warnings"
#: Event actions that act on the host rather than on one domain.
HOST_ACTIONS = ("host_free",)
#: A scenario implying more timeline rows than this is warned about: the recorder keeps every
#: row in memory (a few hundred bytes each) until the tables are built.
ROWS_WARNING = 1_000_000


# -- the raw document -------------------------------------------------------------------


def document_problems(data: Any, actions: tuple[str, ...]) -> list[Issue]:
    """Problems of the raw scenario data (before or despite type errors): host, names, events."""
    if not isinstance(data, dict):
        return []
    problems: list[Issue] = []
    host = data.get("host")
    if isinstance(host, dict) and host.get("total") is None and host.get("free") is None:
        problems.append((("host",), "give the host's total memory, its free memory at t=0, or both"))
    names = _domain_names(data.get("domains"), problems)
    problems += _event_problems(data.get("events"), names, _time_or_none(data.get("duration")), actions)
    return problems


def _domain_names(domains: Any, problems: list[Issue]) -> dict[str, int]:
    """Each domain name and its index; a duplicate is a problem."""
    names: dict[str, int] = {}
    for i, d in enumerate(domains if isinstance(domains, list) else []):
        name = d.get("name") if isinstance(d, dict) else None
        if not isinstance(name, str):
            continue
        if name in names:
            problems.append((("domains", i, "name"), f"duplicate domain name {name!r} (also domains.{names[name]})"))
        else:
            names[name] = i
    return names


def _names_text(names: dict[str, int], most: int = 10) -> str:
    """The first domain names (quoted if one holds a newline, say) and how many more: one short line."""
    if not names:
        return "none defined"
    shown = [n if n.isprintable() else units.quoted(n) for n in list(names)[:most]]
    more = len(names) - len(shown)
    return ", ".join(shown) + (f" and {more:,} more" if more else "")


def _event_problems(events: Any, names: dict[str, int], duration: int | None, actions: tuple[str, ...]) -> list[Issue]:
    """Each event names a known domain (or none, for the host), in time order, within the run."""
    problems: list[Issue] = []
    previous: int | None = None
    for i, ev in enumerate(events if isinstance(events, list) else []):
        if isinstance(ev, BaseModel):  # validated already (``shared_events``): one action, its time in ns
            acts, domain, at = [ev.action], ev.domain, ev.at
        elif isinstance(ev, dict):
            acts = [k for k in actions if ev.get(k) is not None]
            domain, at = ev.get("domain"), _time_or_none(ev.get("at"))
        else:
            continue
        host_event = bool(acts) and all(a in HOST_ACTIONS for a in acts)
        if host_event and domain is not None:
            problems.append((("events", i, "domain"), f"{acts[0]} acts on the host; remove 'domain'"))
        elif not host_event and acts and domain is None:
            problems.append((("events", i), f"{acts[0]} needs a 'domain' (one of: {_names_text(names)})"))
        elif isinstance(domain, str) and not host_event and domain not in names and names:
            problems.append(
                (("events", i, "domain"), f"unknown domain {units.quoted(domain)}; domains: {_names_text(names)}")
            )
        if at is None:
            continue
        if previous is not None and at < previous:
            problems.append(
                (
                    ("events", i, "at"),
                    f"{units.format_ns(at)} is before the previous event ({units.format_ns(previous)}); "
                    "list events in time order",
                )
            )
        if duration is not None and at > duration:
            problems.append(
                (
                    ("events", i, "at"),
                    f"{units.format_ns(at)} is after the end of the run (duration {units.format_ns(duration)})",
                )
            )
        if duration is None or at <= duration:  # one event past the end is one problem, not one per event
            previous = at if previous is None else max(previous, at)
    return problems


def _time_or_none(value: Any) -> int | None:
    try:
        return units.parse_time_ns(value)
    except units.UnitError:
        return None


# -- valid values -----------------------------------------------------------------------


def domain_problems(d: Domain) -> list[Issue]:
    """Combinations Xen, the toolstack or the guest kernel would refuse (locations inside the domain)."""
    problems: list[Issue] = []
    if d.memory == 0:
        # libxl__build_dom (tools/libs/light/libxl_dom.c): xc_dom_boot_mem_init() populates the
        # guest's memory, then xc_dom_build_image() loads its kernel into it
        problems.append((("memory",), "must be more than 0: the domain builder loads the guest's kernel into it"))
    problems += _video_and_pod_problems(d)
    held = d.kernel.used_at_boot + d.kernel.slab_reclaimable
    populated = d.memory - d.videoram
    if held > populated and not problems:
        # the kernel's own pages and its slab are populated RAM (totalram_pages = present - reserved);
        # with PoD they are faulted in from the cache, which holds memory - videoram pages
        problems.append(
            (
                ("kernel", "used_at_boot"),
                f"used_at_boot plus slab_reclaimable is {format_pages(held)}, more than the guest's memory "
                f"({format_pages(populated)}{' less video RAM' if d.videoram else ''})",
            )
        )
    given = d.dynamic_min is not None or d.dynamic_max is not None
    if given and d.dynamic_min_pages > d.dynamic_max_pages:
        problems.append(
            (
                ("dynamic_min",),
                f"{format_pages(d.dynamic_min_pages)} is above dynamic_max ({format_pages(d.dynamic_max_pages)}): "
                "give dynamic_min <= dynamic_max (dynamic_min defaults to memory, dynamic_max to static-max)",
            )
        )
    static_max = d.static_max_pages
    if d.dynamic_max is not None and static_max is not None and d.dynamic_max_pages > static_max:
        # xapi: dynamic_min <= dynamic_max <= static_max; a target above static-max is refused by libxl
        problems.append(
            (
                ("dynamic_max",),
                f"{format_pages(d.dynamic_max_pages)} is above static-max ({format_pages(static_max)}): "
                "no toolstack sets a target above static-max",
            )
        )
    if d.start_deadline is not None and d.start is None:
        problems.append((("start_deadline",), "a deadline is for a domain started during the run: give start too"))
    if static_max is not None and static_max < d.memory and d.toolstack == "libxl" and d.type != "pv":
        # libxl__build_post writes memory/static-max = max_memkb, and libxl__build_dom gives an HVM or
        # PVH guest max_memkb - video_memkb of RAM: static-max is never below its memory
        problems.append(
            (
                ("static_max",),
                f"{format_pages(static_max)} is below memory ({format_pages(d.memory)}): libxl writes static-max "
                f"from the maxmem that sizes an {d.type.upper()} guest's RAM, so it is never less",
            )
        )
    kib = d.initial_target_kib
    static_max_kib = None if static_max is None else units.pages_to_kib(static_max)
    if d.initial_target is not None and kib is not None and static_max_kib is not None and kib > static_max_kib:
        # libxl_set_memory_target (tools/libs/light/libxl_mem.c) refuses a target above static-max
        problems.append(
            (
                ("initial_target",),
                f"{kib}KiB is above static-max ({static_max_kib}KiB): a toolstack refuses it "
                "(memory_dynamic_max must be less than or equal to memory_static_max)",
            )
        )
    return problems


def _video_and_pod_problems(d: Domain) -> list[Issue]:
    """Video RAM and populate-on-demand as libxl allows them."""
    problems: list[Issue] = []
    if d.videoram and d.type != "hvm":
        # libxl__domain_build_info_setdefault (libxl_create.c): only an HVM guest's device model has video RAM
        problems.append((("videoram",), f"only an HVM guest has video RAM (libxl gives a {d.type.upper()} guest 0)"))
    elif d.videoram and d.videoram >= d.memory:
        # libxl__build_hvm gives the guest memory - videoram pages (with PoD, that much PoD cache)
        problems.append(
            (("videoram",), f"{format_pages(d.videoram)} leaves no RAM of memory ({format_pages(d.memory)})")
        )
    if d.pod and d.type == "pv":
        # libxl_create.c: pod_enabled only for a non-PV guest; a PV guest's extra memory is ballooned instead
        problems.append((("pod",), "a PV guest has no populate-on-demand (its memory above nr_pages is ballooned)"))
    elif d.pod and not (d.static_max_pages is not None and d.memory < d.static_max_pages):
        # xg_dom_x86.c meminit_hvm: PoD only when the target is below the guest's pages
        problems.append((("pod",), "populate-on-demand needs memory below static_max (maxmem)"))
    return problems


def max_pfn(d: Domain) -> int:
    """The guest's RAM at boot: a PV guest's E820 reaches static-max, beyond nr_pages (as kernel/guest.py)."""
    if d.type == "pv":
        return max(d.memory, d.static_max_pages or 0)
    return d.ram_pages


def scenario_problems(scenario: Scenario) -> list[Issue]:
    """Does the host hold its domains at boot, and does its memory fit the model's int64 tables?"""
    booted = sum(d.memory for d in scenario.domains if d.start is None)
    host = scenario.host
    if host.total is not None and host.free is None and booted > host.total:
        return [
            (
                ("host", "total"),
                f"the domains boot with {format_pages(booted)}, more than the host's {format_pages(host.total)}",
            )
        ]
    if host.total is not None and host.free is not None and booted + host.free > host.total:
        return [
            (
                ("host", "free"),
                f"free ({format_pages(host.free)}) plus the domains' boot memory ({format_pages(booted)}) "
                f"exceeds the host total ({format_pages(host.total)})",
            )
        ]
    late = [i for i, d in enumerate(scenario.domains) if d.start is not None and d.start > scenario.duration]
    if late:
        return [(("domains", i, "start"), "after the end of the run: it would never be asked") for i in late]
    too_much = (i for i, e in enumerate(scenario.events) if host.total is not None and (e.host_free or 0) > host.total)
    if (i := next(too_much, None)) is not None:
        free = scenario.events[i].host_free
        return [
            (
                ("events", i, "host_free"),
                f"{format_pages(free)} free is more than the host's {format_pages(host.total)} in all",
            )
        ]
    if host.total is None and host.free is not None:
        # engine.host_size: the total holds free memory, the domains and every host_free event
        released = sum(e.host_free for e in scenario.events if e.host_free is not None)
        if host.free + booted + released > units.MAX_PAGES:
            return [(("host", "free"), f"free plus the domains and the host_free events: {units.SIZE_LIMIT}")]
        if host.free + booted + released == 0:
            return [(("host", "free"), "the host would have no memory at all: give it a total, or free memory")]
    if host.total == 0:
        return [(("host", "total"), "a host has some memory: more than 0")]
    return []


# -- warnings ---------------------------------------------------------------------------


def scenario_warnings(scenario: Scenario) -> list[Issue]:
    """Legal but odd choices, each with what the run will do."""
    found: list[Issue] = []
    for i, d in enumerate(scenario.domains):
        found += [(("domains", i, *loc), message) for loc, message in domain_warnings(d)]
    if scenario.progress_every == 0 and any(not d.costs.timeless for d in scenario.domains):
        found.append(
            (
                ("progress_every",),
                "0s with costs: a timeline row after every loop turn of every worker pass (each batch of "
                "pages), so the tables grow with every page ballooned; e.g. 1s keeps them small",
            )
        )
    return found + _rows_warnings(scenario)


def domain_warnings(d: Domain) -> list[Issue]:
    found: list[Issue] = []
    tunables = d.balloon
    if tunables.max_schedule_delay == 0:
        # update_schedule (drivers/xen/balloon.c) caps the doubled delay at max_schedule_delay, and
        # balloon_process requeues itself after schedule_delay * HZ jiffies
        if tunables.max_retry_count == 0:
            found.append(
                (
                    ("balloon", "max_retry_count"),
                    "0 (retry without limit) with max_schedule_delay 0: a target that cannot be reached keeps "
                    "the worker running for ever (balloonsim stops such a run as a livelock)",
                )
            )
        found.append(
            (
                ("balloon", "max_schedule_delay"),
                "0: after EAGAIN the worker runs again at once, without a delay: the kernel spins",
            )
        )
    if d.max_pages is not None and d.max_pages < d.memory:
        # XEN_DOMCTL_max_mem (xen/common/domctl.c) accepts a max_pages below tot_pages and lets the
        # domain ratchet down; until then every allocation is refused
        found.append(
            (
                ("max_pages",),
                f"{format_pages(d.max_pages)} is below memory ({format_pages(d.memory)}): Xen refuses the guest "
                "every page until it has given back enough to be under max_pages",
            )
        )
    if d.static_max_pages is not None and d.static_max_pages < d.memory and d.type == "pv":
        found.append(
            (
                ("static_max",),
                f"{format_pages(d.static_max_pages)} is below memory: libxl_set_memory_target will refuse every "
                "target above it",
            )
        )
    lowmem = d.kernel.lowmem
    if lowmem is not None and lowmem > max_pfn(d):
        # find_low_pfn_range (arch/x86/mm/init_32.c): max_low_pfn = min(max_pfn, MAXMEM_PFN); the oracle's
        # harness allows more, so this is a warning
        found.append(
            (
                ("kernel", "lowmem"),
                f"{format_pages(lowmem)} is beyond the guest's RAM at boot ({format_pages(max_pfn(d))}): memory "
                "hot-added below it counts as lowmem, where a 32-bit kernel's lowmem ends with its boot RAM",
            )
        )
    beyond = _boot_target_beyond_reach(d)
    if beyond:
        found.append((("initial_target",), beyond))
    return found


def _boot_target_beyond_reach(d: Domain) -> str | None:
    """Without memory hotplug, a boot target above the pages the guest can populate is cut and cancelled."""
    kib = d.initial_target_kib
    if d.initial_target is None or kib is None or d.kernel.hotplug.enabled:
        return None
    target = units.kib_to_pages(kib)
    if d.type != "pv" and not d.initial_domain and d.static_max_pages is not None:
        target -= d.static_max_pages - d.ram_pages  # watch_target's target_diff (drivers/xen/xen-balloon.c)
    reachable = max_pfn(d) if d.type == "pv" and not d.kernel.unpopulated_alloc else d.ram_pages
    if target <= reachable:
        return None
    # reserve_additional_memory without CONFIG_XEN_BALLOON_MEMORY_HOTPLUG (drivers/xen/balloon.c)
    return (
        f"the balloon target at boot is {format_pages(target)}, more than the {format_pages(reachable)} the guest "
        "can populate without memory hotplug: the driver cuts the target and cancels (ECANCELED) at boot"
    )


def _rows_warnings(scenario: Scenario) -> list[Issue]:
    """A warning when events and workload changes imply more than ROWS_WARNING timeline rows."""
    end = scenario.duration
    per_workload = [
        (("domains", i, "workloads", j), w.changes_until(end))
        for i, d in enumerate(scenario.domains)
        for j, w in enumerate(d.workloads)
    ]
    events = sum(1 if e.domain is not None else len(scenario.domains) for e in scenario.events)
    total = events + sum(n for _, n in per_workload)
    if total <= ROWS_WARNING:
        return []
    # the events first: of equal counts, max names the first
    loc, most = max([(("events",), events), *per_workload], key=lambda p: p[1])
    return [
        (
            loc,
            f"about {total:,} timeline rows (one per event and per workload change; {most:,} from here): "
            f"over {ROWS_WARNING:,}, the tables take gigabytes to load whole (the run streams them to disk)",
        )
    ]


# -- reporting --------------------------------------------------------------------------


def refusal(issues: list[Issue], title: str = "Scenario") -> ValidationError:
    """``issues`` as a pydantic ValidationError (raised from a validator, they keep their locations)."""
    return ValidationError.from_exception_data(title, [_error(loc, message, None) for loc, message in issues])


def with_issues(err: ValidationError, issues: list[Issue], title: str = "Scenario") -> ValidationError:
    """One ValidationError: the errors of ``err``, then ``issues``."""
    lines = [_error(e["loc"], e["msg"], e["input"], e["type"]) for e in err.errors()]
    return ValidationError.from_exception_data(title, lines + [_error(loc, m, None) for loc, m in issues])


def _error(loc: Loc, message: str, value: Any, kind: str = "scenario_rule") -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(kind, "{message}", {"message": message}), loc=loc, input=value)


def tell(found: list[Issue], context: Any) -> None:
    """Put warnings into the context's WARNINGS list if it has one, else warn."""
    sink = context.get(WARNINGS) if isinstance(context, dict) else None
    if sink is not None:
        sink.extend(found)
        return
    for loc, message in found:
        warnings.warn(ScenarioWarning(f"{dotted(loc)}: {message}"), stacklevel=2)
