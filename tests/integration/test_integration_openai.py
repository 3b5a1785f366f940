"""ConversationLoop through persona-core's real OpenAI backend, over HTTP on 127.0.0.1.

Tiers come from environment variables (tier_registry_from_env), exactly as the CLI builds
them; memory is the real Chroma store on a temp dir.
"""

from __future__ import annotations

import asyncio

import pytest
from persona.schema.conversation import Conversation
from persona.schema.persona import Persona

from persona_runtime import events as ev
from persona_runtime.loop import ConversationLoop
from persona_runtime.memory import PersonaMemory
from persona_runtime.routing import HeuristicRouter
from persona_runtime.tier_env import tier_registry_from_env
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
from tests.support.env import openai_tier_env
from tests.support.openai_server import ScriptedOpenAIServer, Status, Text, ToolCall

PERSONA = Persona.model_validate(
    {
        "persona_id": "kai-test",
        "identity": {"name": "Kai", "role": "research assistant", "background": "Careful with numbers."},
        "tools": ["calculator"],
    }
)


def tier_env(srv: ScriptedOpenAIServer) -> dict[str, str]:
    return openai_tier_env(srv.base_url)


async def run_turn(loop: ConversationLoop, conv: Conversation, text: str, **kw) -> list[ev.TurnEvent]:
    return [e async for e in loop.turn(conv, text, **kw)]


def build(srv, tmp_path, *, toolbox=None, memory=None):
    tiers = tier_registry_from_env(tier_env(srv))
    writer = JSONLTurnLogWriter(tmp_path / "logs" / "turns.jsonl")
    loop = ConversationLoop(
        persona=PERSONA, tiers=tiers, memory=memory, router=HeuristicRouter(tiers), toolbox=toolbox, turn_log=writer
    )
    return loop, tiers, writer


def read_log(writer: JSONLTurnLogWriter) -> list[TurnLog]:
    return [TurnLog.model_validate_json(line) for line in writer.path.read_text().splitlines()]


def test_streamed_text_over_real_http(server, tmp_path, memories) -> None:
    from persona.stores import HashEmbedder

    memory = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "mem", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    memory.load()
    server.enqueue(Text("Paris is the capital of France.", usage=(40, 7)), model="gpt-4o")
    loop, tiers, writer = build(server, tmp_path, memory=memory)
    conv = Conversation(conversation_id="int-1", persona_id="kai-test")

    async def main():
        try:
            return await run_turn(loop, conv, "What is the capital of France?")
        finally:
            await tiers.aclose()

    events = asyncio.run(main())
    deltas = [e.text for e in events if isinstance(e, ev.TextDelta)]
    assert "".join(deltas) == "Paris is the capital of France." and len(deltas) > 1
    done = events[-1]
    assert isinstance(done, ev.TurnFinished) and done.status == "ok"
    assert (done.tier, done.provider, done.model) == ("frontier", "openai", "gpt-4o")
    assert (done.prompt_tokens, done.completion_tokens) == (40, 7)
    # gpt-4o is priced: (40 * 0.25 + 7 * 1.0) / 1000 cents.
    assert done.cost_cents == pytest.approx(0.017)

    request = server.requests[0]
    assert request.body["stream"] is True and request.body["model"] == "gpt-4o"
    assert request.body["messages"][0]["role"] == "system"
    assert "You are Kai, research assistant." in request.body["messages"][0]["content"]
    assert request.body["messages"][-1] == {"role": "user", "content": "What is the capital of France?"}

    [record] = read_log(writer)
    assert record.status == "ok" and record.model == "gpt-4o" and record.cost_cents == pytest.approx(0.017)
    assert "sk-test-integration-0001" not in writer.path.read_text()
    assert len(memory.stores["episodic"].get_all("kai-test")) == 1


def test_tool_call_round_trip_over_real_http(server, tmp_path) -> None:
    from persona.tools import Toolbox
    from persona.tools.builtin.calculator import make_calculator_tool

    toolbox = Toolbox([make_calculator_tool()], allow_list=["calculator"])
    server.enqueue(ToolCall("calculator", {"expression": "1234*5678"}, call_id="call_abc"), model="gpt-4o-mini")
    server.enqueue(Text("The product is 7006652."), model="gpt-4o-mini")
    loop, tiers, writer = build(server, tmp_path, toolbox=toolbox)
    conv = Conversation(conversation_id="int-2", persona_id="kai-test")

    async def main():
        try:
            return await run_turn(loop, conv, "Multiply 1234 by 5678", tier="mid")
        finally:
            await tiers.aclose()

    events = asyncio.run(main())
    started = [e for e in events if isinstance(e, ev.ToolCallStarted)]
    finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert [(s.name, s.arguments) for s in started] == [("calculator", {"expression": "1234*5678"})]
    assert "7006652" in finished[0].content and not finished[0].is_error
    assert events[-1].text == "The product is 7006652."

    first, second = server.requests
    assert [t["function"]["name"] for t in first.body["tools"]] == ["calculator"]
    # The follow-up carries the assistant tool call and the tool result, paired by id.
    messages = second.body["messages"]
    assert messages[-2]["role"] == "assistant" and messages[-2]["tool_calls"][0]["id"] == "call_abc"
    assert messages[-1]["role"] == "tool" and messages[-1]["tool_call_id"] == "call_abc"
    assert "7006652" in messages[-1]["content"]
    [record] = read_log(writer)
    assert [(t.name, t.ok) for t in record.tool_calls] == [("calculator", True)]


def test_429_falls_back_to_the_next_tier(server, tmp_path) -> None:
    # Retry-After larger than we wait out: fall back straight away.
    server.enqueue(Status(429, retry_after=120), model="gpt-4o")
    server.enqueue(Text("Answer from the mid tier."), model="gpt-4o-mini")
    loop, tiers, writer = build(server, tmp_path)
    conv = Conversation(conversation_id="int-3", persona_id="kai-test")

    async def main():
        try:
            return await run_turn(loop, conv, "Hello?")
        finally:
            await tiers.aclose()

    events = asyncio.run(main())
    [fallback] = [e for e in events if isinstance(e, ev.FallbackTriggered)]
    assert (fallback.failed_tier, fallback.failed_model, fallback.next_tier, fallback.next_model) == (
        "frontier", "gpt-4o", "mid", "gpt-4o-mini",
    )
    assert "RateLimitError" in fallback.error
    assert events[-1].status == "ok" and events[-1].text == "Answer from the mid tier."
    assert [r.model for r in server.requests] == ["gpt-4o", "gpt-4o-mini"]  # the SDK did not retry on its own
    [record] = read_log(writer)
    assert [(a.tier, a.outcome, a.error_type) for a in record.attempts] == [
        ("frontier", "error", "RateLimitError"),
        ("mid", "ok", None),
    ]
    assert record.fallback


def test_short_retry_after_is_waited_then_the_same_model_answers(server, tmp_path) -> None:
    server.enqueue(Status(429, retry_after=0), model="gpt-4o")
    server.enqueue(Text("Second try worked."), model="gpt-4o")
    loop, tiers, _writer = build(server, tmp_path)

    async def main():
        try:
            return await run_turn(loop, Conversation(conversation_id="int-4", persona_id="kai-test"), "Hi")
        finally:
            await tiers.aclose()

    events = asyncio.run(main())
    assert [type(e).__name__ for e in events if isinstance(e, (ev.RetryWaiting, ev.FallbackTriggered))] == ["RetryWaiting"]
    assert events[-1].text == "Second try worked."


def test_every_model_failing_is_a_clean_error(server, tmp_path) -> None:
    server.enqueue(Status(500), model="gpt-4o")
    server.enqueue(Status(503), model="gpt-4o-mini")
    loop, tiers, writer = build(server, tmp_path)
    conv = Conversation(conversation_id="int-5", persona_id="kai-test")

    async def main():
        try:
            return await run_turn(loop, conv, "Anyone?")
        finally:
            await tiers.aclose()

    events = asyncio.run(main())
    assert isinstance(events[-2], ev.TurnFailed) and events[-1].status == "error"
    assert conv.messages[-1].content == "Anyone?" and conv.messages[-1].metadata["status"] == "error"
    [record] = read_log(writer)
    assert record.status == "error" and len(record.attempts) == 2
    assert "sk-test-integration-0001" not in writer.path.read_text()
