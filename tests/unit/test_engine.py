"""The engine chat and agent share: usage that adds up, reasoning and the reply cap in both."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from persona.schema.conversation import Conversation

from persona_runtime import events as ev
from persona_runtime.agentic import events as agent_events
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.engine.usage import Usage
from persona_runtime.loop import ConversationLoop
from persona_runtime.testing import Reply, ScriptedBackend
from tests.support import agentic

LOCAL_CAP = 384


def test_usage_adds_up_and_an_unpriced_part_makes_the_cost_unknown() -> None:
    a = Usage(100, 20, 0.5, 1)
    b = Usage(50, 5, 0.25, 1)
    assert a + b == Usage(150, 25, 0.75, 2)
    assert (a + Usage(1, 1, None, 1)).cost_cents is None
    assert sum([a, b], Usage()) == a + b

    class Reported:
        prompt_tokens, completion_tokens = 1000, 500

    def reported(price: tuple[float, float] | None) -> Usage:
        return Usage.measured_or_estimated(Reported(), price, prompt_estimate=lambda: 1, completion_estimate=lambda: 1)

    assert reported((1.0, 2.0)) == Usage(1000, 500, 2.0, 1)
    assert reported(None).cost_cents is None


def chat_events(backend: ScriptedBackend, **loop_options) -> list:
    loop = ConversationLoop(persona=agentic.PERSONA, tiers=agentic.tiers(mid=backend), **loop_options)
    conversation = Conversation(conversation_id="engine", persona_id="tester")

    async def turn() -> list:
        return [e async for e in loop.turn(conversation, "Hello?", tier="mid")]

    return asyncio.run(turn())


def agent_events_for(backend: ScriptedBackend, tmp_path: Path, **loop_options) -> list:
    loop, _log = agentic.make_loop(agentic.tiers(frontier=backend), tmp_path, **loop_options)
    return asyncio.run(agentic.collect(loop, "Say hello.", max_steps=1))


def test_chat_streams_the_models_reasoning_as_the_agent_does(tmp_path: Path) -> None:
    chat = chat_events(ScriptedBackend([Reply("Hi there.", reasoning="The user greets me.")]))
    assert [type(e).__name__ for e in chat if isinstance(e, ev.ThinkingDelta | ev.TextDelta)][:1] == ["ThinkingDelta"]
    assert "".join(e.text for e in chat if isinstance(e, ev.ThinkingDelta)) == "The user greets me."
    assert chat[-1].text == "Hi there."  # reasoning is shown, never part of the reply

    run = agent_events_for(ScriptedBackend([Reply("[FINAL] Hello.", reasoning="The user greets me.")]), tmp_path)
    assert "The user greets me." in "".join(e.text for e in run if isinstance(e, agent_events.ThinkingDelta))


@pytest.mark.parametrize("where", ["chat", "agent"])
def test_one_local_reply_cap_for_chat_and_agent_and_a_cut_reply_says_so(where: str, tmp_path: Path) -> None:
    long_reply = Reply("[FINAL] " + "word " * 50, usage=(30, LOCAL_CAP))  # the model stopped at its budget
    local = ScriptedBackend([long_reply], provider_name="gguf", model_name="bundled")
    events = chat_events(local) if where == "chat" else agent_events_for(local, tmp_path)
    assert local.calls[0].max_tokens == LOCAL_CAP
    cuts = [e for e in events if isinstance(e, ev.ReplyCut)]
    assert cuts == [ev.ReplyCut(LOCAL_CAP, "PERSONA_LOCAL_REPLY_TOKENS")]


def test_the_local_cap_is_a_setting_and_a_reply_under_it_is_not_cut() -> None:
    local = ScriptedBackend([Reply("Short.", usage=(30, 3))], provider_name="gguf", model_name="bundled")
    events = chat_events(local, options=EngineOptions(local_reply_tokens=100))
    assert local.calls[0].max_tokens == 100
    assert not [e for e in events if isinstance(e, ev.ReplyCut)]
    remote = ScriptedBackend([Reply("Long.", usage=(30, 90))])
    chat_events(remote, options=EngineOptions(local_reply_tokens=100, reply_tokens=900))
    assert remote.calls[0].max_tokens == 900  # the local cap is for local models only
