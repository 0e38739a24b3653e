"""The scenario's hash, stored with every result: SHA-256 of its validated dump as sorted JSON.

The text hashed is exactly ``json.dumps(scenario.model_dump(mode="json"), sort_keys=True)`` (with
a replayed trace's file named by its content), as it always was, so results saved earlier keep
their hashes.  It is built without dumping every event through pydantic and the JSON encoder
(7 us an event here, 1.4 s for a script of 200,000): events that differ only in their time share
one dumped text, and each event's own time is put into it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from balloonsim import units

if TYPE_CHECKING:
    from balloonsim.scenario.model import Event, Scenario


def scenario_digest(scenario: Scenario) -> str:
    data = scenario.model_dump(mode="json", exclude={"events"})
    for i, domain in enumerate(scenario.domains):
        for j, workload in enumerate(domain.workloads):
            if workload.replay is not None:  # a trace counts by its content, not by where its file is
                trace = repr(workload.replay.trace).encode()
                data["domains"][i]["workloads"][j]["replay"]["file"] = hashlib.sha256(trace).hexdigest()
    # json.dumps(..., sort_keys=True) of the whole: the same separators at every level
    values = {key: json.dumps(value, sort_keys=True) for key, value in data.items()}
    values["events"] = events_json(scenario.events)
    parts = [f"{json.dumps(key)}: {values[key]}" for key in sorted(values)]
    return hashlib.sha256(("{" + ", ".join(parts) + "}").encode()).hexdigest()


def events_json(events: Iterable[Event]) -> str:
    """``json.dumps([e.model_dump(mode="json") for e in events], sort_keys=True)``, each distinct rest once."""
    around: dict[tuple[Any, ...], tuple[str, str]] = {}  # every field but the time -> the text before and after it
    texts = []
    for event in events:
        rest = event.__dict__.copy()
        at = rest.pop("at")
        # with the names, whatever their order; equal values dump alike (no int field holds a bool)
        key = (tuple(rest), tuple(rest.values()))
        if key not in around:
            around[key] = _around_time(event)
        before, after = around[key]
        texts.append(f'{before}"{units.format_ns(at)}"{after}')
    return "[" + ", ".join(texts) + "]"


def _around_time(event: Event) -> tuple[str, str]:
    """An event's JSON text before and after its time's value.

    Sorted, "at" comes second, after alloc_ballooned, whose text (pages and a time, formatted)
    cannot hold it: the first '"at": ' is the key.
    """
    dumped = event.model_dump(mode="json")
    text = json.dumps(dumped, sort_keys=True)
    before, key, after = text.partition(f'"at": {json.dumps(dumped["at"])}')
    assert key, text
    return before + '"at": ', after
