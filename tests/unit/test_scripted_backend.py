"""persona_runtime.testing.ScriptedBackend: the public scripted ChatBackend."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime
from typing import Any

import pytest
from persona.backends import ChatBackend, ProviderError, RateLimitError, StreamChunk, ToolSpec
from persona.schema.conversation import ConversationMessage

from persona_runtime.testing import Hang, Raise, Reply, ScriptedBackend, ScriptedToolCall


def msg(text: str, role: str = "user") -> ConversationMessage:
    return ConversationMessage(role=role, content=text, created_at=datetime.now(UTC))  # type: ignore[arg-type]


MESSAGES = [msg("you are terse", "system"), msg("what is the tide doing")]


async def collect(backend: ScriptedBackend, **kwargs: Any) -> list[StreamChunk]:
    return [chunk async for chunk in backend.chat_stream(MESSAGES, **kwargs)]


def test_is_a_chat_backend() -> None:
    backend = ScriptedBackend(provider_name="anthropic", model_name="m", supports_vision=True)
    assert isinstance(backend, ChatBackend)
    assert (backend.provider_name, backend.model_name) == ("anthropic", "m")
    assert backend.supports_native_tools and backend.supports_vision


def test_stream_text_in_word_pieces_then_final_usage() -> None:
    backend = ScriptedBackend([Reply("High tide at two.")])
    chunks = asyncio.run(collect(backend))
    assert [c.delta for c in chunks[:-1]] == ["High ", "tide ", "at ", "two."]
    assert not any(c.is_final or c.usage for c in chunks[:-1])
    final = chunks[-1]
    assert final.is_final and final.delta == ""
    assert final.usage is not None
    # prompt = words in all messages (3 + 5), completion = number of deltas
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (8, 4, 12)


def test_explicit_deltas_usage_and_reasoning_and_str_shorthand() -> None:
    backend = ScriptedBackend([
        Reply(deltas=["Hel", "lo"], usage=(100, 7), reasoning="thinking..."),
        "plain",
    ])
    chunks = asyncio.run(collect(backend))
    assert chunks[0].reasoning == "thinking..." and chunks[0].delta == ""
    assert [c.delta for c in chunks[1:-1]] == ["Hel", "lo"]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 107
    reply = asyncio.run(backend.chat(MESSAGES))
    assert reply.content == "plain"
    with pytest.raises(ValueError, match="join"):
        Reply("Hello", deltas=["Hel", "p"])


def test_stream_tool_calls_each_as_one_complete_delta_with_unique_ids() -> None:
    backend = ScriptedBackend([
        Reply("Looking.", tool_calls=[
            ScriptedToolCall("web_search", {"query": "tides"}),
            ScriptedToolCall("file_read", {"path": "a.txt"}, call_id="mine"),
        ]),
        Reply(tool_calls=[ScriptedToolCall("web_search", {"query": "moon"})]),
    ])
    chunks = asyncio.run(collect(backend))
    deltas = [c.tool_call_delta for c in chunks if c.tool_call_delta is not None]
    assert [(d.call_id, d.name_delta, d.arguments_delta) for d in deltas] == [
        ("call_1", "web_search", '{"query": "tides"}'),
        ("mine", "file_read", '{"path": "a.txt"}'),
    ]
    assert chunks[0].delta == "Looking." and chunks[-1].is_final
    second = asyncio.run(collect(backend))
    assert second[0].tool_call_delta is not None and second[0].tool_call_delta.call_id == "call_2"


def test_chat_returns_parsed_tool_calls_and_flags_invalid_json() -> None:
    backend = ScriptedBackend([
        Reply("ok", tool_calls=[
            ScriptedToolCall("web_search", {"query": "tides"}),
            ScriptedToolCall("file_write", raw_arguments='{"path": "a.txt", "content": "unterminated'),
        ]),
    ], model_name="m1", provider_name="p1")
    reply = asyncio.run(backend.chat(MESSAGES))
    assert reply.content == "ok" and (reply.model, reply.provider) == ("m1", "p1")
    good, bad = reply.tool_calls
    assert (good.name, good.args, good.call_id, good.truncated) == ("web_search", {"query": "tides"}, "call_1", False)
    assert (bad.name, bad.args, bad.call_id, bad.truncated) == ("file_write", {}, "call_2", True)
    assert reply.usage.completion_tokens == 1 + 2  # one delta ("ok") + two tool calls
    assert reply.latency_ms >= 0


def test_raise_before_and_after_deltas() -> None:
    limited = RateLimitError("slow down", context={"retry_after_s": "2"})
    cut = ProviderError("stream cut")
    backend = ScriptedBackend([Raise(limited), Raise(cut, after_deltas=("partial ", "answer")), Raise(limited)])

    async def run_stream() -> list[str]:
        seen: list[str] = []
        async for chunk in backend.chat_stream(MESSAGES):
            seen.append(chunk.delta)
        return seen

    with pytest.raises(RateLimitError):
        asyncio.run(run_stream())

    async def partial() -> tuple[list[str], BaseException]:
        seen: list[str] = []
        with pytest.raises(ProviderError) as info:
            async for chunk in backend.chat_stream(MESSAGES):
                seen.append(chunk.delta)
        return seen, info.value

    seen, error = asyncio.run(partial())
    assert seen == ["partial ", "answer"] and error is cut
    with pytest.raises(RateLimitError):
        asyncio.run(backend.chat(MESSAGES))


def test_hang_is_cancelled_promptly() -> None:
    async def scenario() -> None:
        reached = asyncio.Event()
        backend = ScriptedBackend([Hang(reached, after_deltas=("thinking",))])
        seen: list[str] = []

        async def consume() -> None:
            async for chunk in backend.chat_stream(MESSAGES):
                seen.append(chunk.delta)

        task = asyncio.create_task(consume())
        await reached.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=5)
        assert task.done() and task.cancelled()
        assert seen == ["thinking"]

    asyncio.run(scenario())


def test_hang_in_chat_with_threading_event() -> None:
    async def scenario() -> None:
        reached = threading.Event()
        backend = ScriptedBackend([Hang(reached)])
        task = asyncio.create_task(backend.chat(MESSAGES))
        while not reached.is_set():  # the event is set synchronously once the task runs
            await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())


def test_exhausted_script_fails_loudly_unless_default() -> None:
    backend = ScriptedBackend(["one"])
    assert asyncio.run(backend.chat(MESSAGES)).content == "one"
    with pytest.raises(AssertionError, match="ScriptedBackend script exhausted after 1 calls"):
        backend.chat_stream(MESSAGES)
    with pytest.raises(AssertionError, match="exhausted after 1 calls"):
        asyncio.run(backend.chat(MESSAGES))

    fallback = ScriptedBackend(["first"], default=Reply("again"))
    assert [asyncio.run(fallback.chat(MESSAGES)).content for _ in range(3)] == ["first", "again", "again"]


def test_shared_queue_in_call_order_and_push() -> None:
    backend = ScriptedBackend(["a"])
    backend.push("b", Reply("c"))
    stream = backend.chat_stream(MESSAGES)  # takes "a" at call time, before iteration
    assert asyncio.run(backend.chat(MESSAGES)).content == "b"

    async def drain() -> str:
        return "".join([c.delta async for c in stream])

    assert asyncio.run(drain()) == "a"
    assert asyncio.run(backend.chat(MESSAGES)).content == "c"
    assert backend.remaining == 0


def test_recording() -> None:
    backend = ScriptedBackend(["x", "y", "z"])
    spec = ToolSpec(name="web_search", description="search", parameters={"type": "object", "properties": {}})
    asyncio.run(backend.chat(MESSAGES, tools=[spec], temperature=0.3, max_tokens=99, top_p=0.9, top_k=5))
    asyncio.run(collect(backend, max_tokens=12))
    other = [msg("second")]
    asyncio.run(backend.chat(other))
    first, second, third = backend.calls
    assert first.method == "chat" and second.method == "chat_stream"
    assert first.tool_names == ["web_search"] and first.tools == [spec]
    assert (first.temperature, first.max_tokens) == (0.3, 99)
    assert first.extra == {"top_p": 0.9, "top_k": 5}
    assert second.tools is None and second.max_tokens == 12
    assert first.messages == MESSAGES and first.messages is not MESSAGES
    assert third.messages == other
    assert backend.call_count == 3
    assert backend.last_messages == other
    assert ScriptedBackend().last_messages == []
