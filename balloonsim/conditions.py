"""``--fail-if`` conditions over a comparison's metrics, read by a small grammar (never ``eval``).

::

    condition := side OP side                OP: > >= < <= == !=
    side      := operand [(* / + -) operand]
    operand   := [a. | b. | change.]METRIC   (no prefix: the B run's value; change: B - A)
               | [-]NUMBER[UNIT]             30s, 250ms, 512MiB, 1.1, 0

A number's unit follows the metric it is compared with: a time for seconds
(a bare number is seconds), a size for pages (a bare number is pages); counts
take none.  A condition over guest metrics is checked for every guest, one over
host metrics for the host; it holds where the comparison is true (a time that
never came is +inf: ``time_to_target > 30s`` holds for a target not reached).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from balloonsim.errors import UsageError
from balloonsim.results.metrics import COUNT, HOST_METRICS, METRICS, format_value, metric_names, read_quantity
from balloonsim.results.result import HOST

COMPARISONS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
ARITHMETIC: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "*": operator.mul,
    "/": operator.truediv,
    "+": operator.add,
    "-": operator.sub,
}
PREFIXES = ("a", "b", "change")
_TOKEN = re.compile(
    r"\s*(?:(?P<op>>=|<=|==|!=|>|<)"
    r"|(?P<ref>(?:[A-Za-z_]\w*\.)?[A-Za-z_]\w*)"
    r"|(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[A-Za-z]+)?"
    r"|(?P<arith>[-*/+]))"
)


class ConditionError(UsageError):
    """A condition that cannot be read: exit status 2, the message says what is allowed."""


@dataclass(frozen=True)
class Ref:
    which: str  # a, b or change
    metric: str

    @property
    def text(self) -> str:
        return f"{self.which}.{self.metric}"


@dataclass(frozen=True)
class Number:
    sign: int
    digits: str
    unit: str | None

    def value(self, metric_unit: str, text: str) -> float:
        """The number in the metric's unit: seconds for a time, pages for a size."""
        try:
            return self.sign * read_quantity(f"{self.digits}{self.unit or ''}", metric_unit)
        except ValueError as err:  # a UnitError too
            raise ConditionError(f"--fail-if {text!r}: {err}") from None


Operand = Ref | Number


@dataclass(frozen=True)
class Side:
    first: Operand
    arith: str | None = None
    second: Operand | None = None

    @property
    def refs(self) -> list[Ref]:
        return [o for o in (self.first, self.second) if isinstance(o, Ref)]


@dataclass(frozen=True)
class Condition:
    text: str
    left: Side
    op: str
    right: Side
    unit: str  # the unit of its metrics
    host: bool  # over host metrics (else guest metrics)

    @property
    def refs(self) -> list[Ref]:
        return [*self.left.refs, *self.right.refs]

    def holds(self, wide: pd.DataFrame) -> pd.Series:
        """Per guest of ``wide`` (index domain, the host's row HOST; columns (a|b|change, metric)),
        or for the host if its metrics are the host's: does it hold?"""
        wide = wide[(wide.index == HOST) == self.host]
        left, right = self._side(self.left, wide), self._side(self.right, wide)
        with np.errstate(invalid="ignore"):
            return pd.Series(COMPARISONS[self.op](left, right), index=wide.index)

    def _side(self, side: Side, wide: pd.DataFrame) -> np.ndarray:
        first = self._operand(side.first, wide)
        if side.arith is None or side.second is None:
            return first
        with np.errstate(invalid="ignore", divide="ignore"):
            return ARITHMETIC[side.arith](first, self._operand(side.second, wide))

    def _operand(self, operand: Operand, wide: pd.DataFrame) -> np.ndarray:
        if isinstance(operand, Ref):
            return wide[(operand.which, operand.metric)].to_numpy(dtype=float)
        return np.full(len(wide), operand.value(self.unit, self.text))

    def explain(self, wide: pd.DataFrame, domain: str) -> str:
        """The values the condition read for ``domain``: 'b.oom_kills = 2'."""
        row = wide.loc[domain]
        shown = dict.fromkeys(r.text for r in self.refs)
        parts = []
        for text in shown:
            which, metric = text.split(".", 1)
            parts.append(
                f"{text} = {format_value(METRICS[metric].unit, row[(which, metric)], signed=which == 'change')}"
            )
        return ", ".join(parts)


def parse_condition(text: str) -> Condition:
    """Read one ``--fail-if`` condition; a ConditionError (one line) says what is wrong."""
    tokens = _tokens(text)
    try:
        position = next(i for i, (kind, _, _) in enumerate(tokens) if kind == "op")
    except StopIteration:
        raise ConditionError(
            f"--fail-if {text!r}: no comparison; write e.g. 'oom_kills > 0' ({', '.join(COMPARISONS)})"
        ) from None
    left = _side(tokens[:position], text)
    right = _side(tokens[position + 1 :], text)
    refs = [*left.refs, *right.refs]
    if not refs:
        raise ConditionError(f"--fail-if {text!r}: names no metric; metrics: {metric_names()}")
    units = {METRICS[r.metric].unit for r in refs}
    hosts = {METRICS[r.metric] in HOST_METRICS for r in refs}
    if len(units) > 1 or len(hosts) > 1:
        raise ConditionError(f"--fail-if {text!r}: compares metrics of different kinds ({', '.join(sorted(units))})")
    condition = Condition(text, left, tokens[position][1], right, units.pop(), hosts.pop())
    for side in (left, right):  # read each number once now, so a bad unit is bad input before any run
        for operand in (side.first, side.second):
            if isinstance(operand, Number):
                multiplier = operand is side.second and side.arith in ("*", "/")
                operand.value(COUNT if multiplier else condition.unit, text)
    return condition


def _tokens(text: str) -> list[tuple[str, str, str]]:
    """(kind, text, unit) of each token: op, ref, number (its unit, or ''), arith."""
    tokens, position, end = [], 0, len(text.rstrip())
    while position < end:
        match = _TOKEN.match(text, position)
        if match is None:
            raise ConditionError(
                f"--fail-if {text!r}: cannot read {text[position:].strip()!r}; write [a.|b.|change.]METRIC OP "
                "NUMBER[UNIT], e.g. 'oom_kills > 0' or 'b.backoff_seconds > a.backoff_seconds * 1.1'"
            )
        kind = next(k for k in ("op", "ref", "number", "arith") if match.group(k) is not None)
        tokens.append((kind, match.group(kind), match.group("unit") or ""))
        position = match.end()
    return tokens


def _side(tokens: list[tuple[str, str, str]], text: str) -> Side:
    """One side of the comparison: an operand, or two joined by * / + - (a leading - negates a number)."""
    operands: list[Operand] = []
    arith: str | None = None
    sign = 1
    for kind, value, unit in tokens:
        expecting = len(operands) == (1 if arith else 0)
        if expecting and kind == "arith" and value == "-" and sign == 1:
            sign = -1
        elif not expecting and kind == "arith" and arith is None:
            arith = value
        elif expecting and kind == "number":
            operands.append(Number(sign, value, unit or None))
            sign = 1
        elif expecting and kind == "ref" and sign == 1:
            operands.append(_ref(value, text))
        else:
            operands = []
            break
    if len(operands) != (2 if arith else 1):
        raise ConditionError(
            f"--fail-if {text!r}: each side is one value or two joined by * / + -, e.g. 'a.backoff_seconds * 1.1'"
        )
    return Side(operands[0], arith, operands[1] if arith else None)


def _ref(text: str, condition: str) -> Ref:
    which, _, metric = text.rpartition(".")
    if metric not in METRICS:
        raise ConditionError(f"--fail-if {condition!r}: unknown metric {metric!r}; metrics: {metric_names()}")
    if which and which not in PREFIXES:
        raise ConditionError(f"--fail-if {condition!r}: {which!r}: a metric's prefix is one of a., b., change.")
    return Ref(which or "b", metric)
