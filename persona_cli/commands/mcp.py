"""``persona mcp list``: the configured MCP servers, whether each one starts, and its tools.

Exit codes: 0 every server started (or none is configured), 1 a server did not start,
2 a bad ``mcp.json`` or ``PERSONA_MCP_SERVERS`` (one line says what).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from persona_cli import exit_codes
from persona_cli.exit_codes import USAGE, CliError

if TYPE_CHECKING:
    from persona_runtime.mcp.connection import ServerStatus

mcp_app = typer.Typer(
    no_args_is_help=True,
    help="MCP servers: their tools join a persona's toolbox. Example: persona mcp list --mcp-config ./mcp.json",
)


@mcp_app.command("list", help="Start every configured MCP server, show whether it started and its tools, then stop them. "
                 "Example: persona mcp list --json")
def list_servers(
    mcp_config: Path | None = typer.Option(
        None, "--mcp-config", help="Use this mcp.json instead of PERSONA_HOME/mcp.json.", dir_okay=False
    ),
    json_out: bool = typer.Option(False, "--json", help="One JSON object per server on stdout."),
    timeout: float = typer.Option(20.0, "--timeout", help="Seconds to wait for the servers to start."),
) -> None:
    if timeout <= 0:
        raise CliError(f"--timeout must be more than 0, got {timeout:g}", USAGE)
    from persona_cli.compose import prepare_data_dir, setup_errors_exit_2
    from persona_runtime.mcp.compose import CONFIG_NAME
    from persona_runtime.mcp.config import load_mcp_config
    from persona_runtime.secrets import add_secrets

    paths = prepare_data_dir()
    default = paths.root / CONFIG_NAME
    with setup_errors_exit_2():
        config = load_mcp_config(mcp_config, default=default)
    add_secrets(config.secrets)
    if not config.servers:
        where = mcp_config if mcp_config is not None else default
        typer.echo(f"no MCP servers configured (none in {where}, and PERSONA_MCP_SERVERS is not set)", err=True)
        raise typer.Exit(exit_codes.OK)
    from persona_runtime.mcp.hub import McpHub

    hub = McpHub(config.servers, secrets=config.secrets, log_dir=paths.logs, start_timeout_s=timeout)
    try:
        hub.start()
        hub.wait(timeout)
        statuses = hub.status()
    finally:
        hub.close()
    if json_out:
        _print_json(statuses)
    else:
        _print_text(statuses, " + ".join(config.sources))
    failed = any(s.state != "ready" for s in statuses)
    raise typer.Exit(exit_codes.RUNTIME_ERROR if failed else exit_codes.OK)


def _print_text(statuses: list[ServerStatus], sources: str) -> None:
    from persona_cli.term import sanitize

    typer.echo(f"MCP servers from {sources}", err=True)
    for status in statuses:
        took = f" ({status.start_s:.1f} s)" if status.start_s is not None else ""
        if status.state == "ready":
            count = len(status.tools)
            typer.echo(f"✓ {status.name}  {status.transport}  {sanitize(status.target)}{took}  {count} tool{'s' if count != 1 else ''}")
        else:
            why = status.reason or ("still starting" if status.state == "starting" else status.state)
            typer.echo(f"✗ {status.name}  {status.transport}  {sanitize(status.target)}  did not start: {sanitize(why)}")
        for tool in status.tools:
            mark = "read-only" if tool.read_only else "asks"
            description = " ".join(tool.description.split())
            description = description if len(description) <= 70 else description[:69] + "…"
            typer.echo(f"    {tool.wire_name:<36} {mark:<9}  {sanitize(description)}")
    typer.echo(
        "In a persona's tools: mcp:SERVER (all its tools) or mcp:SERVER:TOOL; 'asks' tools ask before running.", err=True
    )


def _print_json(statuses: list[ServerStatus]) -> None:
    import json

    for status in statuses:
        row: dict[str, Any] = {
            "name": status.name, "transport": status.transport, "target": status.target, "started": status.state == "ready",
            "state": status.state, "reason": status.reason,
            "start_s": round(status.start_s, 3) if status.start_s is not None else None,
            "tools": [
                {
                    "name": tool.name, "model_name": tool.wire_name, "persona_entry": f"mcp:{tool.server}:{tool.name}",
                    "description": tool.description, "read_only": tool.read_only, "asks": not tool.read_only,
                }
                for tool in status.tools
            ],
        }
        sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
