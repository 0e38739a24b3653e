"""drivers/xen/xen-balloon.c: how targets reach the driver.

* The xenstore watch on ``memory/target`` (KiB).  On its first successful
  read it computes ``target_diff`` once: 0 for PV guests and dom0, else
  static-max (``memory/static-max``, or xend's ``memory/memory_static_max``,
  or ``current_pages`` when neither exists) minus the ``target_pages`` of that
  moment.  Every target is passed on as ``new_target - target_diff``.
* The sysfs files of ``xen_memory0``: ``target_kb`` and ``target`` set the
  target directly in pages (no ``target_diff``, nothing written back to
  xenstore); ``max_retry_count`` and ``max_schedule_delay`` are raw
  ``unsigned long`` views of balloon_stats; ``scrub_pages`` is a bool.
  Each parses its text the way its kernel helper does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Protocol

from balloonsim.kernel.interface import EINVAL, BalloonDriver
from balloonsim.units import PAGE_SHIFT
from balloonsim.xen.toolstack import STATIC_MAX, TARGET, XEND_STATIC_MAX

ULONG_MASK = (1 << 64) - 1
ERANGE = 34


class FrontendKernel(Protocol):
    """What xen-balloon.c calls in the kernel: xenbus, the scrub flag, what kind of domain this is."""

    xen_pv_domain: bool
    xen_initial_domain: bool
    xen_scrub_pages: bool  # the xen_scrub_pages module parameter (drivers/xen/mem-reservation.c)

    def register_xenbus_watch(self, path: str, callback: Callable[[str], None]) -> None: ...
    def xenbus_read(self, path: str) -> str | None: ...
    def trace(self, kind: str, pages: int = -1, value: int = -1, message: str = "") -> None: ...


def _radix(text: str) -> tuple[int, str]:
    """_parse_integer_fixup_radix for base 0: 0x -> 16, 0 -> 8, else 10."""
    if text[:2].lower() == "0x" and len(text) > 2 and text[2] in "0123456789abcdefABCDEF":
        return 16, text[2:]
    if text[:1] == "0":
        return 8, text
    return 10, text


def _leading_digits(text: str, base: int) -> str:
    digits = "0123456789abcdef"[:base]
    n = 0
    while n < len(text) and text[n].lower() in digits:
        n += 1
    return text[:n]


def simple_strtoull(text: str) -> tuple[int, str]:
    """simple_strtoull(cp, &end, 0): the value of the leading digits (0 if none), and the rest."""
    base, body = _radix(text)
    digits = _leading_digits(body, base)
    value = int(digits, base) if digits else 0
    return value & ULONG_MASK, body[len(digits) :]


def memparse(text: str) -> int:
    """memparse(): a number with an optional K/M/G/T/P/E suffix, in bytes."""
    value, rest = simple_strtoull(text)
    shift = {"k": 10, "m": 20, "g": 30, "t": 40, "p": 50, "e": 60}.get(rest[:1].lower(), 0)
    return (value << shift) & ULONG_MASK


def kstrtoul(text: str) -> int:
    """kstrtoul(s, 0, &v): the value, or -EINVAL / -ERANGE.  One trailing newline is allowed."""
    if text.startswith("+"):
        text = text[1:]
    if text.endswith("\n"):
        text = text[:-1]
    base, body = _radix(text)
    digits = _leading_digits(body, base)
    if not digits or len(digits) != len(body):
        return -EINVAL
    value = int(digits, base)
    return -ERANGE if value > ULONG_MASK else value


def kstrtobool(text: str) -> bool | None:
    """kstrtobool: y/Y/1/on -> True, n/N/0/off -> False, else None (-EINVAL)."""
    if text[:1] in ("y", "Y", "1"):
        return True
    if text[:1] in ("n", "N", "0"):
        return False
    if text[:1] in ("o", "O") and text[1:2] in ("n", "N"):
        return True
    if text[:1] in ("o", "O") and text[1:2] in ("f", "F"):
        return False
    return None


_LLU = re.compile(r"\s*\+?([0-9]+)")


def scan_llu(text: str | None) -> int | None:
    """xenbus_scanf(..., "%llu"): the number, or None when the key is missing or not a number."""
    m = _LLU.match(text) if text is not None else None
    return int(m.group(1)) & ULONG_MASK if m else None


class XenBalloonFrontend:
    def __init__(self, kernel: FrontendKernel, driver: BalloonDriver):
        self.kernel = kernel
        self.driver = driver
        self.watch_fired = False  # static bool watch_fired
        self.target_diff = 0  # static long target_diff

    def xen_balloon_init(self) -> None:
        """Register the sysfs device (nothing to model) and the xenstore watch."""
        self.kernel.register_xenbus_watch(TARGET, self.watch_target)

    def watch_target(self, _path: str) -> None:
        new_target = scan_llu(self.kernel.xenbus_read(TARGET))
        if new_target is None:
            # This is ok (for domain0 at least) - so just return.
            self.kernel.trace("watch_no_target")
            return

        # The value is in KiB: PAGE_SHIFT - 10 converts it to pages.
        new_target >>= PAGE_SHIFT - 10

        if not self.watch_fired:
            self.watch_fired = True
            static_max = scan_llu(self.kernel.xenbus_read(STATIC_MAX))
            if static_max is None:
                static_max = scan_llu(self.kernel.xenbus_read(XEND_STATIC_MAX))
            if static_max is not None:
                static_max >>= PAGE_SHIFT - 10
            else:
                static_max = self.driver.balloon_stats.current_pages
            if self.kernel.xen_pv_domain or self.kernel.xen_initial_domain:
                self.target_diff = 0
            else:
                self.target_diff = static_max - self.driver.balloon_stats.target_pages

        self.driver.balloon_set_new_target(new_target - self.target_diff)

    # -- sysfs: /sys/devices/system/xen_memory/xen_memory0/ --------------------------

    def sysfs_store(self, attribute: str, text: str) -> int:
        """Write ``text`` to a sysfs attribute; 0, or -errno as write(2) would see it."""
        stats = self.driver.balloon_stats
        if attribute == "target_kb":
            target_bytes = (simple_strtoull(text)[0] * 1024) & ULONG_MASK
            self.driver.balloon_set_new_target(target_bytes >> PAGE_SHIFT)
            return 0
        if attribute == "target":
            self.driver.balloon_set_new_target(memparse(text) >> PAGE_SHIFT)
            return 0
        if attribute in ("max_retry_count", "max_schedule_delay"):
            value = kstrtoul(text)
            if value < 0:
                return value
            setattr(stats, attribute, value)
            return 0
        if attribute == "scrub_pages":
            flag = kstrtobool(text)
            if flag is None:
                return -EINVAL
            self.kernel.xen_scrub_pages = flag
            return 0
        raise ValueError(f"no sysfs attribute {attribute!r}")
