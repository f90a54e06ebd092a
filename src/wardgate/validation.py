"""Pydantic validation errors as ``yaml.path: problem`` lines an operator can act on.

Pydantic's own rendering of a :class:`~pydantic.ValidationError` is a multi-line dump with a
documentation URL under every error; that is what an operator saw for a guard option typo.
Everything that reads configuration (the YAML file, a guard's ``options:``) goes through
:func:`problems_from` instead, so each error becomes one :class:`~wardgate.errors.ConfigProblem`:
the dotted path into the YAML document and a short sentence, with a "did you mean" for an
unknown key. The submitted value is never echoed (it may be a secret).

Cross-field checks in model validators raise :func:`field_error` so their problem still points
at the field that is wrong (``models.0.fallbacks``) rather than at the enclosing object.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import PydanticCustomError

from wardgate.errors import ConfigProblem

#: Error ``type`` -> sentence, for the errors whose pydantic wording is unclear in a config.
_SENTENCES = {
    "extra_forbidden": "unknown key",
    "missing": "required, but missing",
}
_FIELD_ERROR = "wardgate_field"


def field_error(field: str, message: str) -> PydanticCustomError:
    """An error for a model validator to raise that names the (relative) field it is about."""
    return PydanticCustomError(_FIELD_ERROR, "{message}", {"message": message, "field": field})


def join_path(*parts: object) -> str:
    """``models``, ``0``, ``path`` -> ``models.0.path`` (empty parts are skipped)."""
    return ".".join(str(p) for p in parts if p != "")


def problems_from(
    exc: ValidationError, *, model: type[BaseModel] | None = None, prefix: str = ""
) -> list[ConfigProblem]:
    """One problem per pydantic error; ``model`` (the validated class) enables suggestions."""
    problems = []
    for err in exc.errors(include_url=False, include_input=False):
        loc: list[Any] = list(err["loc"])
        ctx = err.get("ctx") or {}
        if err["type"] == _FIELD_ERROR:
            loc += [p for p in str(ctx.get("field", "")).split(".") if p]
            message = str(ctx.get("message", err["msg"]))
        else:
            message = _sentence(err["type"], err["msg"])
        if err["type"] == "extra_forbidden" and model is not None:
            message += _suggestion(model, loc)
        problems.append(ConfigProblem(join_path(prefix, *loc) or "(top level)", message))
    return problems


def _sentence(kind: str, msg: str) -> str:
    if kind in _SENTENCES:
        return _SENTENCES[kind]
    for noise in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(noise)
    return msg[:1].lower() + msg[1:]


def _suggestion(model: type[BaseModel], loc: Sequence[Any]) -> str:
    """`` (did you mean 'action'?)`` or `` (known keys: a, b)`` for an unknown key at ``loc``."""
    parent = _type_at(model, loc[:-1])
    if parent is None:
        return ""
    known = sorted(parent.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (known keys: {', '.join(known)})" if known else ""


def _type_at(model: type[BaseModel], loc: Iterable[Any]) -> type[BaseModel] | None:
    """The pydantic model class found by walking ``loc`` down from ``model``, if any."""
    current: Any = model
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
            continue
        origin, args = typing.get_origin(current), typing.get_args(current)
        if origin in (list, tuple, set, frozenset, Sequence) and args:
            current = args[0]
        elif origin is dict and len(args) == 2:
            current = args[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    """``X | None`` -> ``X``; a union of several models -> the first model."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [a for a in options if isinstance(a, type) and issubclass(a, BaseModel)]
        return (models or options or [annotation])[0]
    return annotation
