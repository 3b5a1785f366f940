"""How a session gets its MCP tools: which servers to start (the ones the persona names), and
the toolbox once they have had a bounded time to come up.

:func:`plan_mcp` runs in ``open_session`` (cheap; a bad ``mcp.json`` is a one-line
:class:`~persona_runtime.mcp.config.McpConfigError`); the hub starts with the session's
background load; :func:`with_mcp_tools` waits at most ``wait_s`` from that start, so a slow
server never holds the first turn: its tools join when it is ready.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_runtime.mcp.config import McpConfig, load_mcp_config
from persona_runtime.mcp.hub import McpHub
from persona_runtime.mcp.naming import McpSelection
from persona_runtime.secrets import add_secrets

__all__ = ["CONFIG_NAME", "McpPlan", "plan_mcp", "with_mcp_tools"]

CONFIG_NAME = "mcp.json"


@dataclass(frozen=True)
class McpPlan:
    config: McpConfig
    selection: McpSelection
    #: None when the persona names no configured server.
    hub: McpHub | None
    #: ``--mcp-config`` was given (then servers the persona does not name are worth a notice).
    explicit: bool = False

    def notices(self) -> list[str]:
        """What is wrong with the persona's MCP entries, one line each."""
        lines = []
        where = ", ".join(self.config.sources) or f"no {CONFIG_NAME}"
        missing = sorted(self.selection.referenced - set(self.config.names))
        if missing:
            lines.append(
                f"the persona names MCP server{'s' if len(missing) > 1 else ''} {', '.join(missing)}, "
                f"not configured ({where}); {'they are' if len(missing) > 1 else 'it is'} ignored"
            )
        if self.selection.malformed:
            lines.append(
                f"the persona lists {', '.join(self.selection.malformed)}: an MCP entry is mcp:SERVER or mcp:SERVER:TOOL"
            )
        unused = [n for n in self.config.names if not self.selection.wants(n)]
        if self.explicit and unused:
            lines.append(
                f"MCP server{'s' if len(unused) > 1 else ''} {', '.join(unused)} not started: the persona does not "
                f"list {'them' if len(unused) > 1 else 'it'} (add mcp:{unused[0]} to its tools)"
            )
        return lines


def plan_mcp(
    persona_tools: list[str], *, config_path: Path | None, data_root: Path, log_dir: Path | None,
    env: Mapping[str, str] | None = None, start_timeout_s: float = 30.0,
) -> McpPlan:
    """Read the MCP configuration and pick the servers the persona names (nothing starts yet)."""
    config = load_mcp_config(config_path, default=data_root / CONFIG_NAME, env=env)
    add_secrets(config.secrets)
    selection = McpSelection.from_tools(persona_tools)
    names = selection.servers_to_start(config.names)
    servers = [server for name in names if (server := config.server(name)) is not None]
    hub = McpHub(servers, secrets=config.secrets, log_dir=log_dir, start_timeout_s=start_timeout_s) if servers else None
    return McpPlan(config=config, selection=selection, hub=hub, explicit=config_path is not None)


async def with_mcp_tools(base: Any, plan: McpPlan, *, wait_s: float, notices: list[str]) -> Any:
    """``base`` plus the allowed tools of the plan's servers, after waiting at most ``wait_s``
    (counted from the hub's start) for them; one notice per server that failed or is still starting."""
    notices.extend(plan.notices())
    hub = plan.hub
    if hub is None:
        return base
    from persona_runtime.mcp.toolbox import McpToolbox

    hub.start()
    started = hub.started_at if hub.started_at is not None else time.monotonic()
    await hub.wait_started(max(0.0, wait_s - (time.monotonic() - started)))
    for status in hub.status():
        if status.state == "starting":
            notices.append(f"MCP server {status.name} is still starting; its tools join when it is ready (/tools)")
        elif status.state != "ready":
            notices.append(f"MCP server {status.name} did not start: {status.reason}")
        else:
            offered = {tool.name for tool in status.tools}
            absent = sorted(t for s, t in plan.selection.tools if s == status.name and t not in offered)
            if absent:
                notices.append(
                    f"MCP server {status.name} has no tool {', '.join(absent)}; it offers {', '.join(sorted(offered)) or 'none'}"
                )
    return McpToolbox(base, hub, plan.selection)
