"""A long top-level ``events:`` list of one-line flow mappings, read without ruamel.yaml.

ruamel.yaml's round-trip reader is pure Python: some 600 us an event such as
``- {at: 4000000ns, domain: guest, target: 4190208KiB}`` (two minutes for
200,000 events), fifty times the event's validation.  Such a line needs no
YAML parser: this reads it, keeping its line for messages, when it has the
plainest shape -- ``key: value`` pairs whose values are words, integers
without leading zeros, or a number with a unit -- where the YAML 1.2 reading
is beyond doubt.  Any other line in the block (a quoted string, a tag, an
anchor, a nested mapping, ``true``, ``1e5``...) leaves the whole file to
ruamel.yaml, as before.
"""

from __future__ import annotations

import re

from ruamel.yaml.comments import CommentedSeq

_EVENTS_KEY = re.compile(r"events:[ \t]*(#.*)?")
_ITEM = re.compile(r"( *)- \{(.*)\}[ \t]*(?:[ \t]#.*)?")
_PAIR = re.compile(r"\s*([a-z_]+): +(0|[1-9][0-9]*|[0-9]+(?:\.[0-9]+)?[A-Za-z]+|[A-Za-z][A-Za-z0-9_.-]*)\s*")
#: plain words YAML 1.2 (or a 1.1 reader) would not read as strings
_NOT_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n"}


def split_events(text: str) -> tuple[str, int, CommentedSeq, int] | None:
    """(the text with the block's lines blanked, the 0-based line of ``events:``, the events, their
    nodes), or None when the file has no such block or anything in it needs the YAML reader."""
    if text.startswith("%") or "\n%" in text:  # a directive (%YAML 1.1) changes how scalars read
        return None
    lines = text.split("\n")
    keys = [i for i, line in enumerate(lines) if line.startswith("events:")]
    if len(keys) != 1 or not _EVENTS_KEY.fullmatch(lines[keys[0]]):
        return None
    start = keys[0]
    events = CommentedSeq()
    nodes = 1  # the list
    indent = None
    end = start + 1
    for end in range(start + 1, len(lines) + 1):
        line = lines[end] if end < len(lines) else ""
        stripped = line.strip()
        if end == len(lines) or (line[:1] not in (" ", "\t", "-", "#", "") and stripped):
            break  # the next top-level key, or the end: the block is whole
        if not stripped or stripped.startswith("#"):
            continue
        item = _ITEM.fullmatch(line)
        if item is None or (indent is not None and item.group(1) != indent):
            return None
        indent = item.group(1)
        event = _pairs(item.group(2))
        if event is None:
            return None
        events.lc.add_idx_line_col(len(events), [end, len(indent), end, len(indent) + 2])
        events.append(event)
        nodes += 1 + 2 * len(event)
    if not events:
        return None
    blanked = lines[:start] + ["events:"] + [""] * (end - start - 1) + lines[end:]
    return "\n".join(blanked), start, events, nodes


def _pairs(body: str) -> dict[str, str | int] | None:
    """``at: 5s, domain: a, target: 1GiB`` as a mapping; None for anything beyond the plainest form."""
    event: dict[str, str | int] = {}
    for part in body.split(","):
        pair = _PAIR.fullmatch(part)
        if pair is None:
            return None
        key, value = pair.groups()
        if key in event or value.lower() in _NOT_WORDS:
            return None
        event[key] = int(value) if value.isdigit() else value
    return event
