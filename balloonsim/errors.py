"""The errors balloonsim reports to people, each with a message that says what to fix."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

#: Where a problem is in a scenario: keys and list indices, e.g. ("events", 0, "at").
Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    """A location as people write it: ``events.0.at`` (an odd key quoted, so the path stays one line)."""
    return ".".join(_part(p) for p in loc) or "(top)"


def _part(part: str | int) -> str:
    text = str(part)
    return text if text.isprintable() and text else repr(text)


class BalloonsimError(Exception):
    """Base class: an error the command line prints without a traceback."""


class ScenarioError(BalloonsimError):
    """A scenario file that cannot be used: one ``file:line: path: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))

    def __str__(self) -> str:
        return "\n".join(self.problems)

    def __reduce__(self) -> tuple:
        return type(self), (self.problems,)  # survives a process pool's pickling


class InvalidScenario(ScenarioError, ValueError):
    """Scenario data (not a file) that breaks the schema or a rule: one ``path: message`` per problem.

    ``issues`` keeps each problem's location, for a loader that knows where it is in a file.
    """

    def __init__(self, issues: list[tuple[Loc, str]]):
        self.issues = issues
        super().__init__([f"{dotted(loc)}: {message}" for loc, message in issues])

    def __reduce__(self) -> tuple:
        return type(self), (self.issues,)


class UnknownPath(ScenarioError, KeyError):
    """``Scenario.replace`` was given a dotted path the scenario does not have."""


class ScenarioWarning(UserWarning):
    """A legal but odd scenario: the run goes on, the message says what to expect."""


@contextmanager
def warnings_printed(stream: TextIO) -> Iterator[None]:
    """Inside, balloonsim's warnings are printed to ``stream`` as they come, one line each (the
    command line's way): a ScenarioWarning as its ``file:line: path: warning: ...`` text, a
    RunWarning after ``balloonsim: warning:``; others as Python prints them."""
    python_way = warnings.showwarning

    def show(message: Warning | str, category: type[Warning], *args: object, **kw: object) -> None:
        if issubclass(category, ScenarioWarning):
            print(message, file=stream)
        elif issubclass(category, RunWarning):
            print(f"balloonsim: warning: {message}", file=stream)
        else:
            python_way(message, category, *args, **kw)  # type: ignore[arg-type]

    with warnings.catch_warnings():
        warnings.simplefilter("always", ScenarioWarning)
        warnings.simplefilter("always", RunWarning)
        warnings.showwarning = show
        yield


class UsageError(BalloonsimError):
    """A place the user named cannot be used (an output folder, a damaged result): exit status 2."""


class SimulationError(BalloonsimError):
    """The model reached a state the kernel or Xen could not be in (a broken
    invariant, a kernel BUG_ON, a livelock).  The message names the step."""


class KernelBug(SimulationError):
    """A ``BUG_ON`` in the modelled kernel code fired."""


class RunWarning(UserWarning):
    """A run goes on, but something about it deserves a word (its size, for one)."""
