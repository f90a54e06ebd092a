"""``--help`` that speaks to operators: ``PATH``, ``INTEGER``, ``KEY``, never ``<list[Path]>``.

Recent Typer versions print each option's Python annotation as its value placeholder
(``<bool>`` beside a flag, ``<list[Path]>``, ``<int range>``) and wrap required arguments in
braces (``{key}``). Every ``wardgate`` command is built from :class:`WardgateTyper`, whose
command classes give each parameter a click-style placeholder once, at construction: none for a
flag, ``PATH``/``INTEGER``/``NUMBER``/``TEXT`` or the choices for an option, the upper-cased
name for an argument, and a usage line in click's own notation (``KEY``, ``[FILE]``).
"""

from __future__ import annotations

import enum
import typing
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

_PLACEHOLDERS: dict[Any, str] = {int: "INTEGER", float: "NUMBER", str: "TEXT", Path: "PATH"}
_CLICK_NAMES = {"integer": "INTEGER", "float": "NUMBER", "path": "PATH", "text": "TEXT"}


def _option_placeholder(param: Any) -> str:
    """The placeholder for an option's value ("" for a flag, which takes none)."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None:  # Typer >= 0.2x: the annotation drives everything
        annotation = desc.annotation
        if desc.is_list or desc.is_tuple:
            args = typing.get_args(annotation)
            annotation = args[0] if args else str
        if annotation is bool:
            return ""
        if desc.is_choice and desc.choices:
            return "|".join(
                str(c.value if isinstance(c, enum.Enum) else c) for c in desc.choices
            )
        if desc.is_path:
            return "PATH"
        return _PLACEHOLDERS.get(annotation, "TEXT")
    if getattr(param, "is_flag", False):
        return ""
    kind = getattr(param, "type", None)
    choices = getattr(kind, "choices", None)
    if choices:
        return "|".join(str(c) for c in choices)
    return _CLICK_NAMES.get(getattr(kind, "name", "text"), "TEXT")


def _humanise(params: list[Any]) -> None:
    for param in params:
        if param.param_type_name == "argument":
            if param.metavar is None:
                param.metavar = (param.name or "value").upper()
            if hasattr(param, "display_type_rich"):
                # The name column already shows the placeholder; Typer would add `<path>`.
                param.display_type_rich = _no_type
        elif param.metavar is None:
            param.metavar = _option_placeholder(param)


def _no_type(ctx: Any) -> None:
    return None


def _usage(command: Any, ctx: Any) -> list[str]:
    """click's notation: ``[OPTIONS] KEY [FILE] NAMES...``."""
    pieces = [command.options_metavar] if command.options_metavar else []
    for param in command.get_params(ctx):
        if param.param_type_name != "argument":
            continue
        name = param.metavar or (param.name or "").upper()
        if param.nargs != 1:
            name += "..."
        pieces.append(name if param.required else f"[{name}]")
    return pieces


class WardgateCommand(TyperCommand):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _humanise(self.params)

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        return _usage(self, ctx)

    def get_help_option(self, ctx: Any) -> Any:
        return _flag(super().get_help_option(ctx))


class WardgateGroup(TyperGroup):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _humanise(self.params)

    def get_help_option(self, ctx: Any) -> Any:
        return _flag(super().get_help_option(ctx))


def _flag(option: Any) -> Any:
    """``--help`` is a flag: no value placeholder."""
    if option is not None and option.metavar is None:
        option.metavar = ""
    return option


class WardgateTyper(typer.Typer):
    """A Typer app whose groups and commands print operator-friendly help."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", WardgateGroup)
        kwargs.setdefault("add_completion", False)
        super().__init__(**kwargs)

    def command(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("cls", WardgateCommand)
        return super().command(*args, **kwargs)
