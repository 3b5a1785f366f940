"""MCP tools through the real chat loop: a real session (open_session), persona-core's openai
backend against the scripted server, and real MCP servers (ours on the `mcp` SDK, over stdio and
over streamable HTTP on 127.0.0.1; PyPI's mcp-server-time over stdio)."""

from __future__ import annotations

import asyncio
import json
import os
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pytest

from persona_runtime import events as ev
from persona_runtime.session import Session, open_session
from persona_runtime.settings import Settings
from tests.support.env import openai_tier_env
from tests.support.mcp_fixtures import (
    MCP_SERVER_TIME, alive, http_mcp_server, nora_persona, server_pids, stdio_entry, wait_for, write_config,
)
from tests.support.openai_server import ScriptedOpenAIServer, Text, ToolCall

pytestmark = pytest.mark.subprocess

TOKEN = "mcp-header-SECRET-5521"


def open_test_session(server: ScriptedOpenAIServer, tmp_path: Path, config: Path, tools: list[str], **env: str) -> Session:
    settings = Settings.from_env(
        openai_tier_env(server.base_url)
        | {"PERSONA_HOME": str(tmp_path / "home"), "PERSONA_EMBEDDER": "hash", "PERSONA_MCP_START_WAIT_S": "60"}
        | env
    )
    return open_session(nora_persona(tmp_path, tools), settings=settings, mcp_config=config)


class Turns:
    """Turns on one conversation; records the approval questions."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.asked: list[str] = []
        self.conversation = session.new_conversation()

    async def approve(self, call: Any) -> bool:
        self.asked.append(call.name)
        return True

    async def turn(self, text: str) -> list[ev.TurnEvent]:
        loop = await self.session.loop()
        return [e async for e in loop.turn(self.conversation, text, tier="mid", approve=self.approve)]


def finished(events: list[ev.TurnEvent]) -> ev.ToolCallFinished:
    [done] = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    return done


def tool_message(server: ScriptedOpenAIServer) -> dict[str, Any]:
    """The tool result the model received in the last request."""
    message = server.requests[-1].body["messages"][-1]
    assert message["role"] == "tool"
    return message


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_a_scripted_model_uses_the_mcp_servers_tools(server, tmp_path, transport) -> None:
    test_dir = tmp_path / "mcp"
    os.environ["MCP_TEST_TOKEN"] = TOKEN  # the HTTP server inherits it; the stdio one gets it from mcp.json
    with http_mcp_server(test_dir) if transport == "http" else nullcontext("") as url:
        if transport == "stdio":
            entry = stdio_entry(test_dir, MCP_TEST_TOKEN="${MCP_TEST_TOKEN}")
        else:
            entry = {"url": url, "headers": {"Authorization": "Bearer ${MCP_TEST_TOKEN}"}}
        config = write_config(tmp_path / "mcp.json", {"notes": entry})
        session = open_test_session(server, tmp_path, config, ["mcp:notes"], PERSONA_TOOL_TIMEOUT_S="2")
        turns = Turns(session)

        async def main() -> dict[str, list[ev.TurnEvent]]:
            out = {}
            try:
                for name, args in [
                    ("write_note", {"name": "plan", "text": "buy milk"}), ("read_note", {"name": "plan"}), ("fail", {}),
                    ("hang", {}), ("env_value", {"name": "MCP_TEST_TOKEN"}), ("die", {}), ("read_note", {"name": "x"}),
                ]:
                    server.enqueue(ToolCall(f"notes__{name}", args, call_id=f"call_{name}"))
                    server.enqueue(Text(f"done with {name}"))
                    out[name if name not in out else name + "_after_die"] = await turns.turn(f"please {name}")
            finally:
                await session.aclose()
            return out

        turns_by_tool = asyncio.run(main())
    offered = {t["function"]["name"]: t["function"]["description"] for t in server.requests[0].body["tools"]}
    assert {"notes__write_note", "notes__read_note", "notes__hang", "notes__fail"} <= set(offered)
    assert offered["notes__write_note"] == "[MCP server notes] Write a note to a file."

    # The writing tool asked first; the read-only ones (readOnlyHint) did not.
    assert turns.asked == ["notes__write_note"]
    assert (test_dir / "note-plan").read_text() == "buy milk"
    every = [e for events in turns_by_tool.values() for e in events]
    assert all(e.status == "ok" for e in every if isinstance(e, ev.TurnFinished)) and len(turns_by_tool) == 7

    # Each result reached the model in the next request (requests: 2 per turn).
    contents = [r.body["messages"][-1]["content"] for r in server.requests[1::2]]
    assert contents[0] == "saved note plan (8 characters)" and contents[1] == "buy milk"
    assert "cannot do that: the disk is on fire" in contents[2] and finished(turns_by_tool["fail"]).is_error
    # The hanging tool timed out as a tool error, and the server was told to stop working on it.
    hang = finished(turns_by_tool["hang"])
    assert hang.is_error and contents[3].endswith("Tool 'notes__hang' timed out after 2 s.")
    assert wait_for(lambda: (test_dir / "hang-cancelled").exists(), 10)
    # A secret from mcp.json that a server echoes is redacted on the screen and for the model.
    assert TOKEN not in contents[4] and "[redacted]" in contents[4]
    assert TOKEN not in finished(turns_by_tool["env_value"]).content
    # The server died mid-call: a tool error, and the session goes on; its tools are no longer
    # offered, and a call to one fails at once.
    died = finished(turns_by_tool["die"])
    assert died.is_error and "went away" in died.content  # not "timed out": seen at once, not after 2 s
    assert "tools" not in server.requests[-1].body
    after = finished(turns_by_tool["read_note_after_die"])
    assert after.is_error and "timed out" not in after.content
    log = (tmp_path / "home" / "logs" / "turns.jsonl").read_text()
    assert TOKEN not in log and "notes__write_note" in log


def test_mcp_server_time_from_pypi_over_stdio(server, tmp_path) -> None:
    config = write_config(tmp_path / "mcp.json", {"time": {"command": MCP_SERVER_TIME, "args": ["--local-timezone", "UTC"]}})
    session = open_test_session(server, tmp_path, config, ["mcp:time:get_current_time"])
    turns = Turns(session)
    server.enqueue(ToolCall("time__get_current_time", {"timezone": "Europe/Oslo"}, call_id="call_t"))
    server.enqueue(Text("It is late in Oslo."))

    async def main() -> list[ev.TurnEvent]:
        try:
            return await turns.turn("What time is it in Oslo?")
        finally:
            await session.aclose()

    events = asyncio.run(main())
    assert [t["function"]["name"] for t in server.requests[0].body["tools"]] == ["time__get_current_time"]  # one tool allowed
    result = json.loads(tool_message(server)["content"])
    assert result["timezone"] == "Europe/Oslo" and "datetime" in result
    assert turns.asked == []  # the server marks it read-only
    assert events[-1].status == "ok" and events[-1].text == "It is late in Oslo."


def test_a_slow_server_does_not_hold_the_first_turn_and_its_tools_join_later(server, tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    test_dir.mkdir()
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    config = write_config(
        tmp_path / "mcp.json", {"slow": stdio_entry(test_dir, MCP_TEST_GATE=str(gate)), "notes": stdio_entry(test_dir)}
    )
    session = open_test_session(server, tmp_path, config, ["mcp:slow", "mcp:notes"], PERSONA_MCP_START_WAIT_S="1")
    turns = Turns(session)
    server.enqueue(Text("first"))
    server.enqueue(Text("second"))

    async def main() -> tuple[float, list[str], list[str]]:
        try:
            began = time.monotonic()
            await session.loop()
            waited = time.monotonic() - began
            notices = session.take_notices()
            await turns.turn("hello")
            with open(gate, "w", encoding="utf-8") as fifo:  # the slow server may start now
                fifo.write("go")
            assert await session.mcp.hub.wait_started(60)
            await turns.turn("again")
            return waited, notices, session.built_loop.toolbox.names()
        finally:
            await session.aclose()

    waited, notices, names = asyncio.run(main())
    assert "MCP server slow is still starting; its tools join when it is ready (/tools)" in notices
    first, second = ({t["function"]["name"] for t in r.body.get("tools", [])} for r in server.requests)
    assert not any(n.startswith("slow__") for n in first) and "slow__write_note" in second
    # The slow server could not start before the gate opened, after the first turn: that turn
    # did not wait for it (loop() returned after the 1 s wait, then the turn ran without it).
    assert "slow__write_note" in names and waited > 0


def test_every_server_process_is_gone_after_aclose(server, tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    config = write_config(tmp_path / "mcp.json", {"a": stdio_entry(test_dir), "b": stdio_entry(test_dir)})
    session = open_test_session(server, tmp_path, config, ["mcp:a", "mcp:b"])

    async def main() -> list[int]:
        try:
            await session.loop()
            return [p for p in server_pids(test_dir) if alive(p)]
        finally:
            await session.aclose()

    running = asyncio.run(main())
    assert len(running) == 2
    assert [p for p in running if alive(p)] == []  # aclose waited for them: no orphan, no zombie
