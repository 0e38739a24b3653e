"""Settings given beside a scenario (``KEY=VALUE``), as ``balloonsim compare --a/--b`` takes them.

A key is a dotted path into the scenario (``Scenario.replace``'s).  One that
starts with a domain's field rather than a scenario's (``balloon.driver``,
``kernel.thp``, ``costs``, ``memory``) is set in every domain;
``domains.NAME.…`` sets it in one.  A value is read as a YAML scalar (or flow
collection): ``4`` is a number, ``true`` a boolean, ``v5.15`` and ``512MiB`` text.
Problems are ScenarioErrors, one line each, starting with where the setting came from.
"""

from __future__ import annotations

from typing import Any

from balloonsim.errors import InvalidScenario, ScenarioError, UnknownPath, dotted
from balloonsim.scenario.loader import plain
from balloonsim.scenario.model import Domain, Scenario
from balloonsim.scenario.yamldoc import load_yaml


def parse_setting(text: str, origin: str) -> tuple[str, Any]:
    """``"balloon.max_retry_count=1"`` -> ``("balloon.max_retry_count", 1)``; ``origin`` (``--b``) labels errors."""
    key, equals, value = text.partition("=")
    key = key.strip()
    if not equals or not key:
        raise ScenarioError([f"{origin} {text}: write KEY=VALUE, e.g. balloon.max_retry_count=1"])
    return key, plain(load_yaml(value, f"{origin} {key}"))


def every_domain(scenario: Scenario, settings: dict[str, Any], origin: str) -> dict[str, Any]:
    """The settings as ``Scenario.replace`` paths: a domain field's key once for each domain."""
    paths: dict[str, Any] = {}
    for key, value in settings.items():
        field = key.split(".")[0]
        if field in Scenario.model_fields:
            paths[key] = value
        elif field in Domain.model_fields:
            paths.update({f"domains.{i}.{key}": value for i in range(len(scenario.domains))})
        else:
            raise ScenarioError(
                [
                    f"{origin} {key}: no such setting; a scenario field ({', '.join(Scenario.model_fields)}) "
                    f"or a domain field, set in every domain ({', '.join(Domain.model_fields)})"
                ]
            )
    return paths


def with_settings(scenario: Scenario, settings: dict[str, Any], origin: str) -> Scenario:
    """``scenario`` with ``settings`` applied (keys as ``every_domain`` reads them), validated again."""
    if not settings:
        return scenario
    paths = every_domain(scenario, settings, origin)
    try:
        return scenario.replace(paths)
    except InvalidScenario as err:
        shared = [k for k in settings if k.split(".")[0] in Domain.model_fields]
        lines = [f"{origin} {_as_given(loc, shared)}: {message}" for loc, message in err.issues]
        raise ScenarioError(list(dict.fromkeys(lines))) from None  # a domain-wide key's problem once
    except UnknownPath as err:
        raise ScenarioError([f"{origin} {problem}" for problem in err.problems]) from None


def _as_given(loc: tuple[str | int, ...], shared: list[str]) -> str:
    """A problem's path as the user wrote the setting: ``domains.2.balloon.x`` is ``balloon.x``
    when ``balloon.x`` (or ``balloon``) was set in every domain."""
    path = dotted(loc)
    if len(loc) > 2 and loc[0] == "domains":
        inside = dotted(loc[2:])
        if any(inside == k or inside.startswith(k + ".") or k.startswith(inside + ".") for k in shared):
            return inside
    return path
