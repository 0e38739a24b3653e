"""The plug-in points: balloon driver versions and host memory managers, by name.

Each entry is a name and where its code is (``"module:attribute"``), so the
scenario schema can check a name without importing the model, and adding a
driver version or a manager is one module plus one ``register`` line here.
Tests and notebooks may register an object directly (a toy driver, a
what-if manager).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Registry:
    def __init__(self, what: str):
        self.what = what
        self._entries: dict[str, Any] = {}

    def register(self, name: str, target: Any) -> None:
        """Add ``name``: an import path ``"package.module:attribute"`` or the object itself."""
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is already registered")
        self._entries[name] = target

    def unregister(self, name: str) -> None:
        del self._entries[name]

    @contextmanager
    def registered(self, name: str, target: Any) -> Iterator[None]:
        """``name`` is registered inside only (a notebook's what-if, a test's toy)."""
        self.register(name, target)
        try:
            yield
        finally:
            self.unregister(name)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def load(self, name: str) -> Any:
        """The registered object, imported on first use."""
        try:
            target = self._entries[name]
        except KeyError:
            raise KeyError(f"no {self.what} {name!r}; registered: {', '.join(self._entries)}") from None
        if isinstance(target, str):
            module, _, attribute = target.partition(":")
            target = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return target


#: balloon.c versions (``balloon.driver``); each runs in the same guest kernel (kernel/interface.py)
DRIVERS = Registry("balloon driver")
DRIVERS.register("v5.2", "balloonsim.kernel.balloon_v5_2:PreXsa300BalloonDriver")
DRIVERS.register("v5.12", "balloonsim.kernel.balloon:BalloonDriver")
DRIVERS.register("v5.15", "balloonsim.kernel.balloon_v5_15:KthreadBalloonDriver")
DRIVERS.register("v5.16", "balloonsim.kernel.balloon_v5_16:BootWaitBalloonDriver")
#: squeeze_test's scripted drivers, with their fault (``balloon.fault``)
FAULTY_DRIVER = "faulty"
DRIVERS.register(FAULTY_DRIVER, "balloonsim.kernel.fault_drivers:FaultyBalloonDriver")

#: host memory managers (``host.manager.kind``): a decision policy run at its cadence (managers/base.py)
MANAGERS = Registry("host memory manager")
#: no manager: targets come only from the scenario's events; a VM starts if Xen has its memory free
NO_MANAGER = "none"
MANAGERS.register(NO_MANAGER, "balloonsim.managers.none:NoManager")
MANAGERS.register("xl", "balloonsim.managers.xl:Xl")
MANAGERS.register("autoballoon", "balloonsim.managers.autoballoon:AutoBalloon")
MANAGERS.register("mom", "balloonsim.managers.mom:Mom")
MANAGERS.register("squeezed", "balloonsim.managers.squeezed:Squeezed")
MANAGERS.register("qmemman", "balloonsim.managers.qmemman_daemon:Qmemman")
