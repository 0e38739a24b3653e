"""Load a scenario file: ruamel.yaml (YAML 1.2, with line numbers) then pydantic.

Every problem of a file is reported at once, one line each, as
``file:line: path: message``.  Type errors come from pydantic; the checks that
span several fields (domain references, event order, host capacity) are made
here on the raw document, so they are reported together with the type errors.
"""

from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from balloonsim import units
from balloonsim.errors import ScenarioError
from balloonsim.scenario.model import HOST_ACTIONS, Event, Scenario, slug

Loc = tuple[str | int, ...]
#: top-level keys that hold YAML anchors for reuse (``x-guest: &guest {...}``), not scenario fields
EXTENSION_PREFIX = "x-"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError listing every problem."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise ScenarioError([f"{path}: cannot read: {err.strerror}"]) from None
    return parse_scenario(text, str(path), default_name=slug(path.stem), base_dir=path.parent)


def parse_scenario(
    text: str, filename: str = "<scenario>", *, default_name: str = "scenario", base_dir: Path | None = None
) -> Scenario:
    """Validate scenario text (YAML); ``filename`` labels the messages, ``base_dir`` anchors relative files."""
    try:
        doc = YAML(typ="rt", pure=True).load(text)
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark is not None else 1
        raise ScenarioError([f"{filename}:{line}: YAML: {err.problem or err.context}"]) from None
    except YAMLError as err:
        raise ScenarioError([f"{filename}:1: YAML: {err}"]) from None
    if not isinstance(doc, CommentedMap):
        raise ScenarioError([f"{filename}:1: the file must be a YAML mapping (name, duration, host, domains, events)"])
    if "name" not in doc:
        doc["name"] = default_name

    problems: list[tuple[int, str]] = []

    def report(loc: Loc, message: str) -> None:
        problems.append((line_of(doc, loc), f"{filename}:{line_of(doc, loc)}: {dotted(loc)}: {message}"))

    scenario = None
    try:
        data = {k: v for k, v in _plain(doc).items() if not k.startswith(EXTENSION_PREFIX)}
        scenario = Scenario.model_validate(data, context={"base_dir": base_dir or Path.cwd()})
    except ValidationError as err:
        for e in err.errors(include_url=False):
            loc = data_loc(doc, e["loc"])
            report(loc, explain(e, loc))
    for loc, message in cross_field_problems(doc):
        report(loc, message)
    if scenario is not None:
        for loc, message in capacity_problems(scenario):
            report(loc, message)
    if problems:
        in_line_order = [message for _, message in sorted(problems, key=lambda p: p[0])]
        raise ScenarioError(list(dict.fromkeys(in_line_order)))  # each message once
    assert scenario is not None
    return scenario


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers as plain dicts and lists."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def data_loc(doc: Any, loc: tuple[Any, ...]) -> Loc:
    """Keep the parts of a pydantic error location that name keys or items of the document."""
    out: list[str | int] = []
    node = doc
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str) and not part.startswith(("function-", "literal[")):
            out.append(part)  # a missing or unknown key: keep it for the message
            node = None
    return tuple(out)


def line_of(doc: Any, loc: Loc) -> int:
    """1-based line of the deepest part of ``loc`` that the document has."""
    line = 0
    node = doc
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0]
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0]
            node = node[part]
        else:
            break
    return line + 1


def dotted(loc: Loc) -> str:
    return ".".join(str(p) for p in loc) or "(top)"


def explain(error: dict[str, Any], loc: Loc) -> str:
    """A pydantic error as one sentence that says what is allowed."""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(loc[:-1])
        return f"unknown key {loc[-1]!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def allowed_keys(loc: Loc) -> list[str]:
    """The field names of the model found at ``loc`` in the schema."""
    model: Any = Scenario
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _model_in(annotation: Any) -> Any:
    """The BaseModel inside Optional[...], list[...] or Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, list, typing.Annotated):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def cross_field_problems(doc: CommentedMap) -> list[tuple[Loc, str]]:
    """Problems that involve several fields, found on the raw document."""
    problems: list[tuple[Loc, str]] = []
    host = doc.get("host")
    if isinstance(host, dict) and "total" not in host and "free" not in host:
        problems.append((("host",), "give the host's total memory, its free memory at t=0, or both"))

    names: dict[str, int] = {}
    domains = doc.get("domains")
    for i, d in enumerate(domains if isinstance(domains, list) else []):
        name = d.get("name") if isinstance(d, dict) else None
        if isinstance(name, str):
            if name in names:
                problems.append(
                    (("domains", i, "name"), f"duplicate domain name {name!r} (also domains.{names[name]})")
                )
            else:
                names[name] = i

    duration = _time_or_none(doc.get("duration"))
    previous: int | None = None
    events = doc.get("events")
    for i, ev in enumerate(events if isinstance(events, list) else []):
        if not isinstance(ev, dict):
            continue
        actions = [k for k in ev if k in Event.model_fields and k not in ("at", "domain")]
        host_event = bool(actions) and all(a in HOST_ACTIONS for a in actions)
        if host_event and "domain" in ev:
            problems.append(((("events", i, "domain")), f"{actions[0]} acts on the host; remove 'domain'"))
        elif not host_event and actions and "domain" not in ev:
            problems.append(
                (("events", i), f"{actions[0]} needs a 'domain' (one of: {', '.join(names) or 'none defined'})")
            )
        elif "domain" in ev and not host_event and ev["domain"] not in names and names:
            problems.append((("events", i, "domain"), f"unknown domain {ev['domain']!r}; domains: {', '.join(names)}"))
        at = _time_or_none(ev.get("at"))
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
        previous = at if previous is None else max(previous, at)
    return problems


def capacity_problems(scenario: Scenario) -> list[tuple[Loc, str]]:
    """Checks that need validated sizes: does the host hold its domains at boot?"""
    booted = sum(d.memory for d in scenario.domains)
    host = scenario.host
    if host.total is not None and host.free is None and booted > host.total:
        return [
            (
                ("host", "total"),
                f"the domains boot with {units.format_pages(booted)}, more than the host's "
                f"{units.format_pages(host.total)}",
            )
        ]
    if host.total is not None and host.free is not None and booted + host.free > host.total:
        return [
            (
                ("host", "free"),
                f"free ({units.format_pages(host.free)}) plus the domains' boot memory "
                f"({units.format_pages(booted)}) exceeds the host total ({units.format_pages(host.total)})",
            )
        ]
    return []


def _time_or_none(value: Any) -> int | None:
    try:
        return units.parse_time_ns(value)
    except (units.UnitError, TypeError):
        return None
