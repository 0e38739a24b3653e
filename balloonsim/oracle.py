"""The C oracle's script format and CSV, for checking balloonsim against the kernel's own code.

The oracle is a C harness that compiles the unmodified balloon.c with a
scripted environment; its traces are in ``tests/fixtures/oracle/``.  This module turns one of its
scripts into the equivalent balloonsim scenario, and compares a balloonsim
timeline with the oracle's CSV column by column.  balloonsim never needs the
oracle to run; the oracle's traces are test fixtures.

The mapping, verb by verb (the oracle's HVM guest, its page pool all free at
boot, its floors and reserves 0 unless the script sets them):

=======================  ==============================================
oracle script            balloonsim scenario
=======================  ==============================================
``init pages=N ...``     one HVM domain of N pages; memory/target not
                         written at boot (the boot watch finds none);
                         hot-added memory costs no memmap, as in the
                         harness (``struct_page_bytes: 0``);
                         ``lowmem=N`` selects arm32 (highmem, 512-page
                         batches, as the oracle's x86_64 build has)
``target P``             ``target: 4P KiB``: the xenstore watch turns it
                         into balloon_set_new_target(P); the domain is
                         marked ``initial_domain`` so that target_diff is
                         0 by the kernel's own rule, whatever came before
``max_retry N``          ``sysfs: {max_retry_count: N}``
``max_delay N``          ``sysfs: {max_schedule_delay: N}``
``alloc_ballooned N``    ``alloc_ballooned: {pages: N, signal_after: 0s}``
                         (the harness ends a sleep as a signal would)
other verbs              the event of the same name
=======================  ==============================================

The kthread builds (``# oracle: oracle-kthread`` or ``oracle-kthread-hotplug``,
the kernel's v5.15.3+/v5.16+ file) run the driver ``v5.16``: ``boot_target=P``
is the initial ``memory/target`` (4P KiB) the toolstack wrote, which the
watch passes on at boot; ``balloon_boot_timeout=N`` is ``balloon.boot_timeout``;
``progress_every: 0s`` records a row after every pass of the thread, as the
harness prints one.  Its ``work_pending``/``work_expiry`` are the thread's
``thread_runs_at`` (the harness prints 1 and the jiffy the thread runs next).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any, NoReturn

from balloonsim.errors import ScenarioError
from balloonsim.results.result import Result
from balloonsim.scenario.rules import HOST_ACTIONS
from balloonsim.units import Clock, format_ns, pages_to_kib

#: oracle CSV columns, in its order
CSV_COLUMNS = (
    "jiffies,cause,current_pages,target_pages,target_unpopulated,total_pages,balloon_low,balloon_high,"
    "schedule_delay,retry_count,state,work_pending,work_expiry,host_free,dom_pages,guest_free"
).split(",")
#: balloonsim causes whose oracle verb has another name
CAUSE_TO_VERB = {"max_retry_count": "max_retry", "max_schedule_delay": "max_delay"}
_INIT_KEYS = {
    "pages", "lowmem", "host_free", "max_pages", "floor_balloon", "floor_user", "totalreserve",
    "mem_available", "auto_online", "boot_target", "balloon_boot_timeout",
}  # fmt: skip
#: the builds of the kthread driver, and the oracle exit status of a kernel panic (its last row)
KTHREAD_BUILDS = ("oracle-kthread", "oracle-kthread-hotplug")
EXIT_PANIC = 5
_ONE_ARG_VERBS = {
    "target", "host_free", "max_pages", "take", "give", "totalreserve", "mem_available", "alloc_ballooned",
    "free_ballooned", "hotplug_unpopulated", "max_retry", "max_delay",
}  # fmt: skip


def script_to_scenario(
    text: str, name: str, *, hz: int | None = None, section_pages: int | None = None, hotplug: bool | None = None
) -> dict[str, Any]:
    """An oracle script as a balloonsim scenario (a dict, ready for YAML).

    ``hotplug`` selects the oracle-hotplug build, ``hz`` and
    ``section_pages`` the build's HZ and PAGES_PER_SECTION.  Left as None,
    they come from the script's ``# oracle: NAME`` and
    ``# build: HZ=N PAGES_PER_SECTION=N`` comments, else 250 and 32768.
    """
    build = dict(word.split("=", 1) for word in _comment_value(text, "build").split() if "=" in word)
    hz = _positive(name, "HZ", hz if hz is not None else build.get("HZ", "250"))
    section_pages = _positive(
        name,
        "PAGES_PER_SECTION",
        section_pages if section_pages is not None else build.get("PAGES_PER_SECTION", "32768"),
    )
    build_name = _comment_value(text, "oracle")
    if hotplug is None and build_name:
        hotplug = build_name.endswith("-hotplug")
    kthread = build_name in KTHREAD_BUILDS
    clock = Clock(hz)
    init, end, events, comments = _parse_script(text, name, clock)
    if not kthread and {"boot_target", "balloon_boot_timeout"} & init.keys():
        raise ScenarioError([f"{name}: boot_target and balloon_boot_timeout need a kthread build"])

    pages = int(init["pages"])
    kernel: dict[str, Any] = {
        "hz": hz,
        "totalreserve_pages": int(init.get("totalreserve", 0)),
        "floor_balloon": int(init.get("floor_balloon", 0)),
        "floor_user": int(init.get("floor_user", 0)),
        "mem_available": _auto_or_int(init.get("mem_available", "auto")),
        "hotplug": {
            "enabled": bool(hotplug),
            "auto_online": init.get("auto_online", "1") == "1",
            "section": f"{section_pages} pages",
        },
        "struct_page_bytes": 0,
    }
    if init.get("lowmem", "all") != "all":
        kernel = {"arch": "arm32", "lowmem": f"{int(init['lowmem'])} pages", **kernel}
    boot_target = init.get("boot_target")
    domain: dict[str, Any] = {
        "name": "guest",
        "initial_domain": True,
        "memory": f"{pages} pages",
        "initial_target": "absent" if boot_target is None else f"{pages_to_kib(int(boot_target))}KiB",
        "max_pages": f"{int(init.get('max_pages', pages))} pages",
        "kernel": kernel,
        "costs": "none",  # the harness's calls take no time
    }
    if boot_target is not None and int(boot_target) > pages:  # a toolstack would refuse it above static-max
        domain["static_max"] = f"{int(boot_target)} pages"
        domain["pod"] = False  # the harness's guest has all its pages
    if kthread:
        domain["balloon"] = {"driver": "v5.16"}
        if "balloon_boot_timeout" in init:
            domain["balloon"]["boot_timeout"] = int(init["balloon_boot_timeout"])
    scenario = {
        "name": name,
        "description": "\n".join(comments) or f"converted from the oracle script {name}",
        "duration": format_ns(clock.jiffy_start_ns(end)),
        "host": {"free": f"{int(init.get('host_free', 0))} pages"},
        "domains": [domain],
        "events": events,
    }
    if kthread:
        scenario["progress_every"] = "0s"  # the harness prints a row after every pass of the thread
    return scenario


def _parse_script(text: str, name: str, clock: Clock) -> tuple[dict[str, str], int, list[dict[str, Any]], list[str]]:
    """The script's init settings, end jiffy, events (as scenario events) and leading comments."""
    comments: list[str] = []
    init: dict[str, str] | None = None
    events: list[dict[str, Any]] = []
    end: int | None = None

    def fail(lineno: int, message: str) -> NoReturn:
        raise ScenarioError([f"{name}:{lineno}: {message}"])

    for lineno, raw in enumerate(text.splitlines(), 1):
        line, _, comment = raw.partition("#")
        if not line.strip():
            if init is None and comment.strip() and not comment.strip().startswith(("oracle:", "build:")):
                comments.append(comment.strip())
            continue
        words = line.split()
        try:
            if init is None:
                if words[0] != "init":
                    fail(lineno, "the first statement must be 'init'")
                init = {}
                for word in words[1:]:
                    key, eq, value = word.partition("=")
                    if not eq or key not in _INIT_KEYS:
                        fail(lineno, f"init: unknown setting {word!r}")
                    if not (key == "lowmem" and value == "all" or key == "mem_available" and value == "auto"):
                        int(value)  # every other setting is a number
                    init[key] = value
                continue
            if words[0] == "end" and len(words) == 2:
                end = int(words[1])
                continue
            if words[0] != "at" or len(words) < 3:
                fail(lineno, f"expected 'at J verb [arg]' or 'end J', got {line.strip()!r}")
            at = format_ns(clock.jiffy_start_ns(int(words[1])))
            verb, args = words[2], words[3:]
            if verb not in _ONE_ARG_VERBS and verb != "online":
                fail(lineno, f"unknown verb {verb!r}")
            if (verb in _ONE_ARG_VERBS) != (len(args) == 1) or (verb == "online" and args):
                fail(lineno, f"{verb}: wrong number of arguments")
            action = _event(verb, args[0] if args else "", lineno, fail)
        except ValueError as err:
            fail(lineno, f"not a number ({err})")
        events.append({"at": at, **action} if verb in HOST_ACTIONS else {"at": at, "domain": "guest", **action})
    if init is None or end is None:
        raise ScenarioError([f"{name}: a script needs 'init ...' and 'end J'"])
    return init, end, events, comments


def _positive(name: str, key: str, value: int | str) -> int:
    """A build setting (``# build: KEY=N`` or the command line's): a positive whole number."""
    digits = isinstance(value, str) and value.isascii() and value.isdigit()  # not '²', which int() refuses
    if isinstance(value, int) and value > 0 or digits and int(value) > 0:
        return int(value)
    raise ScenarioError([f"{name}: {key}={value} is not a positive whole number (the oracle build's {key})"])


def _comment_value(text: str, key: str) -> str:
    """The text after ``# key:`` in a script's comments, or ''."""
    for line in text.splitlines():
        comment = line.partition("#")[2].strip()
        if comment.startswith(key + ":"):
            return comment[len(key) + 1 :].strip()
    return ""


def _auto_or_int(value: str) -> int | str:
    return value if value == "auto" else int(value)


def _event(verb: str, arg: str, lineno: int, fail: Callable[[int, str], NoReturn]) -> dict[str, Any]:
    if verb == "target":
        return {"target": f"{pages_to_kib(int(arg))}KiB"}
    if verb == "max_retry":
        return {"sysfs": {"max_retry_count": arg}}
    if verb == "max_delay":
        return {"sysfs": {"max_schedule_delay": arg}}
    if verb == "alloc_ballooned":
        return {"alloc_ballooned": {"pages": int(arg), "signal_after": "0s"}}
    if verb == "online":
        return {"online": True}
    if verb == "mem_available":
        return {"mem_available": _auto_or_int(arg)}
    if verb == "hotplug_unpopulated":
        return {"hotplug_unpopulated": arg}
    if verb in ("host_free", "max_pages", "take", "give", "totalreserve", "free_ballooned"):
        return {verb: int(arg)}
    fail(lineno, f"unknown verb {verb!r}")
    return {}


def timeline_as_csv_rows(result: Result) -> list[dict[str, str]]:
    """The timeline in the oracle's CSV columns and spelling."""
    tl = result.timeline
    kthread = "thread_runs_at" in tl.columns
    own = ("cause", "work_pending", "work_expiry")
    rows = []
    for rec in tl.itertuples(index=False):
        row = {c: str(getattr(rec, c)) for c in CSV_COLUMNS if c not in own}
        cause = str(rec.cause)
        row["cause"] = CAUSE_TO_VERB.get(cause, cause)
        if kthread:  # the thread always sleeps with a timeout, or is about to run
            row["work_pending"] = "1"
            row["work_expiry"] = str(rec.thread_runs_at)
        else:
            row["work_pending"] = "1" if rec.work_pending else "0"
            row["work_expiry"] = str(rec.work_expiry)
        rows.append(row)
        if cause == "panic":  # the oracle stops here; balloonsim goes on to destroy the domain
            break
    return rows


def compare_with_csv(result: Result, csv_text: str, limit: int = 10) -> list[str]:
    """Differences between a balloonsim timeline and an oracle CSV, row by row (empty: equal)."""
    expected = list(csv.DictReader(io.StringIO(csv_text)))
    actual = timeline_as_csv_rows(result)
    problems = []
    for n, (want, got) in enumerate(zip(expected, actual, strict=False), 1):
        diffs = [f"{c}: oracle {want[c]}, balloonsim {got[c]}" for c in CSV_COLUMNS if want[c] != got[c]]
        if diffs:
            problems.append(f"row {n} ({want['cause']} at jiffy {want['jiffies']}): " + "; ".join(diffs))
            if len(problems) >= limit:
                break
    if len(expected) != len(actual) and len(problems) < limit:
        problems.append(f"the oracle has {len(expected)} rows, balloonsim {len(actual)}")
    return problems
