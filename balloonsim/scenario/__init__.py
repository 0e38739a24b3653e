"""Scenarios: the YAML schema (``model``), its field types (``types``) and the loader."""

from balloonsim.scenario.loader import load_scenario, parse_scenario
from balloonsim.scenario.model import Domain, Event, Scenario

__all__ = ["Domain", "Event", "Scenario", "load_scenario", "parse_scenario"]
