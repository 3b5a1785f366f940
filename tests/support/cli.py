"""Running ``persona ...`` in-process, as main() would count its exit code."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from persona_cli.app import app
from persona_cli.exit_codes import CliError


def invoke(args: list[str], input: str | None = None) -> tuple[int, Any]:
    """Run ``persona ...`` in-process; a CliError counts with its own exit code, as in main()."""
    result = CliRunner().invoke(app, args, input=input)
    code = result.exit_code
    if isinstance(result.exception, CliError):
        code = result.exception.code
    elif result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return code, result
