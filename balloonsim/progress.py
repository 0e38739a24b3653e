"""The progress bar of ``balloonsim run``: simulating, saving the tables, drawing the figures.

One line on standard error, one stage after another, in numbers people read
(``quickstart: simulating 45/90 s``, ``saving tables 2/5``, ``drawing figures 1/4``) with
the time the stage has taken and the time it still needs.  It is shown
when standard error is a terminal (tqdm's ``disable=None``) unless ``shown`` forces it on or off,
and it clears its line when done.
"""

from __future__ import annotations

import sys

from tqdm import tqdm

from balloonsim.units import ns_to_s

#: what the stage does, a bar, time taken < time still needed
BAR = "{desc} |{bar}| {elapsed}<{remaining}"


class RunProgress:
    """The bar of one run, stage by stage.  It is a ``ProgressSink`` for ``Simulation.run``."""

    def __init__(self, name: str, shown: bool | None = None):
        self.name = name
        self.shown = sys.stderr.isatty() if shown is None else shown
        self._stage = ""
        self._bar: tqdm | None = None

    def simulated(self, now_ns: int, end_ns: int) -> None:
        """The engine's report: ``now_ns`` of ``end_ns`` simulated."""
        self._report("simulating", f"simulating {_sim_seconds(now_ns, end_ns)}", now_ns, end_ns)

    def saving(self, tables: int) -> None:
        self._report("saving", f"saving tables 0/{tables}", 0, tables)

    def saved(self, _table: str) -> None:
        """One more table written."""
        assert self._bar is not None
        done, total = self._bar.n + 1, self._bar.total
        self._report("saving", f"saving tables {done}/{total}", done, total)

    def drawing(self, done: int, total: int) -> None:
        """``write_figures``' report: ``done`` of ``total`` figures drawn, the next one being drawn."""
        self._report("drawing", f"drawing figures {done}/{total}", done, total)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._stage = ""

    def __enter__(self) -> RunProgress:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _report(self, stage: str, text: str, done: int, total: int) -> None:
        """``done`` of ``total`` in ``stage``; its first report opens a new bar, so that the elapsed and
        remaining times are the stage's own."""
        if self._stage != stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(
                desc=f"{self.name}: {text}",
                total=total,
                initial=done,
                bar_format=BAR,
                leave=False,
                disable=not self.shown,
            )
            return
        assert self._bar is not None
        self._bar.set_description_str(f"{self.name}: {text}", refresh=False)
        self._bar.update(done - self._bar.n)


def _sim_seconds(now_ns: int, end_ns: int) -> str:
    """'45/90 s': whole seconds for runs of 10 s or more, tenths from 1 s, milliseconds below."""
    end_s = ns_to_s(end_ns)
    digits = 0 if end_s >= 10 else 1 if end_s >= 1 else 3
    return f"{ns_to_s(now_ns):.{digits}f}/{end_s:.{digits}f} s"
