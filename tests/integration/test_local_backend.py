"""LlamaCppBackend: real turns on the bundled SmolLM2 GGUF (marked slow) and fast checks."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from persona.backends.errors import ProviderError
from persona.backends.protocol import ChatBackend
from persona.backends.types import ChatResponse, StreamChunk, ToolSpec
from persona.schema.content import ImageContent, TextContent
from persona.schema.conversation import ConversationMessage
from persona.schema.tools import ToolCall
from persona_runtime.errors import ConfigError
from persona_runtime.local_backend import (
    DEFAULT_REPEAT_PENALTY,
    WORKER_THREAD_NAME,
    LlamaCppBackend,
    bundled_model_path,
    to_llama_messages,
)
from persona_runtime.local_model import shared_prefix_tokens
from persona_runtime.prompt_cache import PromptCache, model_identity
from persona_runtime.testing import ScriptedBackend


def _msg(role: str, content: object, **kw: object) -> ConversationMessage:
    return ConversationMessage(role=role, content=content, created_at=datetime.now(UTC), **kw)  # type: ignore[arg-type]


QUESTION = [_msg("user", "What is the capital of France?")]
LONG_ASK = [_msg("user", "Write a long story about a dragon who learns to bake bread.")]


def _workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == WORKER_THREAD_NAME]


# -- fast: no model load ---------------------------------------------------------------


def test_properties_and_protocol() -> None:
    b = LlamaCppBackend.shared(None)
    assert isinstance(b, ChatBackend)
    assert b.provider_name == "gguf"
    assert b.model_name == "SmolLM2-135M-Instruct.Q4_1"
    assert b.supports_native_tools is False
    assert b.supports_vision is False
    assert b.model_path == bundled_model_path()


def test_shared_returns_one_instance_per_resolved_path() -> None:
    a = LlamaCppBackend.shared(None)
    assert LlamaCppBackend.shared(None) is a
    assert LlamaCppBackend.shared(str(bundled_model_path())) is a


def test_missing_path_is_a_provider_error_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "nope" / "model.gguf"
    with pytest.raises(ProviderError) as info:
        LlamaCppBackend.shared(str(missing))
    assert str(missing) in str(info.value)


def test_non_gguf_file_is_a_provider_error_naming_it(tmp_path: Path) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("just some text, not a model")
    with pytest.raises(ProviderError) as info:
        LlamaCppBackend.shared(str(text))
    assert str(text) in str(info.value)
    assert "not a GGUF" in str(info.value)


def test_context_window_default_env_and_bad_value(monkeypatch: pytest.MonkeyPatch) -> None:
    path = bundled_model_path()
    monkeypatch.delenv("PERSONA_LOCAL_CONTEXT", raising=False)
    assert LlamaCppBackend(path).context_window == 8192
    monkeypatch.setenv("PERSONA_LOCAL_CONTEXT", "4096")
    assert LlamaCppBackend(path).context_window == 4096
    for bad in ("lots", "0", "100"):
        monkeypatch.setenv("PERSONA_LOCAL_CONTEXT", bad)
        with pytest.raises(ConfigError) as info:
            LlamaCppBackend(path)
        assert info.value.variable == "PERSONA_LOCAL_CONTEXT"


def test_message_conversion() -> None:
    converted = to_llama_messages([
        _msg("system", "You are Astrid."),
        _msg("system", "Earlier in this conversation: hello."),
        _msg("user", [TextContent(text="look at this"), ImageContent(workspace_path="a.png", media_type="image/png")]),
        _msg("assistant", "", tool_calls=[ToolCall(name="web_search", args={"q": "x"}, call_id="c1")]),
        _msg("tool", "42 results"),
        _msg("system", "Answer briefly."),
        _msg("user", "ok"),
    ])
    assert [m["role"] for m in converted] == ["system", "user", "assistant", "user", "user"]
    assert converted[0]["content"] == "You are Astrid.\n\nEarlier in this conversation: hello.\n\nAnswer briefly."
    assert converted[1]["content"].startswith("look at this\n")
    assert "web_search" in converted[2]["content"]
    assert converted[3]["content"] == "Tool result: 42 results"


@pytest.mark.subprocess
def test_importing_the_module_loads_nothing_heavy() -> None:
    code = (
        "import sys, persona_runtime.local_backend, persona_runtime.embedders\n"
        "heavy = [m for m in ('llama_cpp', 'torch', 'sentence_transformers', 'persona') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# -- slow: the real model --------------------------------------------------------------


@pytest.mark.slow
def test_streamed_turn_yields_deltas_then_one_final_chunk_with_usage(backend: LlamaCppBackend) -> None:
    async def run() -> list[StreamChunk]:
        return [c async for c in backend.chat_stream(QUESTION, max_tokens=32, temperature=0.0)]

    chunks = asyncio.run(run())
    deltas = [c.delta for c in chunks if c.delta]
    assert deltas
    assert [c.is_final for c in chunks].count(True) == 1
    final = chunks[-1]
    assert final.is_final and final.usage is not None
    assert final.usage.prompt_tokens > 0
    assert 0 < final.usage.completion_tokens <= 32
    assert final.usage.completion_tokens >= len(deltas)
    assert final.usage.total_tokens == final.usage.prompt_tokens + final.usage.completion_tokens
    assert all(c.usage is None for c in chunks[:-1])
    assert _workers() == []


@pytest.mark.slow
def test_chat_returns_a_chat_response_and_ignores_tools(backend: LlamaCppBackend) -> None:
    tool = ToolSpec(name="web_search", description="search the web", parameters={"type": "object"})
    response = asyncio.run(backend.chat(QUESTION, tools=[tool], max_tokens=32, temperature=0.0))
    assert isinstance(response, ChatResponse)
    assert response.content.strip()
    assert response.tool_calls == []
    assert response.provider == "gguf"
    assert response.model == "SmolLM2-135M-Instruct.Q4_1"
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens
    assert response.usage.completion_tokens > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "max_tokens"),
    [
        ("Hello! Who are you?", 60),  # ends on end-of-generation
        ("Write three emoji that describe summer, and say hi in Chinese and Japanese.", 60),  # multibyte, length
        ("What is the capital of France?", 4),  # length
    ],
)
def test_usage_matches_llama_cpp_own_count(backend: LlamaCppBackend, text: str, max_tokens: int) -> None:
    msgs = [_msg("system", "You are terse."), _msg("user", text)]
    ours = asyncio.run(backend.chat(msgs, max_tokens=max_tokens)).usage
    llm = backend._llm  # the loaded llama_cpp.Llama
    assert llm is not None
    theirs = llm.create_chat_completion(
        messages=to_llama_messages(msgs), max_tokens=max_tokens, temperature=0.0, repeat_penalty=DEFAULT_REPEAT_PENALTY
    )
    assert ours.prompt_tokens == theirs["usage"]["prompt_tokens"]  # type: ignore[index]
    assert ours.completion_tokens == theirs["usage"]["completion_tokens"]  # type: ignore[index]


@pytest.mark.slow
def test_closing_the_stream_early_stops_the_worker(backend: LlamaCppBackend) -> None:
    prompt_tokens = asyncio.run(backend.chat(LONG_ASK, max_tokens=1)).usage.prompt_tokens

    async def run() -> str:
        stream = backend.chat_stream(LONG_ASK, max_tokens=256, temperature=0.0)
        first = await anext(stream)  # type: ignore[call-overload]
        await stream.aclose()  # type: ignore[attr-defined]
        return first.delta

    assert asyncio.run(run())
    assert _workers() == []
    llm = backend._llm
    assert llm is not None
    # Tokens evaluated by llama.cpp: the prompt plus the few generated before the stop,
    # nowhere near the 256 it would have produced without cancellation.
    assert llm.n_tokens - prompt_tokens < 16
    # The model lock was released: the next call works.
    assert asyncio.run(backend.chat(QUESTION, max_tokens=8)).usage.completion_tokens > 0


@pytest.mark.slow
def test_cancelling_the_consuming_task_stops_the_worker(backend: LlamaCppBackend) -> None:
    async def run() -> bool:
        got_first = asyncio.Event()

        async def consume() -> None:
            async for chunk in backend.chat_stream(LONG_ASK, max_tokens=256, temperature=0.0):
                if chunk.delta:
                    got_first.set()

        task = asyncio.create_task(consume())
        await got_first.wait()
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(run()) is True
    assert _workers() == []
    assert asyncio.run(backend.chat(QUESTION, max_tokens=8)).usage.completion_tokens > 0


@pytest.mark.slow
def test_llama_errors_become_short_provider_errors() -> None:
    tiny = LlamaCppBackend(bundled_model_path(), context_window=64)
    too_long = [_msg("user", "word " * 200)]
    with pytest.raises(ProviderError) as info:
        asyncio.run(tiny.chat(too_long, max_tokens=8))
    assert "context window" in str(info.value)
    assert "Traceback" not in str(info.value)
    assert _workers() == []


@pytest.mark.slow
def test_a_corrupt_gguf_fails_on_use_with_a_provider_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\x00" * 64)
    b = LlamaCppBackend.shared(str(broken))
    with pytest.raises(ProviderError) as info:
        asyncio.run(b.chat(QUESTION, max_tokens=8))
    assert str(broken) in str(info.value)


# -- prefill: the system message read ahead of the first turn ----------------------------


@pytest.mark.slow
def test_prefill_reads_the_shared_start_once_and_the_next_request_reuses_it(
    backend: LlamaCppBackend, cached_prefixes: list[tuple[int, int]]
) -> None:
    system = _msg("system", "You are Tess, a patient tutor. " * 20)
    backend.prefill([])  # waits for the load
    assert backend._llm is not None
    backend._llm.reset()  # an empty cache, so every prefix token is read here
    read = backend.prefill([system])
    assert read > 100
    assert backend.prefill([system]) == 0  # already cached: left alone
    asyncio.run(backend.chat([system, *QUESTION], max_tokens=8))
    [(prompt, reused)] = cached_prefixes
    assert reused == read < prompt  # everything prefilled was reused; only the question was read
    assert _workers() == []


@pytest.mark.slow
def test_a_request_takes_the_model_over_from_a_running_prefill(
    backend: LlamaCppBackend, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # ~1,600 tokens: fits the context the model opens with (START_CONTEXT), so it is not reopened.
    long_system = _msg("system", "The tenant read every clause of the lease twice, then wrote to the landlord. " * 100)
    backend.prefill([])  # waits for the load
    llm = backend._llm
    assert llm is not None
    llm.reset()
    # Hold the prefill after its first chunk until the request below is waiting for the model,
    # so the hand-over happens mid-prefill on any machine (each wait bounded).
    first_chunk_read = threading.Event()
    real_eval = llm.eval

    def eval_then_hold(tokens: list[int]) -> None:
        real_eval(tokens)
        if not first_chunk_read.is_set():
            first_chunk_read.set()
            assert backend._request_waiting.wait(60), "the request never asked for the model"

    monkeypatch.setattr(llm, "eval", eval_then_hold)
    outcome: dict[str, int] = {}
    cache = PromptCache(tmp_path / "prompt")
    prefill = threading.Thread(target=lambda: outcome.update(read=backend.prefill([long_system], cache)), name="prefill-test")
    prefill.start()
    assert first_chunk_read.wait(60)
    reply = asyncio.run(backend.chat([long_system, *QUESTION], max_tokens=8))
    prefill.join(timeout=60)
    assert not prefill.is_alive()
    assert outcome["read"] == 64  # one chunk, then it yielded: not the ~1,600 tokens it was asked for
    tokens = shared_prefix_tokens(llm, backend._formatter, [long_system])
    assert len(tokens) > 1000
    assert reply.usage.completion_tokens > 0
    # The request read the rest of the prefix itself, so it was saved for the next launch.
    assert cache.load(model_identity(backend.model_path), tokens) is not None


class _PrefillRecorder(ScriptedBackend):
    """A scripted backend that records what it was asked to prefill."""

    def __init__(self, provider: str) -> None:
        super().__init__(["hi"], provider_name=provider)
        self.prefilled: list[list[Any]] = []

    def prefill(self, messages: list[ConversationMessage], cache: object = None) -> int:
        self.prefilled.append([m.content for m in messages])
        return 7


def test_prefill_local_models_reads_the_turns_system_message_into_each_local_model_once() -> None:
    from persona.schema.persona import Persona

    from persona_runtime.prefill import prefill_local_models
    from persona_runtime.prompt import PromptBuilder
    from persona_runtime.tier import TierConfig, TierRegistry

    persona = Persona.model_validate({"persona_id": "p", "identity": {"name": "P", "role": "r", "background": "b"}})
    local, remote = _PrefillRecorder("gguf"), _PrefillRecorder("openai")
    tiers = TierRegistry([
        TierConfig.from_backend("small", local), TierConfig.from_backend("mid", local),  # one model, two tiers
        TierConfig.from_backend("frontier", remote),
    ])
    assert prefill_local_models(persona, tiers) == 7
    assert local.prefilled == [[PromptBuilder().system_message(persona).content]]
    assert remote.prefilled == []  # a remote tier has its own prompt cache; nothing to read ahead


def test_what_is_prefilled_is_what_a_local_turn_starts_with() -> None:
    """prefill_local_models builds the system message on its own (the loop is not built yet when
    it runs); this pins it to what ConversationLoop actually sends a local tier."""
    from persona.schema.conversation import Conversation
    from persona.schema.persona import Persona

    from persona_runtime.loop import ConversationLoop
    from persona_runtime.prefill import prefill_local_models
    from persona_runtime.tier import TierConfig, TierRegistry

    persona = Persona.model_validate({
        "persona_id": "p", "identity": {"name": "P", "role": "r", "background": "b", "constraints": ["Be kind."]},
        "tools": ["calculator"],
    })
    local = _PrefillRecorder("gguf")
    tiers = TierRegistry([TierConfig.from_backend("mid", local)])
    prefill_local_models(persona, tiers)
    loop = ConversationLoop(persona=persona, tiers=tiers, toolbox=None)

    async def turn() -> None:
        async for _event in loop.turn(Conversation(conversation_id="c", persona_id="p"), "hello", tier="mid"):
            pass

    asyncio.run(turn())
    [[prefilled]] = local.prefilled
    assert local.calls[0].messages[0].role == "system"
    assert local.calls[0].messages[0].content == prefilled


@pytest.mark.slow
def test_the_context_opens_small_and_grows_when_a_request_needs_more() -> None:
    grown = LlamaCppBackend(bundled_model_path(), context_window=1024, start_context=256)
    grown.preload()
    grown.wait_loaded()
    assert grown.open_context == 256 and grown.context_window == 1024
    long_question = [_msg("user", "Tell me about the lease and the deposit. " * 30)]  # ~270 tokens > 256
    reply = asyncio.run(grown.chat(long_question, max_tokens=8))
    assert reply.usage.prompt_tokens > 256 and reply.usage.completion_tokens > 0
    assert grown.open_context == 512 and grown.reopened == 1  # doubled, not the whole 1024
    asyncio.run(grown.chat(QUESTION, max_tokens=8))
    assert grown.reopened == 1  # fits: no second reopen
    with pytest.raises(ProviderError, match="1024-token context window"):
        asyncio.run(grown.chat([_msg("user", "word " * 1100)], max_tokens=8))
    assert _workers() == []


@pytest.mark.slow
def test_a_reopened_context_carries_what_was_read_and_answers_as_a_large_one() -> None:
    carry = LlamaCppBackend(bundled_model_path(), context_window=1024, start_context=512)
    question = _msg("user", "What is a deposit on a rented flat?")
    longer = [_msg("system", "You answer questions about leases. " * 40), question]  # ~260 tokens
    asyncio.run(carry.chat([longer[0], _msg("user", "Hi")], max_tokens=4))  # reads the system part
    carried = asyncio.run(carry.chat(longer, max_tokens=300))  # ~560 tokens > 512: reopened
    assert carry.reopened == 1 and carry.open_context == 1024 and carry.carried > 250
    large = LlamaCppBackend(bundled_model_path(), context_window=1024, start_context=1024)
    assert asyncio.run(large.chat(longer, max_tokens=300)).content == carried.content  # greedy: the same
