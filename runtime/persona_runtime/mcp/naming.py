"""How a persona names MCP tools, and the names the model sees.

In a persona's ``tools:`` list (persona-core's own spelling for MCP entries):

- ``mcp:time`` allows every tool of the server named ``time``;
- ``mcp:time:get_current_time`` allows that one tool;
- ``mcp:*`` allows every configured server's tools.

The model sees ``time__get_current_time``: the server, two underscores, the tool, cut to what
every provider accepts (``[a-zA-Z0-9_-]``, at most 64 characters; a digest keeps a cut name unique).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["MCP_PREFIX", "McpSelection", "is_mcp_entry", "wire_name"]

MCP_PREFIX = "mcp:"
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]")
_WIRE_MAX = 64


def is_mcp_entry(entry: str) -> bool:
    return entry.startswith(MCP_PREFIX)


def wire_name(server: str, tool: str) -> str:
    """``server__tool``, wire-safe and at most 64 characters."""
    name = f"{server}__{_UNSAFE.sub('_', tool)}"
    if len(name) <= _WIRE_MAX and name == f"{server}__{tool}":
        return name
    digest = hashlib.sha256(f"{server}\x00{tool}".encode()).hexdigest()[:8]
    return f"{name[: _WIRE_MAX - 9]}_{digest}"


@dataclass(frozen=True)
class McpSelection:
    """The MCP part of a persona's allow-list."""

    every_server: bool = False
    servers: frozenset[str] = frozenset()
    tools: frozenset[tuple[str, str]] = frozenset()
    #: Entries that are not a valid MCP form (``mcp:``, ``mcp::x``), for the unknown-tools notice.
    malformed: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_tools(cls, entries: Iterable[str]) -> McpSelection:
        every, servers, tools, malformed = False, set(), set(), []
        for entry in entries:
            if not is_mcp_entry(entry):
                continue
            server, sep, tool = entry[len(MCP_PREFIX):].partition(":")
            if server == "*" and not sep:
                every = True
            elif server and not sep:
                servers.add(server)
            elif server and tool and ":" not in tool:
                tools.add((server, tool))
            else:
                malformed.append(entry)
        return cls(every, frozenset(servers), frozenset(tools), tuple(malformed))

    @property
    def referenced(self) -> frozenset[str]:
        """Servers named by any entry (``mcp:*`` aside)."""
        return self.servers | {server for server, _ in self.tools}

    def wants(self, server: str) -> bool:
        return self.every_server or server in self.referenced

    def allows(self, server: str, tool: str) -> bool:
        return self.every_server or server in self.servers or (server, tool) in self.tools

    def servers_to_start(self, configured: Iterable[str]) -> tuple[str, ...]:
        return tuple(name for name in configured if self.wants(name))
