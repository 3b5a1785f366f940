"""Run a Typer command without Typer's value conversion, which imports pydantic (~0.15 s).

Typer turns each option's text into its Python value through a pydantic TypeAdapter. For a
command whose options are all plain (flags, strings, whole numbers with optional bounds) the
standard library does the same in microseconds. Everything else is Typer's and click's own:
the command and its options are the ones Typer builds from the function's signature, and
click's parser reads argv. So the options are defined once, in the signature, and there is
no second list to keep in step.

Anything this does not fully understand (``--help``, an unknown option, a stray argument,
a value that does not convert or is out of bounds, an option kind beyond the plain ones)
gives None: the caller then hands argv to Typer as usual, which reports any error in its
own words.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import typer
import typer.main
from typer._click.exceptions import UsageError  # Typer vendors click

if TYPE_CHECKING:
    from typer._click.core import Command, Parameter

__all__ = ["invoke_without_pydantic", "parse_without_pydantic", "plain_kind", "typer_command"]

# Only plain ASCII digits: pydantic also takes " 5", "+5", "5_000" and "5.0"; those go to Typer.
_WHOLE_NUMBER = re.compile(r"-?[0-9]+")


def typer_command(app: typer.Typer, name: str) -> Command | None:
    """The click command Typer runs for ``app``'s command ``name``, built by Typer's own
    builder, without building the app's other commands (a fifth of the time)."""
    info = next((i for i in app.registered_commands if i.name == name), None)
    if info is None:
        return None
    return typer.main.get_command_from_info(
        info, pretty_exceptions_short=app.pretty_exceptions_short, rich_markup_mode=app.rich_markup_mode
    )


def plain_kind(param: Parameter) -> str | None:
    """``"flag"``, ``"str"`` or ``"int"`` for an option converted here; None for any other."""
    if param.param_type_name != "option" or not param.expose_value or param.required:
        return None
    if param.multiple or param.nargs != 1 or param.envvar or param.callback or param.is_eager:
        return None
    if getattr(param, "count", False) or getattr(param, "prompt", None):
        return None
    annotation = getattr(getattr(param, "type_descriptor", None), "annotation", None)
    if getattr(param, "is_flag", False):
        return "flag" if annotation is bool else None
    if annotation is str:
        return "str"
    if annotation is int:
        return "int"
    return None


def _convert(param: Parameter, kind: str | None, raw: Any) -> tuple[bool, Any]:
    """(converted?, value) for one parsed value: the value Typer would produce."""
    if kind != "int":
        return True, raw
    if not isinstance(raw, str) or not _WHOLE_NUMBER.fullmatch(raw):
        return False, None
    value = int(raw)
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):
        return False, None
    return True, value


def parse_without_pydantic(command: Command, args: list[str]) -> dict[str, Any] | None:
    """Every parameter's value as Typer would pass it to ``command``'s function for ``args``,
    or None when that takes more than click's parser and the plain conversions."""
    params = {param.name: param for param in command.params if param.name is not None}
    kinds = {name: plain_kind(param) for name, param in params.items()}
    if None in kinds.values():
        return None
    ctx = command.context_class(command, info_name=command.name)
    try:
        parsed, leftover, _ = command.make_parser(ctx).parse_args(list(args))
    except UsageError:
        return None
    if leftover or any(key not in params for key in parsed):  # e.g. --help: Typer's to answer
        return None
    values = {name: param.default for name, param in params.items()}
    for key, raw in parsed.items():
        ok, values[key] = _convert(params[key], kinds[key], raw)
        if not ok:
            return None
    return values


def invoke_without_pydantic(app: typer.Typer, name: str, args: list[str]) -> int | None:
    """Run ``app``'s command ``name`` with ``args``; its exit code, or None when not handled."""
    command = typer_command(app, name)
    if command is None or command.callback is None:
        return None
    values = parse_without_pydantic(command, args)
    if values is None:
        return None
    try:
        with command.context_class(command, info_name=name):
            # Every parameter is passed: Typer's callback wrapper keeps the values of its last call.
            command.callback(**values)
    except typer.Exit as exc:
        return exc.exit_code
    return 0
