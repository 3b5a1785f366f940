"""MCP naming, results as text, the approval rule and the toolbox, in process (a fake hub: no server)."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import pytest
from mcp import types
from persona.schema.tools import ToolCall
from persona.tools import Toolbox
from persona.tools.builtin.calculator import make_calculator_tool
from persona.tools.builtin.file_write import make_file_write_tool

from persona_runtime.mcp.connection import McpToolInfo
from persona_runtime.mcp.hub import McpUnavailable
from persona_runtime.mcp.naming import McpSelection, wire_name
from persona_runtime.mcp.toolbox import McpToolbox, result_text
from persona_runtime.tooling import needs_approval, run_tool_call


def test_wire_names_are_server_tool_and_provider_safe() -> None:
    assert wire_name("time", "get_current_time") == "time__get_current_time"
    odd = wire_name("docs", "search.v2/all")
    assert odd.startswith("docs__search_v2_all_") and len(odd) == len("docs__search_v2_all_") + 8
    long = wire_name("s", "x" * 100)
    assert len(long) == 64 and long != wire_name("s", "x" * 101)
    assert all(c.isalnum() or c in "_-" for c in odd + long)


def test_how_a_persona_names_mcp_tools() -> None:
    selection = McpSelection.from_tools(["calculator", "mcp:time", "mcp:notes:read_note", "mcp:", "mcp::x", "mcp:a:b:c"])
    assert selection.allows("time", "anything") and selection.allows("notes", "read_note")
    assert not selection.allows("notes", "write_note") and not selection.allows("other", "x")
    assert selection.referenced == {"time", "notes"}
    assert selection.servers_to_start(["other", "notes", "time"]) == ("notes", "time")
    assert selection.malformed == ("mcp:", "mcp::x", "mcp:a:b:c")
    every = McpSelection.from_tools(["mcp:*"])
    assert every.allows("anything", "at_all") and every.servers_to_start(["a", "b"]) == ("a", "b")


def test_results_go_back_as_text_with_images_and_resources_summarised() -> None:
    png = base64.b64encode(b"\x89PNG" + b"\0" * 2044).decode()
    result = types.CallToolResult(
        content=[
            types.TextContent(type="text", text="line one\nline two"),
            types.ImageContent(type="image", data=png, mimeType="image/png"),
            types.EmbeddedResource(
                type="resource",
                resource=types.TextResourceContents(uri="file:///n.txt", mimeType="text/plain", text="the note"),
            ),
            types.EmbeddedResource(
                type="resource", resource=types.BlobResourceContents(uri="file:///b.bin", blob=png, mimeType="application/x")
            ),
            types.ResourceLink(type="resource_link", name="report", uri="file:///r.pdf", mimeType="application/pdf"),
        ]
    )
    assert result_text(result).splitlines() == [
        "line one",
        "line two",
        "[image: image/png, 2.0 KiB; not shown to the model]",
        "[resource <file:///n.txt>, text/plain, 8 characters]",
        "the note",
        "[resource <file:///b.bin>, application/x, 2.0 KiB; not shown]",
        "[resource link: report <file:///r.pdf>, application/pdf]",
    ]
    assert result_text(types.CallToolResult(content=[], structuredContent={"a": 1})) == '{"a": 1}'
    assert result_text(types.CallToolResult(content=[])) == "(no output)"


class FakeHub:
    """The hub's surface McpToolbox uses: tools(), call(), secrets."""

    secrets: tuple[str, ...] = ("hub-secret-123456",)

    def __init__(self, tools: list[McpToolInfo], answers: dict[str, Any]) -> None:
        self._tools = tools
        self.answers = answers
        self.calls: list[tuple[str, str, dict[str, Any]]] = []

    def tools(self) -> list[McpToolInfo]:
        return list(self._tools)

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        self.calls.append((server, tool, arguments))
        answer = self.answers[tool]
        if isinstance(answer, BaseException):
            raise answer
        return answer


def info(server: str, name: str, *, read_only: bool) -> McpToolInfo:
    schema = {"type": "object", "properties": {"text": {"type": "string"}}}
    return McpToolInfo(server=server, name=name, description=f"{name} things", input_schema=schema, read_only=read_only)


def make_toolbox(tmp_path, hub: FakeHub, persona_tools: list[str]) -> McpToolbox:
    base = Toolbox(
        [make_calculator_tool(), make_file_write_tool(sandbox_root=tmp_path)],
        allow_list=[t for t in persona_tools if not t.startswith("mcp:")],
    )
    return McpToolbox(base, hub, McpSelection.from_tools(persona_tools))  # type: ignore[arg-type]


def text(value: str, *, error: bool = False) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=value)], isError=error)


def test_the_allow_list_admits_only_what_the_persona_names(tmp_path) -> None:
    hub = FakeHub([info("notes", "write", read_only=False), info("notes", "read", read_only=True), info("time", "now", read_only=True)], {})
    toolbox = make_toolbox(tmp_path, hub, ["calculator", "mcp:notes:read", "mcp:time"])
    assert toolbox.names() == ["calculator", "notes__read", "time__now"]
    specs = {spec.name: spec for spec in toolbox.get_specs()}
    assert sorted(specs) == ["calculator", "notes__read", "time__now"]
    assert specs["time__now"].description == "[MCP server time] now things"
    assert specs["time__now"].parameters["properties"] == {"text": {"type": "string"}}
    assert [(r.name, r.server, r.tool, r.asks) for r in toolbox.rows()] == [
        ("calculator", None, "calculator", False), ("notes__read", "notes", "read", False), ("time__now", "time", "now", False),
    ]


def test_approval_mcp_tools_ask_unless_read_only_and_builtins_as_before(tmp_path) -> None:
    hub = FakeHub([info("notes", "write", read_only=False), info("notes", "read", read_only=True)], {})
    toolbox = make_toolbox(tmp_path, hub, ["calculator", "file_write", "mcp:notes"])
    assert needs_approval(toolbox, "notes__write") and not needs_approval(toolbox, "notes__read")
    assert needs_approval(toolbox, "file_write") and not needs_approval(toolbox, "calculator")
    plain = Toolbox([make_calculator_tool(), make_file_write_tool(sandbox_root=tmp_path)], allow_list=["calculator", "file_write"])
    assert needs_approval(plain, "file_write") and not needs_approval(plain, "calculator")


def run(toolbox: McpToolbox, call: ToolCall, asked: list[str], answer: bool = True):
    async def approve(c: ToolCall) -> bool:
        asked.append(c.name)
        return answer

    return asyncio.run(run_tool_call(toolbox, call, approve=approve, timeout_s=5, max_chars=10_000))


def test_dispatch_asks_for_a_writing_tool_and_not_for_a_read_only_one(tmp_path) -> None:
    hub = FakeHub(
        [info("notes", "write", read_only=False), info("notes", "read", read_only=True)],
        {"write": text("saved"), "read": text("the note")},
    )
    toolbox = make_toolbox(tmp_path, hub, ["mcp:notes"])
    asked: list[str] = []
    written = run(toolbox, ToolCall(name="notes__write", args={"text": "hi"}, call_id="c1"), asked)
    read = run(toolbox, ToolCall(name="notes__read", args={}, call_id="c2"), asked)
    assert asked == ["notes__write"]
    assert (written.result.content, written.result.call_id, read.result.content) == ("saved", "c1", "the note")
    assert hub.calls == [("notes", "write", {"text": "hi"}), ("notes", "read", {})]
    declined = run(toolbox, ToolCall(name="notes__write", args={"text": "no"}, call_id="c3"), asked, answer=False)
    assert declined.result.is_error and len(hub.calls) == 2  # a "no" never reaches the server


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (text("cannot: disk on fire", error=True), "cannot: disk on fire"),
        (McpUnavailable("MCP server 'notes' went away: the process exited"), "went away: the process exited"),
        (RuntimeError("boom with hub-secret-123456 inside"), "MCP error: RuntimeError: boom with [redacted] inside"),
    ],
)
def test_server_errors_are_tool_errors(tmp_path, answer: Any, expected: str) -> None:
    hub = FakeHub([info("notes", "read", read_only=True)], {"read": answer})
    outcome = run(make_toolbox(tmp_path, hub, ["mcp:notes"]), ToolCall(name="notes__read", args={}, call_id="c"), [])
    assert outcome.result.is_error and expected in outcome.result.content


def test_tools_join_when_their_server_becomes_ready(tmp_path) -> None:
    hub = FakeHub([], {})
    toolbox = make_toolbox(tmp_path, hub, ["calculator", "mcp:late"])
    assert toolbox.names() == ["calculator"]
    hub._tools.append(info("late", "now", read_only=True))
    assert toolbox.names() == ["calculator", "late__now"] and toolbox.is_allowed("late__now")


def test_slash_tools_shows_server_tool_description_and_who_asks(tmp_path) -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from persona_cli.slash import SlashContext, handle_slash
    from persona_cli.turn_view import SessionTotals
    from persona_runtime.mcp.connection import ServerStatus
    from persona_runtime.tier_env import tier_registry_from_env

    hub = FakeHub([info("notes", "write", read_only=False), info("notes", "read", read_only=True)], {})
    hub.status = lambda: [  # type: ignore[attr-defined]
        ServerStatus("notes", "stdio", "python s.py", "ready"),
        ServerStatus("slow", "stdio", "slow-server", "starting"),
        ServerStatus("gone", "http", "http://127.0.0.1:9/mcp", "failed", "cannot connect to http://127.0.0.1:9/mcp"),
    ]
    toolbox = make_toolbox(tmp_path, hub, ["calculator", "file_write", "mcp:notes"])
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    session = SimpleNamespace(
        persona=SimpleNamespace(tools=["calculator", "file_write", "mcp:notes"]), tiers=tier_registry_from_env({}),
        built_loop=SimpleNamespace(toolbox=toolbox), mcp=SimpleNamespace(hub=hub),
    )
    ctx = SlashContext(session=session, tier="auto", totals=SessionTotals(), out=console, info=console)
    asyncio.run(handle_slash(ctx, "/tools"))
    lines = [line.rstrip() for line in buf.getvalue().splitlines()]
    assert "    calculator" in lines and "  ✎ file_write" in lines
    assert "  ✎ notes__write  notes · write — write things" in lines
    assert "    notes__read  notes · read — read things" in lines
    assert "MCP server slow: still starting" in lines
    assert "MCP server gone: failed: cannot connect to http://127.0.0.1:9/mcp" in lines
