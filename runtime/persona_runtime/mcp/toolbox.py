"""MCP tools in the toolbox: :class:`McpTool` (one server tool, persona-core's ``AsyncTool`` shape)
and :class:`McpToolbox`, persona-core's ``Toolbox`` plus the MCP tools the persona allows.

The MCP part is live: a server that becomes ready after the first turn began adds its tools
from the next model request on. An MCP tool asks before it runs unless its server marks it
read-only (``readOnlyHint``); a result goes back to the model as text (images and binary
resources as one line each, see :func:`result_text`).
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.mcp.hub import McpHub, McpUnavailable
from persona_runtime.mcp.naming import McpSelection
from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona.schema.tools import ToolCall, ToolResult

    from persona_runtime.mcp.connection import McpToolInfo

__all__ = ["McpTool", "McpToolbox", "ToolRow", "result_text"]


class McpTool:
    """One MCP server tool as persona-core's ``AsyncTool``: ``execute`` never raises."""

    def __init__(self, info: McpToolInfo, hub: McpHub) -> None:
        self.info = info
        self.hub = hub

    @property
    def name(self) -> str:
        return self.info.wire_name

    @property
    def description(self) -> str:
        return f"[MCP server {self.info.server}] {self.info.description}".strip()

    @property
    def parameters_schema(self) -> dict[str, Any]:
        return dict(self.info.input_schema)

    async def execute(self, **kwargs: Any) -> ToolResult:
        from persona.schema.tools import ToolResult

        try:
            result = await self.hub.call(self.info.server, self.info.name, kwargs)
        except McpUnavailable as exc:
            return ToolResult(tool_name=self.name, content=redact(str(exc), self.hub.secrets), is_error=True)
        except Exception as exc:  # noqa: BLE001 - the server's error goes back to the model
            message = str(exc).strip() or type(exc).__name__
            text = message if type(exc).__name__ == "McpError" else f"{type(exc).__name__}: {message}"
            return ToolResult(tool_name=self.name, content=redact(f"MCP error: {text}", self.hub.secrets), is_error=True)
        # Secrets from mcp.json never travel on, even if a server echoes one.
        return ToolResult(tool_name=self.name, content=redact(result_text(result), self.hub.secrets), is_error=bool(result.isError))


def result_text(result: Any) -> str:
    """A ``CallToolResult`` as text: text as it is; an image, audio or binary resource as one line;
    a resource link as one line; a text resource as one line then its text; structured content as
    JSON when nothing else was sent."""
    parts: list[str] = []
    for item in result.content or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(item.text)
        elif kind in ("image", "audio"):
            parts.append(f"[{kind}: {item.mimeType}, {_size(_b64_len(item.data))}; not shown to the model]")
        elif kind == "resource_link":
            mime = f", {item.mimeType}" if getattr(item, "mimeType", None) else ""
            parts.append(f"[resource link: {item.name} <{item.uri}>{mime}]")
        elif kind == "resource":
            resource = item.resource
            mime = getattr(resource, "mimeType", None) or "unknown type"
            text = getattr(resource, "text", None)
            if isinstance(text, str):
                parts.append(f"[resource <{resource.uri}>, {mime}, {len(text)} characters]\n{text}")
            else:
                parts.append(f"[resource <{resource.uri}>, {mime}, {_size(_b64_len(getattr(resource, 'blob', '')))}; not shown]")
        else:
            parts.append(f"[{kind or 'unknown'} content; not shown]")
    if not parts and getattr(result, "structuredContent", None) is not None:
        parts.append(json.dumps(result.structuredContent, ensure_ascii=False, default=str))
    return "\n".join(parts) if parts else "(no output)"


def _b64_len(data: str) -> int:
    try:
        return len(base64.b64decode(data, validate=False))
    except (ValueError, TypeError):
        return len(data) * 3 // 4


def _size(n: int) -> str:
    return f"{n} bytes" if n < 1024 else f"{n / 1024:.1f} KiB" if n < 1024 * 1024 else f"{n / 1024 / 1024:.1f} MiB"


@dataclass(frozen=True)
class ToolRow:
    """One line of ``/tools``: where a tool comes from and whether it asks before running."""

    name: str
    server: str | None
    tool: str
    description: str
    asks: bool


class McpToolbox:
    """persona-core's ``Toolbox`` (``base``) plus the allowed tools of the hub's ready servers.

    Duck-types the Toolbox surface the runtime uses (``names``, ``get_specs``, ``dispatch``,
    ``is_allowed``, ``real_name``) and adds ``needs_approval`` and ``rows``.
    """

    def __init__(self, base: Any, hub: McpHub, selection: McpSelection) -> None:
        self.base = base
        self.hub = hub
        self.selection = selection
        self._cache: tuple[tuple[McpToolInfo, ...], dict[str, McpTool]] = ((), {})

    def mcp_tools(self) -> dict[str, McpTool]:
        """``{name the model sees: tool}`` for the allowed tools of every ready server."""
        infos = tuple(t for t in self.hub.tools() if self.selection.allows(t.server, t.name))
        if infos != self._cache[0]:
            self._cache = (infos, {info.wire_name: McpTool(info, self.hub) for info in infos})
        return self._cache[1]

    def names(self) -> list[str]:
        base = list(self.base.names()) if self.base is not None else []
        return sorted({*base, *self.mcp_tools()})

    def is_allowed(self, name: str) -> bool:
        return name in self.mcp_tools() or (self.base is not None and self.base.is_allowed(name))

    def real_name(self, name: str) -> str:
        if name in self.mcp_tools() or self.base is None:
            return name
        return self.base.real_name(name)

    def get_specs(self) -> list[Any]:
        from persona.backends.types import tool_spec_from_tool

        specs = list(self.base.get_specs()) if self.base is not None else []
        taken = {spec.name for spec in specs}
        return specs + [tool_spec_from_tool(t) for name, t in sorted(self.mcp_tools().items()) if name not in taken]

    async def dispatch(self, call: ToolCall) -> ToolResult:
        tool = self.mcp_tools().get(call.name)
        if tool is not None:
            result = await tool.execute(**dict(call.args))
            return result.model_copy(update={"call_id": call.call_id})
        if self.base is None:
            from persona.errors import ToolNotAllowedError

            raise ToolNotAllowedError("tool not allowed", context={"called": call.name, "allowed": ", ".join(self.names())})
        return await self.base.dispatch(call)

    def needs_approval(self, name: str) -> bool:
        """MCP tools ask unless read-only; persona-core's tools ask when they write or send."""
        tool = self.mcp_tools().get(name)
        if tool is not None:
            return not tool.info.read_only
        from persona_runtime.tooling import SIDE_EFFECT_TOOLS

        return name in SIDE_EFFECT_TOOLS and self.base is not None and name in self.base.names()

    def rows(self) -> list[ToolRow]:
        """Every tool for ``/tools``: persona-core's, then each MCP server's."""
        rows = [ToolRow(name, None, name, "", self.needs_approval(name)) for name in (self.base.names() if self.base else [])]
        for name, tool in self.mcp_tools().items():
            rows.append(ToolRow(name, tool.info.server, tool.info.name, tool.info.description, not tool.info.read_only))
        return rows
