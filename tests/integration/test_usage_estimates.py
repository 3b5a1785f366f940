"""Tokens a server did not report are counted and marked estimated; tokens it reported are its
own; a server that rejects ``stream_options`` still answers. Through persona-core's real openai
backend against the scripted server (which records what it sent) and llama-cpp-python's own
OpenAI-compatible server on the bundled GGUF, both on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path
from typing import Any

from persona.schema.conversation import Conversation
from persona.schema.persona import Persona

from persona_runtime.agentic import AgenticLoop
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.events import TurnFailed, TurnFinished
from persona_runtime.loop import ConversationLoop
from persona_runtime.prompt import count_tokens
from persona_runtime.tier_env import tier_registry_from_env
from persona_runtime.turnlog import JSONLTurnLogWriter, TurnLog
from tests.support.env import openai_tier_env
from tests.support.llama_server import LLAMA_API_KEY, LLAMA_MODEL, LlamaServer
from tests.support.openai_server import ScriptedOpenAIServer, Status, Text

PERSONA = Persona.model_validate(
    {"persona_id": "kai-tokens", "identity": {"name": "Kai", "role": "research assistant", "background": "Brief."}}
)
SHORT = EngineOptions(reply_tokens=64)  # the least the engine allows: a few seconds per reply


def logged(writer: JSONLTurnLogWriter) -> list[TurnLog]:
    return [TurnLog.model_validate_json(line) for line in writer.path.read_text().splitlines()]


def chat(env: dict[str, str], writer: JSONLTurnLogWriter, *messages: str) -> list[Any]:
    """Each message's last event (TurnFinished, or TurnFailed then TurnFinished)."""
    tiers = tier_registry_from_env(env)
    loop = ConversationLoop(persona=PERSONA, tiers=tiers, turn_log=writer, options=SHORT)
    conversation = Conversation(conversation_id="tokens", persona_id="kai-tokens")

    async def run() -> list[Any]:
        try:
            return [[e async for e in loop.turn(conversation, m, tier="mid")] for m in messages]
        finally:
            await tiers.aclose()

    return asyncio.run(run())


def scripted_env(srv: ScriptedOpenAIServer) -> dict[str, str]:
    return openai_tier_env(srv.base_url, {"MID": "gpt-4o-mini"})


def test_a_server_that_sends_usage_is_logged_as_measured(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as srv:
        srv.enqueue(Text("Measured reply.", usage=(321, 4)))
        chat(scripted_env(srv), writer := JSONLTurnLogWriter(tmp_path / "t.jsonl"), "Hello.")
        assert srv.requests[0].body["stream_options"] == {"include_usage": True}
    [record] = logged(writer)
    assert (record.prompt_tokens, record.completion_tokens, record.usage_estimated) == (321, 4, False)


def test_a_server_that_sends_no_usage_is_logged_as_estimated_never_as_0(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(stream_usage=False) as srv:
        srv.enqueue(Text("Hello there, I am Kai."))
        srv.enqueue(Text("Still here."))
        turns = chat(scripted_env(srv), writer := JSONLTurnLogWriter(tmp_path / "t.jsonl"), "Hello.", "Again.")
        assert srv.usage_sent == [] and all(r.body["stream_options"] == {"include_usage": True} for r in srv.requests)
    first, second = logged(writer)
    assert first.usage_estimated and second.usage_estimated
    assert first.completion_tokens == count_tokens("Hello there, I am Kai.")
    assert second.completion_tokens == count_tokens("Still here.")
    assert 0 < first.prompt_tokens < second.prompt_tokens  # the second prompt carries the first exchange
    assert first.cost_cents is not None and first.cost_cents > 0  # gpt-4o-mini is priced: an estimated cost
    assert turns[0][-1].log.usage_estimated


def test_a_server_that_rejects_stream_options_is_asked_again_without_and_remembered(tmp_path: Path) -> None:
    with ScriptedOpenAIServer(reject_stream_options=True) as srv:
        srv.enqueue(Text("First answer."))
        srv.enqueue(Text("Second answer."))
        turns = chat(scripted_env(srv), writer := JSONLTurnLogWriter(tmp_path / "t.jsonl"), "One.", "Two.")
        sent = [("stream_options" in r.body) for r in srv.requests]
        rejected = len(srv.rejected)
    assert sent == [True, False, False] and rejected == 1  # retried once; the second turn never asked
    assert [type(t[-1]) for t in turns] == [TurnFinished, TurnFinished]
    assert not any(isinstance(e, TurnFailed) for t in turns for e in t)
    records = logged(writer)
    assert [r.status for r in records] == ["ok", "ok"]
    assert [[a.outcome for a in r.attempts] for r in records] == [["ok"], ["ok"]]  # never a failed attempt
    assert all(r.usage_estimated and r.prompt_tokens > 0 and r.completion_tokens > 0 for r in records)


def test_a_400_about_something_else_is_not_retried(tmp_path: Path) -> None:
    with ScriptedOpenAIServer() as srv:
        srv.enqueue(Status(400, body={"error": {"message": "messages: too many", "type": "invalid_request_error"}}))
        turns = chat(scripted_env(srv), JSONLTurnLogWriter(tmp_path / "t.jsonl"), "One.")
        assert len(srv.requests) == 1
    assert any(isinstance(e, TurnFailed) for e in turns[0])


# -- llama-cpp-python's own server -------------------------------------------------------------


def raw_stream_usage(llama: LlamaServer) -> list[Any]:
    """The usage objects llama.cpp's server sends in a stream when asked for them."""
    body = {
        "model": LLAMA_MODEL, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4,
        "stream": True, "stream_options": {"include_usage": True},
    }
    request = urllib.request.Request(
        f"{llama.base_url}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {LLAMA_API_KEY}"},
    )
    usages = []
    with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback only
        for line in response:
            data = line.decode().strip().removeprefix("data: ")
            if data.startswith("{") and json.loads(data).get("usage"):
                usages.append(json.loads(data)["usage"])
    return usages


def test_llama_cpp_server_chat_turn_and_agent_run_log_non_zero_tokens(llama_server: LlamaServer, tmp_path: Path) -> None:
    sends_usage = bool(raw_stream_usage(llama_server))  # 0.3.36: no usage in streams, asked or not
    env = llama_server.tier_env("MID")
    turns = chat(env, writer := JSONLTurnLogWriter(tmp_path / "chat.jsonl"), "What is the capital of France?")
    done = turns[0][-1]
    assert isinstance(done, TurnFinished) and done.status == "ok", turns
    [record] = logged(writer)
    assert record.model == LLAMA_MODEL and record.prompt_tokens > 0 and record.completion_tokens > 0
    assert record.usage_estimated is (not sends_usage)
    assert record.completion_tokens == count_tokens(done.text) or sends_usage

    tiers = tier_registry_from_env(env)
    agent_log = JSONLTurnLogWriter(tmp_path / "agent.jsonl")
    loop = AgenticLoop(persona=PERSONA, tiers=tiers, turn_log=agent_log, runs_dir=tmp_path / "runs", options=SHORT)

    async def run() -> list[Any]:
        try:
            return [e async for e in loop.run("Name one colour.", max_steps=1)]
        finally:
            await tiers.aclose()

    run_record = asyncio.run(run())[-1].run
    steps = logged(agent_log)
    assert steps and all(s.kind == "agent" and s.status == "ok" for s in steps)
    assert all(s.prompt_tokens > 0 and s.completion_tokens > 0 for s in steps)
    assert all(s.usage_estimated is (not sends_usage) for s in steps)
    assert run_record.usage_estimated is (not sends_usage) and run_record.prompt_tokens == sum(s.prompt_tokens for s in steps)
