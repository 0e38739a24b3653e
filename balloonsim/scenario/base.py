"""What every scenario model shares: strict, frozen pydantic models, the name pattern, one-of choices."""

from collections.abc import Iterable

from pydantic import BaseModel, ConfigDict

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


def the_one_set(model: BaseModel, names: tuple[str, ...], owner: str, noun: str) -> str:
    """The one of ``names`` that ``model`` sets; a ValueError naming them when not exactly one is.

    Each of ``names`` defaults to None, so only the fields the data gave can be set (an event has
    three of sixteen: this is called for each event of a script, and by the engine for each).
    """
    found = [k for k in model.model_fields_set if k in names and getattr(model, k) is not None]
    if len(found) != 1:
        which = f"found {', '.join(sorted(found))}" if found else "found none"
        raise ValueError(f"{owner} has exactly one {noun} ({which}); {noun}s: {', '.join(names)}")
    return found[0]


def known(name: str, names: Iterable[str], noun: str, plural: str) -> str:
    """``name`` if it is one of ``names``; else a ValueError listing them."""
    names = list(names)
    if name not in names:
        raise ValueError(f"unknown {noun} {name!r}; {plural}: {', '.join(names)}")
    return name
