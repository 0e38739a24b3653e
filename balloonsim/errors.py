"""The errors balloonsim reports to people, each with a message that says what to fix."""

from __future__ import annotations


class BalloonsimError(Exception):
    """Base class: an error the command line prints without a traceback."""


class ScenarioError(BalloonsimError):
    """A scenario file that cannot be used: one ``file:line: path: message`` per problem."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class SimulationError(BalloonsimError):
    """The model reached a state the kernel or Xen could not be in (a broken
    invariant, a kernel BUG_ON, a livelock).  The message names the step."""


class KernelBug(SimulationError):
    """A ``BUG_ON`` in the modelled kernel code fired."""


class RunWarning(UserWarning):
    """A run goes on, but something about it deserves a word (its size, for one)."""
