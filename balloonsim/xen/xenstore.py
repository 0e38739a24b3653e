"""xenstore: per-domain keys and watches.

A watch fires once when it is registered and again after every write to its
path (Xen ``docs/misc/xenstore.txt``: "When a watch is first set up it is
triggered once straight away").  Paths are relative to the
domain's home, ``/local/domain/<domid>/``.
"""

from __future__ import annotations

from collections.abc import Callable

WatchCallback = Callable[[str], None]


class XenStore:
    def __init__(self) -> None:
        self._values: dict[tuple[int, str], str] = {}
        self._watches: dict[tuple[int, str], list[WatchCallback]] = {}

    def read(self, domid: int, path: str) -> str | None:
        """The value at ``path``, or None when there is no such key (ENOENT)."""
        return self._values.get((domid, path))

    def write(self, domid: int, path: str, value: str) -> None:
        self._values[(domid, path)] = value
        for callback in list(self._watches.get((domid, path), ())):
            callback(path)

    def watch(self, domid: int, path: str, callback: WatchCallback) -> None:
        """Register a watch; like xenstored, fire it once straight away."""
        self._watches.setdefault((domid, path), []).append(callback)
        callback(path)

    def remove_domain(self, domid: int) -> None:
        """The domain is gone: its keys and watches with it (xenstored's domain release)."""
        self._values = {k: v for k, v in self._values.items() if k[0] != domid}
        self._watches = {k: v for k, v in self._watches.items() if k[0] != domid}
