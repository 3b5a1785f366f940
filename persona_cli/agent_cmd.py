"""``persona agent``: plan-act-reflect runs (see issue: AgenticLoop)."""

from __future__ import annotations

from pathlib import Path

import typer

from persona_cli.exit_codes import RUNTIME_ERROR, CliError


def agent(
    persona_file: Path = typer.Argument(..., help="The persona YAML, e.g. personas/kai.yaml.", show_default=False),
    task: str | None = typer.Argument(None, help="The task; read from stdin when omitted."),
    max_steps: int = typer.Option(8, "--max-steps", help="Stop after this many steps."),
) -> None:
    """Run a plan-act-reflect agent on a task."""
    raise CliError("persona agent is not available in this build yet", RUNTIME_ERROR)
