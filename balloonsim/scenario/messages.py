"""Pydantic's validation errors as (location, sentence) pairs that say what is allowed.

The location keeps only the keys and list items of the data that was
validated (pydantic adds its own parts: union branches, validator names), so
a loader can find each problem's line.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from balloonsim.errors import Loc


def issues_of(err: ValidationError, data: Any, root: type[BaseModel]) -> list[tuple[Loc, str]]:
    """Each error of ``err`` (from validating ``data`` as ``root``) as (location in data, message)."""
    issues = []
    for error in err.errors():
        loc = data_loc(data, error["loc"])
        issues.append((loc, explain(error, loc, root, data)))
    return issues


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


def explain(error: dict[str, Any], loc: Loc, root: type[BaseModel], data: Any = None) -> str:
    """A pydantic error as one sentence that says what is allowed."""
    kind = error["type"]
    if kind == "extra_forbidden":
        allowed = allowed_keys(root, loc[:-1], data)
        return f"unknown key {str(loc[-1])!r}" + (f"; allowed: {', '.join(allowed)}" if allowed else "")
    if kind == "missing":
        return "required"
    message = str(error["msg"])
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            message = message[len(prefix) :]
    return message


def allowed_keys(root: type[BaseModel], loc: Loc, data: Any = None) -> list[str]:
    """The field names of the model found at ``loc`` below ``root`` in the schema; a model whose
    fields depend on the data there (a manager's settings, by its kind) says which via ``concrete``."""
    model: Any = root
    for part in loc:
        data = data[part] if isinstance(data, (dict, list)) and _has(data, part) else None
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) and issubclass(model, BaseModel) else None
        if field is None:
            return []
        model = _model_in(field.annotation)
        if hasattr(model, "concrete"):
            model = model.concrete(data)
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


def _has(node: dict | list, part: str | int) -> bool:
    return part in node if isinstance(node, dict) else isinstance(part, int) and 0 <= part < len(node)
