"""Tool faults are contained: a tool that raises, hangs or floods, and file tools that try to escape.

Each runs through ConversationLoop with a ScriptedBackend model and persona-core's own
Toolbox / ``@tool`` (or ``build_default_toolbox``, as persona_runtime/session.py builds it). The fault
must reach the model as a tool result (error or truncated) and the person as a
``ToolCallFinished`` event, and the turn must finish normally.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from persona.schema.conversation import Conversation
from persona.schema.persona import Persona
from persona.schema.tools import ToolResult
from persona.tools import Toolbox, tool

from persona_runtime import events as ev
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.loop import ConversationLoop
from persona_runtime.testing import Reply, ScriptedBackend, ScriptedToolCall
from persona_runtime.tier import TierConfig, TierRegistry
from persona_runtime.turnlog import MemoryTurnLogWriter

from tests.support.agentic import FakeToolbox
from tests.support.fifo import release_fifo

BOUND_S = 20


def persona(*tools: str) -> Persona:
    return Persona.model_validate(
        {"persona_id": "toolie", "identity": {"name": "Toolie", "role": "tester", "background": "Calls tools."}, "tools": list(tools)}
    )


def run_turn(
    toolbox: Any, script: list[Any], *, tools: tuple[str, ...], approve: Any = None, **loop_kw: Any
) -> tuple[list[Any], ScriptedBackend, MemoryTurnLogWriter]:
    backend = ScriptedBackend(script)
    log = MemoryTurnLogWriter()
    loop = ConversationLoop(
        persona=persona(*tools), tiers=TierRegistry([TierConfig.from_backend("mid", backend)]),
        toolbox=toolbox, turn_log=log, **loop_kw,
    )
    conv = Conversation(conversation_id="tools", persona_id="toolie")

    async def yes(_call: Any) -> bool:
        return True

    async def main() -> list[Any]:
        return [e async for e in loop.turn(conv, "use the tool", tier="mid", approve=approve or yes)]

    events = asyncio.run(asyncio.wait_for(main(), BOUND_S))
    return events, backend, log


def finished_calls(events: list[Any]) -> list[ev.ToolCallFinished]:
    return [e for e in events if isinstance(e, ev.ToolCallFinished)]


def tool_messages(backend: ScriptedBackend, call_index: int = 1) -> list[str]:
    """The tool-result messages the model received in its ``call_index``-th call."""
    return [m.content for m in backend.calls[call_index].messages if m.role == "tool"]


def call(name: str, **args: Any) -> Reply:
    return Reply(tool_calls=[ScriptedToolCall(name, args, call_id=f"call_{name}")])


# -- tools that misbehave ------------------------------------------------------------------


def test_a_tool_that_raises_is_an_error_result() -> None:
    @tool(name="explode", description="Always fails.")
    async def explode() -> ToolResult:
        raise RuntimeError("the flux capacitor is out of flux")

    events, backend, log = run_turn(
        Toolbox([explode], allow_list=["explode"]), [call("explode"), Reply("It failed; sorry.")], tools=("explode",)
    )
    [done] = finished_calls(events)
    assert done.is_error and "flux capacitor" in done.content
    [sent] = tool_messages(backend)
    assert "flux capacitor" in sent
    assert events[-1].status == "ok" and events[-1].text == "It failed; sorry."
    assert [(t.name, t.ok) for t in log.logs[0].tool_calls] == [("explode", False)]


def test_a_tool_that_hangs_is_cut_off_by_the_timeout() -> None:
    state: dict[str, Any] = {}

    @tool(name="forever", description="Never returns.")
    async def forever() -> ToolResult:
        state["started"] = True
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            state["cancelled"] = True
            raise
        return ToolResult(tool_name="forever", content="unreachable")

    events, backend, log = run_turn(
        Toolbox([forever], allow_list=["forever"]), [call("forever"), Reply("Gave up waiting.")],
        tools=("forever",), options=EngineOptions(tool_timeout_s=0.3),
    )
    assert state == {"started": True, "cancelled": True}  # the hung tool was cancelled, not left behind
    [done] = finished_calls(events)
    assert done.is_error and done.content == "Tool 'forever' timed out after 0.3 s."
    assert 250 <= done.duration_ms < 5000
    [sent] = tool_messages(backend)
    assert sent.endswith("Tool 'forever' timed out after 0.3 s.")
    assert events[-1].status == "ok" and events[-1].text == "Gave up waiting."
    assert [(t.name, t.ok) for t in log.logs[0].tool_calls] == [("forever", False)]


def test_a_tool_that_returns_megabytes_is_truncated() -> None:
    big = "".join(f"line {i:07d} of a very large tool result\n" for i in range(120_000))  # ~4.7 MB
    assert len(big) > 4_000_000

    @tool(name="flood", description="Returns a lot.")
    async def flood() -> ToolResult:
        return ToolResult(tool_name="flood", content=big)

    events, backend, log = run_turn(
        Toolbox([flood], allow_list=["flood"]), [call("flood"), Reply("That was a lot.")],
        tools=("flood",), options=EngineOptions(tool_result_max_chars=10_000),
    )
    [done] = finished_calls(events)
    assert not done.is_error
    assert done.content.startswith(big[:10_000]) and done.content.endswith(f"[… {len(big) - 10_000} more characters cut]")
    assert len(done.content) < 10_100
    [sent] = tool_messages(backend)
    assert len(sent) < 10_200 and "more characters cut" in sent and big[:10_000] in sent
    assert events[-1].status == "ok"
    assert [(t.name, t.ok) for t in log.logs[0].tool_calls] == [("flood", True)]


def test_a_hallucinated_tool_is_an_error_result_naming_the_real_ones() -> None:
    @tool(name="real_tool", description="Exists.")
    async def real_tool() -> ToolResult:
        return ToolResult(tool_name="real_tool", content="ok")

    events, backend, _log = run_turn(
        Toolbox([real_tool], allow_list=["real_tool"]), [call("imaginary_tool"), Reply("Oops.")], tools=("real_tool",)
    )
    [done] = finished_calls(events)
    assert done.is_error and "not available" in done.content and "real_tool" in done.content
    assert events[-1].status == "ok"


# -- the file tools' sandbox ---------------------------------------------------------------


@pytest.fixture
def sandbox(tmp_path):
    """persona-core's file tools, built the way persona_runtime/session.py builds them, rooted at ``workspace``."""
    from persona.config import PersonaCoreConfig
    from persona.tools import build_default_toolbox

    workspace = tmp_path / "home" / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "notes.txt").write_text("inside the sandbox")
    outside = tmp_path / "home" / "outside.txt"
    outside.write_text("OUTSIDE-SANDBOX-CONTENT")
    (workspace / "link.txt").symlink_to(outside)
    config = PersonaCoreConfig(embedder="hash", tools_sandbox_root=workspace, chroma_path=tmp_path / "home" / "memory")

    async def build() -> Any:
        toolbox, clients = await build_default_toolbox(config, persona("file_read", "file_write"))
        assert list(clients) == []
        return toolbox

    toolbox = asyncio.run(build())
    assert set(toolbox.names()) == {"file_read", "file_write"}
    return toolbox, workspace, outside


ESCAPES = [
    pytest.param("../../etc/passwd", id="dotdot-etc-passwd"),
    pytest.param("/etc/passwd", id="absolute-etc-passwd"),
    pytest.param("../outside.txt", id="dotdot-sibling"),
    pytest.param("OUTSIDE_ABS", id="absolute-sibling"),
    pytest.param("link.txt", id="symlink-out"),
    pytest.param("sub/../../outside.txt", id="nested-dotdot"),
]


@pytest.mark.parametrize("path", ESCAPES)
def test_file_read_stays_inside_the_sandbox(sandbox, path) -> None:
    toolbox, _workspace, outside = sandbox
    path = str(outside) if path == "OUTSIDE_ABS" else path
    events, backend, _log = run_turn(
        toolbox, [call("file_read", path=path), Reply("I cannot read that.")], tools=("file_read", "file_write")
    )
    [done] = finished_calls(events)
    assert done.is_error, done.content
    [sent] = tool_messages(backend)
    for text in (done.content, sent):
        assert "OUTSIDE-SANDBOX-CONTENT" not in text and "root:" not in text
    assert events[-1].status == "ok"


def test_file_read_inside_the_sandbox_works(sandbox) -> None:
    toolbox, _workspace, _outside = sandbox
    events, _backend, _log = run_turn(toolbox, [call("file_read", path="notes.txt"), Reply("Read it.")], tools=("file_read",))
    [done] = finished_calls(events)
    assert not done.is_error and "inside the sandbox" in done.content  # the escapes above fail for the right reason


@pytest.mark.parametrize("path", ["../escaped.txt", "OUTSIDE_ABS", "link.txt"])
def test_file_write_stays_inside_the_sandbox(sandbox, path) -> None:
    toolbox, workspace, outside = sandbox
    target = outside.parent / "escaped.txt"
    path = str(target) if path == "OUTSIDE_ABS" else path
    before = {p: p.read_bytes() for p in outside.parent.rglob("*") if p.is_file() and not p.is_symlink()}
    events, _backend, _log = run_turn(
        toolbox, [call("file_write", path=path, content="PWNED"), Reply("Could not write.")], tools=("file_write",)
    )
    [done] = finished_calls(events)
    assert done.is_error, done.content
    assert not target.exists() and outside.read_text() == "OUTSIDE-SANDBOX-CONTENT"
    after = {p: p.read_bytes() for p in outside.parent.rglob("*") if p.is_file() and not p.is_symlink()}
    assert after == before and os.path.islink(workspace / "link.txt")


def test_a_local_tool_that_blocks_the_thread_is_still_cut_off_by_the_timeout(sandbox) -> None:
    """persona-core's file_read does a blocking os.open inside ``async def``: on a FIFO with no
    writer it never returns. It runs on its own thread, so the timeout still fires."""
    toolbox, workspace, _outside = sandbox
    fifo = workspace / "never.fifo"
    os.mkfifo(fifo)
    try:
        events, backend, log = run_turn(
            toolbox, [call("file_read", path="never.fifo"), Reply("It timed out.")], tools=("file_read",), options=EngineOptions(tool_timeout_s=0.5)
        )
        [done] = finished_calls(events)
        assert done.is_error and "timed out after 0.5 s" in done.content
        [sent] = tool_messages(backend)
        assert sent.endswith(done.content)
        assert events[-1].status == "ok" and log.logs[0].tool_calls[0].ok is False
    finally:
        release_fifo(fifo)


def test_a_blocked_local_tool_can_be_cancelled(sandbox) -> None:
    """Ctrl-C (task cancel) while file_read is blocked: the turn ends interrupted at once."""
    toolbox, workspace, _outside = sandbox
    fifo = workspace / "never.fifo"
    os.mkfifo(fifo)
    backend = ScriptedBackend([call("file_read", path="never.fifo"), Reply("unused")])
    log = MemoryTurnLogWriter()
    loop = ConversationLoop(
        persona=persona("file_read"), tiers=TierRegistry([TierConfig.from_backend("mid", backend)]),
        toolbox=toolbox, turn_log=log, options=EngineOptions(tool_timeout_s=BOUND_S * 10),
    )
    conv = Conversation(conversation_id="tools", persona_id="toolie")

    async def main() -> list[Any]:
        seen: list[Any] = []

        async def consume() -> None:
            async for event in loop.turn(conv, "read the pipe", tier="mid"):
                seen.append(event)
                if isinstance(event, ev.ToolCallStarted):
                    started.set()

        started = asyncio.Event()
        task = asyncio.ensure_future(consume())
        await asyncio.wait_for(started.wait(), BOUND_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, BOUND_S)  # would hang here if the read held the loop
        return seen

    try:
        seen = asyncio.run(main())
    finally:
        release_fifo(fifo)
    assert not finished_calls(seen)
    assert [r.status for r in log.logs] == ["interrupted"]
    assert [m.role for m in conv.messages] == ["user", "assistant"]


def test_the_persons_time_at_the_approval_question_is_logged_apart_from_the_tools() -> None:
    async def write_file(path: str, content: str) -> str:
        return "written"

    async def slow_person(_call: Any) -> bool:
        await asyncio.sleep(0.3)  # the person reading the question, not synchronisation
        return True

    toolbox = FakeToolbox(file_write=write_file)
    events, _backend, log = run_turn(
        toolbox, [call("file_write", path="a.md", content="x"), Reply("Done.")], tools=("file_write",), approve=slow_person,
    )
    [record] = log.logs[0].tool_calls
    assert record.approval_ms >= 250 and record.duration_ms < record.approval_ms
    finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert finished[0].duration_ms < 250
