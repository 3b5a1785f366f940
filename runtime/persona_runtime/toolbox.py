"""The toolbox a session's loops share: persona-core's built-in tools the persona lists (plus
``use_skill``), and the tools of its MCP servers (:mod:`persona_runtime.mcp`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_runtime.session import HeavyParts, Session
    from persona_runtime.tier import TierRegistry

__all__ = ["build_toolbox", "tools_reachable"]


def tools_reachable(tiers: TierRegistry) -> bool:
    """Whether any model of any tier is ever sent tools: local GGUF models never are
    (:meth:`persona_runtime.engine.tools.ToolRunner.specs_for`). When none is, a chat needs no
    toolbox, and persona-core's tools (~50 MiB of imports: trafilatura, lxml, ...) stay unloaded."""
    return any(slot.provider != "gguf" for name in tiers.configured_tier_names for slot in tiers.slots(name))


async def build_toolbox(session: Session, heavy: HeavyParts) -> tuple[Any, list[Any]]:
    """persona-core's toolbox for the persona's tools (plus ``use_skill``), and its MCP clients."""
    if not session.persona.tools:
        return None, []  # persona-core treats an empty list as "all tools": we treat it as none
    from persona.config import PersonaCoreConfig
    from persona.tools import build_default_toolbox

    extra = []
    if heavy.skills:
        from persona.skills import make_use_skill_tool

        extra.append(make_use_skill_tool(heavy.skills))
    config = PersonaCoreConfig(
        embedder="hash",  # unused by the toolbox; keeps persona-core's validation away from our "minilm"
        tools_sandbox_root=session.paths.workspace,
        chroma_path=session.paths.root / "memory",
        # MCP servers are ours (persona_runtime.mcp; PERSONA_MCP_SERVERS included), not persona-core's client.
        mcp_servers="",
        docker_mcp_gateway_url="",
    )
    toolbox, clients = await build_default_toolbox(config, session.persona, extra_tools=extra or None)
    from persona_runtime.mcp.naming import is_mcp_entry

    unknown = sorted(t for t in set(session.persona.tools) - set(toolbox.names()) if not is_mcp_entry(t))
    if unknown:
        heavy.notices.append(
            f"the persona lists tool{'s' if len(unknown) > 1 else ''} that do{'' if len(unknown) > 1 else 'es'} not exist "
            f"({', '.join(unknown)}); {'they are' if len(unknown) > 1 else 'it is'} ignored. Known: {', '.join(sorted(toolbox.names()))}"
        )
    if session.mcp is not None:
        from persona_runtime.mcp.compose import with_mcp_tools

        toolbox = await with_mcp_tools(toolbox, session.mcp, wait_s=session.settings.mcp_start_wait_s, notices=heavy.notices)
    return toolbox, list(clients)
