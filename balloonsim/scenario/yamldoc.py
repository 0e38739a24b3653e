"""YAML text to a round-trip document (ruamel.yaml, YAML 1.2, line numbers kept), within limits.

A document beyond what any scenario needs is refused before any Python
object is built from it: nesting deeper than MAX_DEPTH, or more than
MAX_NODES nodes once every alias is counted as the whole node it names (an
alias "bomb" of a few hundred bytes expands to billions; a 100,000-guest
scenario has a few million).  Each problem is one
``file:line: YAML: ...`` line.
"""

from __future__ import annotations

import warnings
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.composer import Composer, ComposerError, MaxDepthExceededError
from ruamel.yaml.constructor import ConstructorError, RoundTripConstructor
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import AliasEvent
from ruamel.yaml.reader import ReaderError

from balloonsim.errors import ScenarioError, ScenarioWarning
from balloonsim.scenario.flow_events import split_events
from balloonsim.units import quoted

#: The largest scenario file read (100,000 guests take ~12 MiB; ruamel.yaml reads some 0.1-0.3 MiB a second).
MAX_BYTES = 64 << 20
#: Mappings and lists inside each other (a scenario needs about 7).
MAX_DEPTH = 40
#: Nodes of the document with every alias expanded (100 guests: a few thousand; 100,000: a few million).
MAX_NODES = 5_000_000
#: Past this many nodes, reading is said to take long: ruamel builds each node with its position,
#: about a GiB and up to a minute per million nodes.
NODES_WARNING = 1_000_000


def load_yaml(text: str, filename: str) -> Any:
    """The document in ``text``; a ScenarioError with one line if it is not YAML or is beyond the limits.

    A long ``events:`` list of one-line flow mappings is read by ``flow_events``, the rest by
    ruamel.yaml; when that is not the same document (anything unusual, or an error), ruamel.yaml
    reads the whole, as it always did, for the same document and the same messages.
    """
    if len(text) > MAX_BYTES:
        raise ScenarioError([f"{filename}: larger than {MAX_BYTES >> 20} MiB, more than a scenario needs"])
    split = split_events(text)
    if split is not None:
        rest, line, events, nodes = split
        try:
            doc, expanded = _load(rest, filename)
        except ScenarioError:
            return _load(text, filename)[0]
        if (
            isinstance(doc, CommentedMap)
            and doc.get("events", "") is None
            and doc.lc.key("events")[0] == line
            and expanded - 1 + nodes <= MAX_NODES  # the blanked key's null is not a node of the file
        ):
            doc["events"] = events
            return doc
    return _load(text, filename)[0]


def _load(text: str, filename: str) -> tuple[Any, int]:
    """ruamel.yaml's document, and its nodes with aliases expanded."""
    yaml = YAML()  # round-trip (the default typ): line numbers kept; always pure Python
    yaml.max_depth = MAX_DEPTH
    yaml.Composer = type("Composer", (_BoundedComposer,), {"filename": filename})
    yaml.Constructor = _Constructor
    try:
        return yaml.load(text), yaml.composer.expanded
    except MaxDepthExceededError as err:
        raise ScenarioError([f"{filename}:{_line(err)}: YAML: nested deeper than {MAX_DEPTH} levels"]) from None
    except MarkedYAMLError as err:
        raise ScenarioError([f"{filename}:{_line(err)}: YAML: {_one_line(err.problem or err.context)}"]) from None
    except ReaderError as err:
        line = text.count("\n", 0, err.position) + 1
        raise ScenarioError([f"{filename}:{line}: YAML: character #x{err.character:04x}: {err.reason}"]) from None
    except YAMLError as err:
        raise ScenarioError([f"{filename}:1: YAML: {_one_line(err)}"]) from None
    except ValueError as err:  # ruamel's scanner on an escape beyond Unicode (\U00110000)
        raise ScenarioError([f"{filename}:1: YAML: {_one_line(err)}"]) from None


def _line(err: MarkedYAMLError) -> int:
    mark = err.problem_mark or err.context_mark
    return mark.line + 1 if mark is not None else 1


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


class _BoundedComposer(Composer):
    """ruamel's composer, counting the nodes the document expands to as it goes."""

    filename = "<scenario>"

    def __init__(self, loader: Any = None) -> None:
        super().__init__(loader)
        self.warn_double_anchors = False  # legal YAML: a later anchor of the same name wins
        self.expanded = 0  # nodes so far, each alias counted as the whole node it names
        self.sizes: dict[int, int] = {}  # id(anchored node) -> nodes it expands to
        self.built = 0  # nodes built (an alias costs nothing)

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.parser.peek_event()
        before = self.expanded
        node = super().compose_node(parent, index)
        if isinstance(event, AliasEvent):
            size = self.sizes.get(id(node))
            if size is None:  # the alias is inside the node it names
                raise ComposerError(None, None, f"alias {event.anchor!r} refers to a node around it", event.start_mark)
            self.expanded += size
        else:
            self.expanded += 1
            self.built += 1
            if node.anchor is not None:
                self.sizes[id(node)] = self.expanded - before
            if self.built == NODES_WARNING:
                message = (
                    f"{self.filename}:{event.start_mark.line + 1}: warning: {NODES_WARNING:,} YAML nodes so far: "
                    "reading takes about a GiB and up to a minute per million nodes"
                )
                warnings.warn(ScenarioWarning(message), stacklevel=2)
        if self.expanded > MAX_NODES:
            raise ComposerError(
                None,
                None,
                f"more than {MAX_NODES} nodes once aliases are expanded; a scenario needs far fewer",
                event.start_mark,
            )
        return node


class _Constructor(RoundTripConstructor):
    """ruamel's round-trip constructor; a scalar it cannot convert (``!!int x``, 5000 digits) is a YAML error."""

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError, KeyError):  # KeyError: !!bool 'maybe'
            kind = str(node.tag).split(":")[-1]
            raise ConstructorError(None, None, f"cannot read {quoted(node.value)} as {kind}", node.start_mark) from None
