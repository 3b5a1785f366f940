"""Every token a provider reported is in the TurnLog: for each request of a chat that compacts
its history (summaries included) and of an agent run with tool calls, through persona-core's
real openai backend on a loopback server that records the usage it sends."""

from __future__ import annotations

import asyncio
from pathlib import Path

from persona.schema.conversation import Conversation
from persona.schema.persona import Persona
from persona.tools import Toolbox
from persona.tools.builtin.calculator import make_calculator_tool

from persona_runtime.agentic import AgenticLoop, RunStatus
from persona_runtime.history import HistoryWindow
from persona_runtime.loop import ConversationLoop
from persona_runtime.tier_env import tier_registry_from_env
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
from tests.support.env import openai_tier_env
from tests.support.openai_server import ScriptedOpenAIServer, Text, ToolCall

PERSONA = Persona.model_validate(
    {
        "persona_id": "kai-usage",
        "identity": {"name": "Kai", "role": "research assistant", "background": "Counts every token."},
        "tools": ["calculator"],
    }
)


def logged(writer: JSONLTurnLogWriter) -> list[TurnLog]:
    return [TurnLog.model_validate_json(line) for line in writer.path.read_text().splitlines()]


def totals(pairs: list[tuple[int, int]]) -> tuple[int, int]:
    return sum(p for p, _ in pairs), sum(c for _, c in pairs)


def test_a_compacting_chat_logs_every_reported_token(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as srv:
        # One model serves every tier, summaries included (small falls back to mid): each request
        # takes the next reply, with usage numbers no two requests share.
        # The first request that mentions "six" (turn 2) calls a tool.
        srv.enqueue(ToolCall("calculator", {"expression": "6*7"}, usage=(555, 5)), when=lambda body: "six" in str(body))
        for i in range(12):
            srv.enqueue(Text(f"Reply number {i}.", usage=(100 + 7 * i, 10 + i)))
        tiers = tier_registry_from_env(openai_tier_env(srv.base_url, {"MID": "gpt-4o-mini"}))
        writer = JSONLTurnLogWriter(tmp_path / "turns.jsonl")
        loop = ConversationLoop(
            persona=PERSONA, tiers=tiers, turn_log=writer,
            toolbox=Toolbox([make_calculator_tool()], allow_list=["calculator"]),
            history_window=HistoryWindow(compact_after=2, keep_recent_turns=1),
        )
        conversation = Conversation(conversation_id="usage-chat", persona_id="kai-usage")

        async def chat() -> None:
            try:
                for text in ("Hello.", "What is six times seven?", "Thanks.", "And now?"):
                    async for _event in loop.turn(conversation, text, tier="mid"):
                        pass
            finally:
                await tiers.aclose()

        asyncio.run(chat())
        sent = list(srv.usage_sent)
        summaries = sum(1 for r in srv.requests if not r.stream)

    records = logged(writer)
    assert [r.status for r in records] == ["ok"] * 4
    assert summaries >= 2 and sum(r.history_compacted for r in records) == summaries
    assert any(r.tool_calls for r in records)
    assert len(sent) == len(srv.requests)
    assert totals([(r.prompt_tokens, r.completion_tokens) for r in records]) == totals(sent)


def test_an_agent_run_with_tool_calls_logs_every_reported_token(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as srv:
        srv.enqueue(ToolCall("calculator", {"expression": "6*7"}, call_id="call_a", usage=(300, 20)), model="gpt-4o")
        srv.enqueue(ToolCall("calculator", {"expression": "42+1"}, call_id="call_b", usage=(410, 22)), model="gpt-4o-mini")
        srv.enqueue(Text("[FINAL] It is 43.", usage=(520, 9)), model="gpt-4o-mini")
        tiers = tier_registry_from_env(openai_tier_env(srv.base_url))
        writer = JSONLTurnLogWriter(tmp_path / "turns.jsonl")
        loop = AgenticLoop(
            persona=PERSONA, tiers=tiers, turn_log=writer, runs_dir=tmp_path / "runs",
            toolbox=Toolbox([make_calculator_tool()], allow_list=["calculator"]),
        )

        async def run() -> list:
            try:
                return [e async for e in loop.run("What is six times seven, plus one?", max_steps=5)]
            finally:
                await tiers.aclose()

        events = asyncio.run(run())
        sent = list(srv.usage_sent)

    run_record = events[-1].run
    assert run_record.status is RunStatus.COMPLETED
    records = logged(writer)
    assert [(r.kind, r.step, len(r.tool_calls)) for r in records] == [("agent", 1, 1), ("agent", 2, 1), ("agent", 3, 0)]
    assert sent == [(300, 20), (410, 22), (520, 9)]
    assert totals([(r.prompt_tokens, r.completion_tokens) for r in records]) == totals(sent)
    assert (run_record.prompt_tokens, run_record.completion_tokens) == totals(sent)
