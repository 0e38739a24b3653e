"""The scenario schema: a host, its domains, their kernels, and timed events.

Every size is stored in pages (or KiB where xenstore wants KiB) and every time
in integer nanoseconds; the YAML may use any unit (see ``types``).  Models are
frozen: a scenario is a value, and a changed knob makes a new scenario
(``Scenario.replace``).
"""

from __future__ import annotations

import re
import warnings
from functools import cache
from typing import Any, Literal

from pydantic import (
    Field,
    PrivateAttr,
    SerializeAsAny,
    SerializerFunctionWrapHandler,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

from balloonsim import units
from balloonsim.arch import ARCHES
from balloonsim.errors import InvalidScenario, ScenarioWarning, UnknownPath, dotted
from balloonsim.kernel.cost_profiles import DEFAULT_PROFILE, PROFILES
from balloonsim.registry import DRIVERS, FAULTY_DRIVER, MANAGERS
from balloonsim.scenario import rules
from balloonsim.scenario.base import NAME_PATTERN, Model, known, the_one_set
from balloonsim.scenario.digest import scenario_digest
from balloonsim.scenario.messages import issues_of
from balloonsim.scenario.shared_events import with_shared_validation
from balloonsim.scenario.types import (
    KiB,
    KiBOrAbsent,
    Nanoseconds,
    PageCount,
    PageCountOrAuto,
    Pages,
    PagesOrAbsent,
    PagesPerSecond,
    time_field,
)
from balloonsim.scenario.workloads import Workload
from balloonsim.xen import toolstack


class ManagerParams(Model):
    """A host memory manager: its ``kind`` (a name in ``registry.MANAGERS``) and its own settings.

    Each manager subclasses this with its parameters and their defaults.
    """

    kind: str

    @classmethod
    def concrete(cls, data: Any) -> type[ManagerParams]:
        """The settings model of the manager ``data`` names (for messages that list its fields)."""
        kind = data.get("kind") if isinstance(data, dict) else None
        return MANAGERS.load(kind).Params if isinstance(kind, str) and kind in MANAGERS else cls


class Host(Model):
    """The Xen host.  Give ``total`` (its RAM), ``free`` (free pages at t=0), or both.

    Memory that is neither free nor held by a simulated domain belongs to
    "other" consumers (Xen itself, dom0, unsimulated guests): a ``host_free``
    event moves memory between them and the free pool.  With only ``free``
    given, the total is chosen large enough for every ``host_free`` event.
    """

    total: Pages | None = None
    free: Pages | None = None
    needed: Pages | None = Field(
        None, description="free memory the host needs (e.g. to start a VM): plotted, and when it was reached"
    )
    manager: SerializeAsAny[ManagerParams] | None = Field(
        None, description="the host memory manager that sets the guests' targets ({kind: NAME, ...its settings})"
    )

    @field_validator("manager", mode="before")
    @classmethod
    def _manager_params(cls, value: Any) -> Any:
        """Validate the settings with the model of the manager ``kind`` names."""
        if value is None or isinstance(value, ManagerParams):
            return value
        kind = value.get("kind") if isinstance(value, dict) else None
        if not isinstance(kind, str) or kind not in MANAGERS:
            raise ValueError(f"manager kind must be one of: {', '.join(MANAGERS.names()) or 'none registered'}")
        return MANAGERS.load(kind).Params.model_validate(value)


MAX_ORDER_NR_PAGES = 1 << (11 - 1)  # the largest buddy block, MAX_ORDER 11 (include/linux/mmzone.h)


class Hotplug(Model):
    """CONFIG_XEN_BALLOON_MEMORY_HOTPLUG and the memory hotplug around it."""

    enabled: bool = False
    auto_online: bool = Field(True, description="online hot-added memory at once (memhp auto-online)")
    section: Pages | None = Field(None, description="PAGES_PER_SECTION; default from the arch")
    max_added: Pages | None = Field(
        None, description="hot-pluggable address space; beyond it allocate_resource fails (None: unlimited)"
    )

    @field_validator("section")
    @classmethod
    def _power_of_two(cls, section: int | None) -> int | None:
        """PAGES_PER_SECTION is 1 << (SECTION_SIZE_BITS - PAGE_SHIFT), at least a MAX_ORDER block: 1024
        pages with MAX_ORDER 11 (include/linux/mmzone.h: "Allocator MAX_ORDER exceeds SECTION_SIZE")."""
        if section is not None and (section == 0 or section & (section - 1)):
            raise ValueError(f"{section} pages is not a power of two, as PAGES_PER_SECTION always is")
        if section is not None and section < MAX_ORDER_NR_PAGES:
            raise ValueError(f"{section} pages is less than a MAX_ORDER block ({MAX_ORDER_NR_PAGES} pages)")
        return section


class Kernel(Model):
    """The guest kernel around the driver: build options, mm, scheduler tick."""

    arch: Literal["x86_64", "x86_32", "arm64", "arm32"] = "x86_64"
    hz: Literal[100, 250, 300, 1000] = 250
    lowmem: Pages | None = Field(None, description="first highmem page; 32-bit arches only; default from the arch")
    hotplug: Hotplug = Field(default_factory=Hotplug)
    unpopulated_alloc: bool = Field(
        False, description="CONFIG_XEN_UNPOPULATED_ALLOC (PV extra memory leaves the balloon)"
    )
    min_free_kbytes: int | None = Field(
        None,
        ge=0,
        le=2**31 - 1,
        description="the vm.min_free_kbytes sysctl written at boot (an int); default: int_sqrt(lowmem_kbytes * 16), "
        "clamped, raised by khugepaged with thp",
    )
    watermark_scale_factor: int = Field(10, ge=1, le=1000)
    thp: bool = Field(
        True,
        description="transparent hugepages enabled (always or madvise, as distributions build them): khugepaged "
        "raises min_free_kbytes to 11 pageblocks per populated zone (a set min_free_kbytes wins at boot)",
    )
    totalreserve_pages: PageCountOrAuto = "auto"
    mem_available: PageCountOrAuto = Field("auto", description="fixed si_mem_available() value, or auto")
    floor_balloon: PageCountOrAuto = Field("auto", description="free pages a GFP_BALLOON allocation cannot go below")
    floor_user: PageCountOrAuto = Field("auto", description="free pages a GFP_USER allocation cannot go below")
    struct_page_bytes: int | None = Field(
        None,
        ge=0,
        le=4096,
        description="sizeof(struct page): the memmap each hot-added page costs, taken from the guest's free "
        "memory as kernel memory when its section is added; default from the arch (64; 36 on 32-bit); 0: none",
    )
    used_at_boot: Pages = Field(0, description="the kernel's own memory from boot on (never freed)")
    slab_reclaimable: Pages = Field(0, description="reclaimable slab (dentries, inodes) at boot")
    swap: Pages = Field(0, description="swap space; without it anonymous memory cannot be reclaimed")
    kswapd_rate: PagesPerSecond = Field(
        "1GiB/s", description="how fast kswapd reclaims (estimate: clean page cache, memory-bound)"
    )

    @model_validator(mode="after")
    def _lowmem_only_for_32_bit(self) -> Kernel:
        if self.lowmem is not None and ARCHES[self.arch].lowmem_pages is None:
            raise ValueError(f"lowmem: {self.arch} has no highmem; lowmem applies to x86_32 and arm32")
        return self


#: driver versions whose balloon_init() leaves max_retry_count at RETRY_UNLIMITED (0)
RETRY_UNLIMITED_DRIVERS = ("v5.2",)


class Fault(Model):
    """A balloon driver with a fault, as squeezed's test simulator scripts them (``driver: faulty``;
    kernel/fault_drivers.py): it moves towards its target at ``rate``, or not at all."""

    kind: Literal["ideal", "hidden-floor", "hidden-ceiling", "stuck", "intermittent"] = Field(
        description="ideal: always moves at rate; hidden-floor / hidden-ceiling: cannot go below / reach limit; "
        "stuck: never moves; intermittent: moves for interval, stalls for interval"
    )
    rate: PagesPerSecond | None = Field(None, description="how fast it moves (not for stuck)")
    limit: Pages | None = Field(None, description="the hidden floor or ceiling")
    interval: Nanoseconds | None = Field(None, description="intermittent: how long it moves, then stalls")
    tick: Nanoseconds = Field("100ms", description="how often it moves (squeeze_test updates every 0.1 s)")

    @model_validator(mode="after")
    def _what_the_kind_needs(self) -> Fault:
        needs = {
            "ideal": ("rate",),
            "hidden-floor": ("rate", "limit"),
            "hidden-ceiling": ("rate", "limit"),
            "stuck": (),
            "intermittent": ("rate", "interval"),
        }[self.kind]
        missing = [name for name in needs if getattr(self, name) is None]
        if missing:
            raise ValueError(f"a {self.kind} driver needs {' and '.join(missing)}")
        if self.tick == 0 or self.interval == 0:
            raise ValueError("tick and interval must be more than 0")
        return self


class Balloon(Model):
    """The balloon driver's tunables at boot (its sysfs files and sysctl)."""

    driver: str = Field(
        "v5.12",
        description="balloon.c version: v5.2 (before XSA-300), v5.12 (delayed work, v5.12-v5.14), "
        "v5.15 (the xen-balloon kernel thread), v5.16 (the thread and the boot wait; also 5.15.3+ and 6.x); "
        "faulty: a scripted driver with a fault (balloon.fault)",
    )
    max_retry_count: int = Field(
        None,  # type: ignore[assignment]  # filled in by _driver_defaults
        ge=0,
        le=units.INT64_MAX,
        description="0 = RETRY_UNLIMITED; default: what the driver's balloon_init() sets (4; v5.2: 0)",
    )
    max_schedule_delay: int = Field(32, ge=0, le=units.MAX_SECONDS, description="back-off cap, seconds")
    boot_timeout: int | None = Field(
        None,
        ge=0,
        le=2**32 - 1,
        description="xen.balloon_boot_timeout, seconds (v5.16+: the boot wait panics after this long "
        "stalled); default: the driver's (180)",
    )
    hotplug_unpopulated: Literal[0, 1] = 0
    scrub_pages: bool = True
    fault: Fault | None = Field(None, description="driver faulty only: how it moves (or fails to)")

    @field_validator("driver")
    @classmethod
    def _registered(cls, driver: str) -> str:
        return known(driver, DRIVERS.names(), "driver", "drivers")

    @model_validator(mode="after")
    def _fault_with_faulty(self) -> Balloon:
        if (self.driver == FAULTY_DRIVER) != (self.fault is not None):
            raise ValueError(f"driver {FAULTY_DRIVER} takes a fault ({{kind: ..., rate: ...}}), and only it does")
        return self

    #: max_retry_count was left out: it follows the driver when ``Scenario.replace`` changes that
    _retry_count_from_driver: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _driver_defaults(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        """max_retry_count left out is what that driver's balloon_init() sets: RETRY_UNLIMITED
        before XSA-300 (v5.2), 4 from v5.3 on."""
        if not isinstance(value, dict) or value.get("max_retry_count") is not None:
            return handler(value)
        unlimited = value.get("driver") in RETRY_UNLIMITED_DRIVERS
        balloon = handler({**value, "max_retry_count": 0 if unlimited else 4})
        balloon._retry_count_from_driver = True
        return balloon


class Costs(Model):
    """Simulated time the balloon driver's work takes, per unit of work.

    A named profile (``kernel.cost_profiles``: ``runtime``, the default, ``pod-boot``,
    ``none``) gives every cost; fields given beside it override it:
    ``costs: {profile: runtime, scrub_page: 2us}``.  ``costs: NAME`` is the profile
    alone, and ``xen_page`` sets ``xen_page_out`` and ``xen_page_in`` at once.  A dump
    holds the profile and the overrides only, so that changing the profile of a dumped
    scenario (``Scenario.replace``) keeps the overrides and nothing else.
    """

    profile: str = Field(
        DEFAULT_PROFILE, description=f"the cost profile the other fields override: {', '.join(PROFILES)}"
    )
    alloc_page: Nanoseconds = Field(description="alloc_page(GFP_BALLOON), per page")
    free_page: Nanoseconds = Field(description="free_reserved_page() of a populated page")
    scrub_page: Nanoseconds = Field(description="zeroing a page when xen_scrub_pages")
    pv_page: Nanoseconds = Field(description="PV only: the p2m and mapping update of each page")
    hypercall: Nanoseconds = Field(description="one XENMEM memory_op, per batch")
    xen_page_out: Nanoseconds = Field(description="Xen's decrease_reservation, per page released")
    xen_page_in: Nanoseconds = Field(description="Xen's populate_physmap, per page populated")
    pod_fault: Nanoseconds = Field(description="a PoD guest's first touch of a page: Xen populates it from the pool")
    cond_resched: Nanoseconds = Field(description="time other tasks run at each cond_resched() between batches")
    reclaim_page: Nanoseconds = Field(description="direct reclaim of a cache page for the balloon")

    @model_validator(mode="before")
    @classmethod
    def _from_profile(cls, value: Any) -> Any:
        """The profile's costs, then the fields given; ``costs: NAME`` is ``{profile: NAME}``."""
        if isinstance(value, str):
            value = {"profile": value}
        if isinstance(value, Costs):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"a cost profile ({', '.join(PROFILES)}) or a mapping of costs, not {value!r}")
        given = dict(value)
        if "xen_page" in given:
            both = given.pop("xen_page")
            if "xen_page_out" in given or "xen_page_in" in given:
                raise ValueError("xen_page sets both xen_page_out and xen_page_in: give it or them, not both")
            given |= {"xen_page_out": both, "xen_page_in": both}
        # an unknown name is refused by _known_profile, at costs.profile; the default fills in meanwhile
        profile = PROFILES.get(given.get("profile", DEFAULT_PROFILE), PROFILES[DEFAULT_PROFILE])
        return {**profile.costs, **given}

    @field_validator("profile")
    @classmethod
    def _known_profile(cls, profile: str) -> str:
        return known(profile, PROFILES, "cost profile", "profiles")

    @model_serializer(mode="wrap")
    def _profile_and_overrides(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The profile and the fields that differ from it."""
        dumped = handler(self)
        base = _profile_ns(self.profile)
        return {"profile": self.profile} | {k: dumped[k] for k in COST_NAMES if getattr(self, k) != base[k]}

    @property
    def timeless(self) -> bool:
        """True when every cost is zero (``costs: none``): the driver's work takes no simulated time."""
        return not any(getattr(self, name) for name in COST_NAMES)


#: the per-unit costs (every Costs field but the profile), each of which every profile sets
COST_NAMES = tuple(name for name in Costs.model_fields if name != "profile")


@cache
def _profile_ns(name: str) -> dict[str, int]:
    """A profile's costs in nanoseconds, as the Costs fields hold them."""
    return {k: units.parse_time_ns(v) for k, v in PROFILES[name].costs.items()}


class Domain(Model):
    """One guest: what Xen knows of it, what its toolstack wrote, and its kernel."""

    name: str = Field(pattern=NAME_PATTERN)
    type: Literal["hvm", "pvh", "pv"] = "hvm"
    initial_domain: bool = Field(False, description="dom0: no target_diff")
    toolstack: Literal["libxl", "xend"] = Field(
        "libxl", description="which writes static-max: libxl as memory/static-max, xend as memory/memory_static_max"
    )
    memory: Pages = Field(
        description="xl's memory=: populated at boot (PV: nr_pages; HVM/PVH: RAM less videoram, or with PoD "
        "the PoD cache)"
    )
    static_max: PagesOrAbsent | None = Field(
        None, description="xl's maxmem=, xenstore memory/static-max; default: memory; 'absent': no such key"
    )
    videoram: Pages = Field(
        0,
        description="HVM only: video RAM inside memory= and maxmem= (libxl's default is 8MiB for the cirrus "
        "card, 16MiB for stdvga; balloonsim's 0 keeps memory the guest's RAM)",
    )
    pod: bool | None = Field(
        None, description="populate-on-demand; default as libxl: HVM/PVH with memory below static-max"
    )
    initial_target: KiBOrAbsent | None = Field(
        None,
        description="xenstore memory/target at creation; default as libxl: memory less videoram, less 1MiB "
        "more for HVM when static-max is above memory; 'absent': not written",
    )
    max_pages: Pages | None = Field(None, description="Xen's max_pages at creation; default as libxl: memory + 1MiB")
    kernel: Kernel = Field(default_factory=Kernel)
    balloon: Balloon = Field(default_factory=Balloon)
    costs: Costs = Field(
        default_factory=Costs,
        description=f"the time ballooning takes: a profile ({', '.join(PROFILES)}), or {{profile: NAME, ...overrides}}",
    )
    workloads: list[Workload] = Field([], description="the guest's tasks and their memory demand over time")
    # what a host memory manager may do with it (host.manager)
    dynamic_min: Pages | None = Field(
        None,
        description="the least memory a host manager may leave it (xapi's dynamic-min, Proxmox's balloon, MoM's "
        "guaranteed memory); default: memory",
    )
    dynamic_max: Pages | None = Field(
        None, description="the most memory a host manager may give it (xapi's dynamic-max); default: static-max"
    )
    shares: int = Field(1000, ge=0, le=50000, description="Proxmox's shares: its weight when memory is shared out")
    # its life on the host
    start: Nanoseconds | None = Field(
        None,
        description="when the toolstack starts it (xl create): the host manager must first free its memory; "
        "default: running from t=0",
    )
    start_deadline: Nanoseconds | None = Field(
        None,
        description="a start that must be running this long after it was asked (a migration in): later is a "
        "failed start",
    )

    @field_validator("workloads")
    @classmethod
    def _unique_workload_names(cls, workloads: list[Workload]) -> list[Workload]:
        names = [w.name for w in workloads]
        doubled = sorted({n for n in names if names.count(n) > 1})
        if doubled:
            raise ValueError(f"workload names must differ within a domain: {', '.join(doubled)}")
        return workloads

    @model_validator(mode="after")
    def _buildable(self) -> Domain:
        """Refuse what Xen, the toolstack or the guest kernel would (``rules.domain_problems``)."""
        problems = rules.domain_problems(self)
        if problems:
            raise rules.refusal(problems, "Domain")
        return self

    @property
    def static_max_pages(self) -> int | None:
        """static-max in pages, None when the key is absent from xenstore."""
        if self.static_max == "absent":
            return None
        return self.memory if self.static_max is None else int(self.static_max)

    @property
    def pod_enabled(self) -> bool:
        """Built with populate-on-demand: as asked, else libxl's choice."""
        if self.pod is not None:
            return self.pod
        return toolstack.libxl_uses_pod(self.type, self.memory, self.static_max_pages or 0)

    @property
    def ram_pages(self) -> int:
        """The guest's RAM at boot: get_num_physpages() (HVM/PVH: maxmem - videoram with PoD, else
        memory - videoram; libxl__build_hvm) or nr_pages (PV)."""
        if self.pod_enabled:
            return (self.static_max_pages or 0) - self.videoram
        return self.memory - self.videoram

    @property
    def initial_target_kib(self) -> int | None:
        """memory/target at creation in KiB, None when the toolstack wrote none."""
        if self.initial_target == "absent":
            return None
        if self.initial_target is not None:
            return int(self.initial_target)
        static_max = self.memory if self.static_max_pages is None else self.static_max_pages
        fudge = toolstack.libxl_targetmem_fudge(self.type, self.memory, static_max, self.videoram)
        return units.pages_to_kib(self.memory - fudge)

    @property
    def dynamic_min_pages(self) -> int:
        return self.memory if self.dynamic_min is None else int(self.dynamic_min)

    @property
    def dynamic_max_pages(self) -> int:
        if self.dynamic_max is not None:
            return int(self.dynamic_max)
        return self.memory if self.static_max_pages is None else self.static_max_pages

    @property
    def max_pages_at_boot(self) -> int:
        return toolstack.libxl_max_pages(self.memory) if self.max_pages is None else self.max_pages


class AllocBallooned(Model):
    """A backend's alloc_xenballooned_pages() call."""

    pages: PageCount
    signal_after: Nanoseconds | None = Field(
        None,
        description="if the call sleeps for hot-added memory, a signal ends the sleep after this long "
        "(the call then fails with -ENOMEM; driver v5.2's sleep ignores signals); default: it sleeps until "
        "pages appear",
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        """``alloc_ballooned: 100`` is ``alloc_ballooned: {pages: 100}``."""
        return value if isinstance(value, dict) else {"pages": value}


class SysfsWrite(Model):
    """A write to /sys/devices/system/xen_memory/xen_memory0/<attribute>, as text."""

    target_kb: str | None = None
    target: str | None = None
    max_retry_count: str | None = None
    max_schedule_delay: str | None = None
    scrub_pages: str | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return "1" if value else "0"
        return str(value) if isinstance(value, int) else value

    @model_validator(mode="after")
    def _one_attribute(self) -> SysfsWrite:
        if sum(getattr(self, k) is not None for k in SysfsWrite.model_fields) != 1:
            raise ValueError(f"write exactly one attribute, one of: {', '.join(SysfsWrite.model_fields)}")
        return self

    @property
    def attribute(self) -> str:
        return next(k for k in SysfsWrite.model_fields if getattr(self, k) is not None)

    @property
    def text(self) -> str:
        return getattr(self, self.attribute)


class Event(Model):
    """One scripted event: a time, usually a domain, and exactly one action."""

    at: Nanoseconds
    domain: str | None = None
    # toolstack and Xen
    target: KiB | None = Field(None, description="toolstack writes memory/target (KiB) in xenstore")
    mem_set: KiB | None = Field(None, description="xl mem-set: max_pages = target + 1 MiB, then memory/target")
    max_pages: PageCount | None = Field(None, description="xc_domain_setmaxmem")
    host_free: PageCount | None = Field(None, description="other consumers take or release host memory")
    stop: Literal[True] | None = Field(None, description="xl shutdown/destroy: the domain goes, its memory to the host")
    # guest
    take: PageCount | None = Field(None, description="the workload allocates pages (highmem first)")
    give: PageCount | None = Field(None, description="the workload frees the pages it took last")
    alloc_ballooned: AllocBallooned | None = None
    free_ballooned: PageCount | None = None
    online: Literal[True] | None = Field(None, description="online all hot-added memory that waits")
    hotplug_unpopulated: str | None = Field(None, description="write (text) to sysctl xen/balloon/hotplug_unpopulated")
    sysfs: SysfsWrite | None = None
    totalreserve: PageCount | None = Field(None, description="override totalreserve_pages")
    mem_available: PageCountOrAuto | None = Field(None, description="override si_mem_available()")

    @field_validator("hotplug_unpopulated", mode="before")
    @classmethod
    def _as_text(cls, value: Any) -> Any:
        """The sysctl gets text, as from ``echo 1 >``; a YAML number is written as its digits."""
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @model_validator(mode="after")
    def _one_action(self) -> Event:
        the_one_set(self, ACTIONS, "an event", "action")
        return self

    @property
    def action(self) -> str:
        return the_one_set(self, ACTIONS, "an event", "action")

    @property
    def cause(self) -> str:
        """The timeline's ``cause`` for this event: the action, or the sysfs attribute."""
        return self.parts()[2]

    @property
    def value(self) -> Any:
        return getattr(self, self.action)

    def parts(self) -> tuple[str, Any, str]:
        """(action, value, cause), the action found once (the engine compiles a script event by event)."""
        action = self.action
        return action, getattr(self, action), self.sysfs.attribute if self.sysfs is not None else action


#: The actions an event may carry, exactly one each.
ACTIONS = tuple(k for k in Event.model_fields if k not in ("at", "domain"))


class Scenario(Model):
    name: str = Field(pattern=NAME_PATTERN)
    description: str = ""
    duration: Nanoseconds = Field(description="the run ends at this time")
    seed: int = Field(0, ge=0, le=units.INT64_MAX, description="default seed (the command line may override it)")
    progress_every: Nanoseconds = Field(
        "1s",
        description="during a balloon_process() pass that takes time, a timeline row (cause 'progress') "
        "at most this often; 0s: after every loop turn",
    )
    host: Host
    domains: list[Domain] = Field(min_length=1)
    events: list[Event] = []

    @model_validator(mode="wrap")
    @classmethod
    def _rules(cls, data: Any, handler: ValidatorFunctionWrapHandler, info: ValidationInfo) -> Scenario:
        """Every field, then the rules across fields (``rules``): all problems in one error; then warnings."""
        data = _events_validated_fast(data, info.context)
        problems = rules.document_problems(data, ACTIONS)
        try:
            scenario = handler(data)
        except ValidationError as err:
            raise rules.with_issues(err, problems) from None
        problems += rules.scenario_problems(scenario)
        if problems:
            raise rules.refusal(problems)
        rules.tell(rules.scenario_warnings(scenario), info.context)
        return scenario

    @classmethod
    def model_validate(cls, obj: Any, *, context: Any | None = None, **options: Any) -> Scenario:
        """Validate scenario data; raise InvalidScenario naming each problem's dotted path.

        Warnings go to ``warnings.warn`` (ScenarioWarning), or into the list
        ``context["warnings"]`` when the caller gives one (the file loader does).
        """
        return cls._validated(obj, context, options)

    @classmethod
    def _validated(cls, obj: Any, context: Any, options: dict[str, Any]) -> Scenario:
        """model_validate's work, for it and for replace: each warning points at their caller."""
        found: list[rules.Issue] = []
        given = isinstance(context, dict) and context.get(rules.WARNINGS) is not None
        if not given:
            context = {**(context or {}), rules.WARNINGS: found}
        try:
            scenario = super().model_validate(obj, context=context, **options)
        except ValidationError as err:
            raise InvalidScenario(issues_of(err, obj, cls)) from None
        for loc, message in found:
            warnings.warn(ScenarioWarning(f"{dotted(loc)}: {message}"), stacklevel=3)
        return scenario

    def digest(self) -> str:
        """A stable hash of the validated scenario (stored with every result).

        A replayed trace counts by its content, not by where its file is.
        """
        return scenario_digest(self)

    def domain(self, name: str) -> Domain:
        for d in self.domains:
            if d.name == name:
                return d
        raise KeyError(name)

    def replace(self, changes: dict[str, Any] | None = None, /, **fields: Any) -> Scenario:
        """A copy with some fields changed, validated again.

        Keys are dotted paths; a domain may be named instead of indexed:
        ``scenario.replace({"domains.stuck.balloon.max_retry_count": 0}, duration="2min")``.
        """
        data = self.as_data()
        for path, value in {**(changes or {}), **fields}.items():
            _set_path(data, path, value)
        return Scenario._validated(data, None, {})

    def as_data(self) -> dict[str, Any]:
        """The scenario as plain data that validates to it again (what ``replace`` changes): a
        ``max_retry_count`` the scenario left out stays out, so a changed driver brings its own."""
        data = self.model_dump(mode="json")
        for domain, dumped in zip(self.domains, data["domains"], strict=True):
            if domain.balloon._retry_count_from_driver:
                del dumped["balloon"]["max_retry_count"]
        return data


def _events_validated_fast(data: Any, context: Any) -> Any:
    """``data`` with the events that share a validation already validated (``shared_events``)."""
    if not isinstance(data, dict) or not isinstance(data.get("events"), list):
        return data
    return {**data, "events": with_shared_validation(data["events"], Event, time_field, context)}


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``data`` at a dotted path; an UnknownPath names the path and what is there instead."""
    node: Any = data
    parts = path.split(".")
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        where = ".".join(parts[:i])  # never empty where a message names it: the top is a mapping
        if isinstance(node, list):
            names = [item.get("name") for item in node if isinstance(item, dict)]
            index = int(part) if part.isdigit() else names.index(part) if part in names else None
            if index is None or index >= len(node):
                raise UnknownPath([f"{path}: no item {part!r} in {where} ({_items(node, names)})"])
            if last:
                node[index] = value
            node = node[index]
        elif isinstance(node, dict):
            if last:
                node[part] = value
            elif part not in node or node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            raise UnknownPath([f"{path}: {where} is {units.quoted(node)}, not a mapping or a list"])


def _items(items: list[Any], names: list[Any]) -> str:
    """What a list has: its indices, and its items' names if they have any."""
    shown = f"items 0-{len(items) - 1}" if items else "no items"
    named = [str(n) for n in names if n is not None]
    return f"{shown}; names: {', '.join(named)}" if named else shown


def slug(text: str) -> str:
    """A scenario name made from a file name."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "scenario"
