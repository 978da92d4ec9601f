"""Typer's app and command classes, with one style of placeholder in ``--help``, usage
lines and usage errors: UPPERCASE (``SPEC``, ``TEXT``, ``NAME@VERSION``).

Recent Typer draws a required argument as ``{spec}`` and a value's type as ``<str>``;
here an argument is its UPPERCASE name (``[DIR]`` when optional), an option without a
``metavar`` shows its type as click did (``TEXT``, ``INTEGER``, ``PATH``), choices
as ``[table|json]``, and a flag no placeholder at all. ``App`` makes every command of
the CLI this way (``tests/test_cli_conventions.py`` checks it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, get_args, get_origin

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup

__all__ = ["App", "Command", "Group"]

F = TypeVar("F", bound=Callable[..., Any])


class _Argument(TyperArgument):
    """An argument shown by its UPPERCASE name, without Typer's ``{...}`` and type."""

    def _usage_display_name(self) -> str:
        name = str(self.metavar or (self.name or "").upper())
        name = name if self.required else f"[{name}]"
        return name + ("..." if self.nargs != 1 else "")

    def display_type_rich(self, ctx: Any) -> str | None:
        return None  # the name is the placeholder


TYPES = {"str": "TEXT", "int": "INTEGER", "float": "FLOAT", "Path": "PATH"}
"""Click's names of the value types, which older Typer showed."""


def _placeholder(param: Any) -> str:
    """The UPPERCASE placeholder of a parameter that names none."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""  # takes no value
    described = getattr(param, "type_descriptor", None)  # recent Typer; else a click type
    kind = getattr(param, "type", None)
    if described is not None:
        choices = described.choices if described.is_choice else None
    else:
        choices = getattr(kind, "choices", None)
    if choices:
        return "[" + "|".join(str(getattr(c, "value", c)) for c in choices) + "]"
    if isinstance(param, TyperArgument):
        return (param.name or "").upper()
    if described is None:
        return str(getattr(kind, "name", "value")).split()[0].upper()  # integer range: INTEGER
    annotation = described.annotation
    if get_origin(annotation) is list:  # a repeatable option: each value
        annotation = get_args(annotation)[0]
    name = getattr(annotation, "__name__", str(annotation))
    return TYPES.get(name, name.upper())


def _uppercase(params: list[Any]) -> None:
    for param in params:
        if isinstance(param, TyperArgument) and type(param) is TyperArgument:
            param.__class__ = _Argument  # same state, its own way of being shown
        if param.metavar is None:
            param.metavar = _placeholder(param)


class Command(TyperCommand):
    """A command whose placeholders are UPPERCASE."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        _uppercase(params)  # --help and Typer's completion options included
        return params


class Group(TyperGroup):
    """A group (``llmship eval`` has options of its own) whose placeholders are UPPERCASE."""

    def get_params(self, ctx: Any) -> list[Any]:
        params: list[Any] = super().get_params(ctx)
        _uppercase(params)
        return params


class App(typer.Typer):
    """``typer.Typer`` whose groups and commands are :class:`Group` and :class:`Command`."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("cls", Group)
        super().__init__(**kwargs)

    def command(  # Typer.command, but cls defaults to Command
        self, name: str | None = None, *, cls: type[TyperCommand] | None = Command, **kwargs: Any
    ) -> Callable[[F], F]:
        """``Typer.command``, making a :class:`Command`."""
        decorator: Callable[[F], F] = super().command(name, cls=cls, **kwargs)
        return decorator
