"""Load a scenario file: decoded text, then YAML within limits (``yamldoc``), then ``Scenario.model_validate``.

Every problem of a file is reported at once, one line each, as
``file:line: path: message``: the scenario's own validation finds them (types,
and the rules across fields in ``rules``), the loader finds their lines.
Warnings become ScenarioWarnings ``file:line: path: warning: message``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq, TaggedScalar
from ruamel.yaml.scalarbool import ScalarBoolean

from balloonsim.errors import InvalidScenario, Loc, ScenarioError, ScenarioWarning, dotted
from balloonsim.scenario.model import Scenario, slug
from balloonsim.scenario.rules import WARNINGS
from balloonsim.scenario.yamldoc import MAX_BYTES, load_yaml
from balloonsim.textfile import TextError, read_text

#: top-level keys that hold YAML anchors for reuse (``x-guest: &guest {...}``), not scenario fields
EXTENSION_PREFIX = "x-"


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; raise ScenarioError listing every problem."""
    path = Path(path)
    try:
        text = read_text(path, MAX_BYTES)
    except TextError as err:
        raise ScenarioError([str(err)]) from None
    return parse_scenario(text, str(path), default_name=slug(path.stem), base_dir=path.parent)


def parse_scenario(
    text: str, filename: str = "<scenario>", *, default_name: str = "scenario", base_dir: Path | None = None
) -> Scenario:
    """Validate scenario text (YAML); ``filename`` labels the messages, ``base_dir`` anchors relative files."""
    doc = load_yaml(text, filename)
    if not isinstance(doc, CommentedMap):
        raise ScenarioError([f"{filename}:1: the file must be a YAML mapping (name, duration, host, domains, events)"])
    if "name" not in doc:
        doc["name"] = default_name
    # x- keys are the user's own (anchors to share): never converted, however large
    data = {str(k): plain(v) for k, v in doc.items() if not str(k).startswith(EXTENSION_PREFIX)}
    found: list[tuple[Loc, str]] = []
    try:
        scenario = Scenario.model_validate(data, context={"base_dir": base_dir or Path.cwd(), WARNINGS: found})
    except InvalidScenario as err:
        raise ScenarioError(in_line_order(doc, filename, err.issues)) from None
    for message in in_line_order(doc, filename, [(loc, f"warning: {m}") for loc, m in found]):
        warnings.warn(ScenarioWarning(message), stacklevel=2)
    return scenario


def in_line_order(doc: CommentedMap, filename: str, issues: list[tuple[Loc, str]]) -> list[str]:
    """``file:line: path: message`` for each issue, by line, each message once."""
    lines = sorted(((line_of(doc, loc), loc, message) for loc, message in issues), key=lambda p: p[0])
    return list(dict.fromkeys(f"{filename}:{line}: {dotted(loc)}: {message}" for line, loc, message in lines))


def plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalars as plain dicts, lists, strings and numbers."""
    if type(node) in (str, int):  # already plain (as flow_events reads events): most scalars of a long file
        return node
    if isinstance(node, dict):
        return {str(k): plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    if isinstance(node, ScalarBoolean):  # an anchored true or false: an int subclass
        return bool(node)
    if isinstance(node, TaggedScalar):  # a tag ruamel keeps (!!str 1GiB): its text
        return node.value
    for kind in (bool, int, float, str):  # ruamel's ScalarInt, ScalarFloat, its string styles
        if isinstance(node, kind):
            return kind(node)
    return node


def line_of(doc: Any, loc: Loc) -> int:
    """1-based line of the deepest part of ``loc`` that the document has."""
    line = 0
    node = doc
    for part in loc:
        if isinstance(node, CommentedMap) and part in (node.lc.data or {}):  # not a key merged in by <<
            line = node.lc.key(part)[0]
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lc.item(part)[0]
            node = node[part]
        else:
            break
    return line + 1
