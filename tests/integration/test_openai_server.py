"""persona-core's real OpenAI backend against the scripted server (127.0.0.1 only).

These tests pin down what each provider fault surfaces as through persona-core 1.2.1's
``OpenAICompatibleBackend`` (openai SDK underneath, retries disabled as the runtime does).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from typing import Any

import pytest
from persona.backends import (
    AuthenticationError,
    BackendConfig,
    BackendTimeoutError,
    ProviderError,
    RateLimitError,
    StreamChunk,
    ToolSpec,
    load_backend,
)
from persona.backends.errors import ModelNotFoundError, ModelUnavailableError
from persona.schema.conversation import ConversationMessage

from tests.support.openai_server import (
    CutStream,
    EmptyCompletion,
    MalformedSSE,
    ScriptedOpenAIServer,
    SlowFirstByte,
    Status,
    Text,
    ToolCall,
    ToolCalls,
)

MESSAGES = [ConversationMessage(role="user", content="what is the tide doing", created_at=datetime.now(UTC))]
SEARCH = ToolSpec(
    name="web_search", description="Search the web.",
    parameters={"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
)


def make_backend(srv: ScriptedOpenAIServer, *, model: str = "gpt-4o-mini", timeout: float = 5) -> Any:
    backend = load_backend(BackendConfig(
        provider="openai", model=model, api_key="sk-test-123", base_url=srv.base_url, request_timeout_s=timeout,
    ))
    backend._openai = backend._openai.with_options(max_retries=0)  # the SDK would retry 429/5xx twice
    return backend


def stream(backend: Any, **kwargs: Any) -> list[StreamChunk]:
    async def run() -> list[StreamChunk]:
        return [chunk async for chunk in backend.chat_stream(MESSAGES, **kwargs)]

    return asyncio.run(run())


def stream_error(backend: Any) -> tuple[list[StreamChunk], BaseException]:
    """Consume a stream that must fail; returns what arrived before the failure and the error."""
    seen: list[StreamChunk] = []

    async def run() -> None:
        async for chunk in backend.chat_stream(MESSAGES):
            seen.append(chunk)

    with pytest.raises(Exception) as info:  # noqa: PT011 — each test asserts the exact class
        asyncio.run(run())
    return seen, info.value


# --------------------------------------------------------------------------- happy paths


def test_streamed_text_arrives_in_pieces_with_usage_on_the_final_chunk(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Text("the quick brown fox", usage=(11, 4)))
    chunks = stream(make_backend(srv))
    assert [c.delta for c in chunks if c.delta] == ["the ", "quick ", "brown ", "fox"]
    final = chunks[-1]
    assert final.is_final and final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens, final.usage.total_tokens) == (11, 4, 15)
    (request,) = srv.requests
    assert request.authorization == "Bearer sk-test-123"
    assert request.model == "gpt-4o-mini" and request.stream
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"] == [{"role": "user", "content": "what is the tide doing"}]


def test_chunk_size_and_default_usage(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Text("abcdefg", chunk_size=3))
    chunks = stream(make_backend(srv))
    assert [c.delta for c in chunks if c.delta] == ["abc", "def", "g"]
    assert chunks[-1].usage is not None
    # default: prompt = words in the request's messages, completion = content chunks sent
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (5, 3)


def test_native_tool_call_round_trip(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(ToolCall("web_search", {"query": "tides in Bergen today"}, call_id="call_abc", text="Let me look."))
    backend = make_backend(srv)
    assert backend.supports_native_tools
    chunks = stream(backend, tools=[SEARCH])
    pieces = [c.tool_call_delta for c in chunks if c.tool_call_delta is not None]
    assert len(pieces) > 2  # id+name first, then the arguments in several pieces
    assert {p.call_id for p in pieces} == {"call_abc"}
    name = "".join(p.name_delta for p in pieces)
    args = json.loads("".join(p.arguments_delta for p in pieces))
    assert (name, args) == ("web_search", {"query": "tides in Bergen today"})
    assert "".join(c.delta for c in chunks) == "Let me look."
    assert chunks[-1].is_final
    assert srv.requests[0].body["tools"][0]["function"]["name"] == "web_search"


def test_parallel_tool_calls_keep_their_ids(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(ToolCalls((ToolCall("web_search", {"query": "a"}, call_id="c1"),
                           ToolCall("web_search", {"query": "b"}, call_id="c2"))))
    chunks = stream(make_backend(srv), tools=[SEARCH])
    args: dict[str, str] = {}
    for c in chunks:
        if c.tool_call_delta is not None:
            args[c.tool_call_delta.call_id] = args.get(c.tool_call_delta.call_id, "") + c.tool_call_delta.arguments_delta
    assert {k: json.loads(v) for k, v in args.items()} == {"c1": {"query": "a"}, "c2": {"query": "b"}}


def test_non_streaming_chat(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Text("plain answer", usage=(3, 2)))
    srv.enqueue(ToolCall("web_search", {"query": "x"}, call_id="call_9"))
    srv.enqueue(ToolCall("web_search", '{"query": "unterminated', call_id="call_10"))
    backend = make_backend(srv)
    reply = asyncio.run(backend.chat(MESSAGES))
    assert reply.content == "plain answer" and reply.usage.total_tokens == 5
    assert (reply.model, reply.provider) == ("gpt-4o-mini", "openai")
    tool_reply = asyncio.run(backend.chat(MESSAGES, tools=[SEARCH]))
    (call,) = tool_reply.tool_calls
    assert (call.name, call.args, call.call_id, call.truncated) == ("web_search", {"query": "x"}, "call_9", False)
    bad = asyncio.run(backend.chat(MESSAGES, tools=[SEARCH])).tool_calls[0]
    assert (bad.args, bad.truncated) == ({}, True)
    assert [r.stream for r in srv.requests] == [False, False, False]


def test_per_model_queues(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Text("from the big model"), model="gpt-4o")
    srv.enqueue(Text("shared"))
    small = asyncio.run(make_backend(srv).chat(MESSAGES))
    big = asyncio.run(make_backend(srv, model="gpt-4o").chat(MESSAGES))
    assert (small.content, big.content) == ("shared", "from the big model")
    with urllib.request.urlopen(f"{srv.base_url}/models", timeout=5) as response:  # noqa: S310 — loopback
        listed = {m["id"] for m in json.load(response)["data"]}
    assert listed == {"gpt-4o", "gpt-4o-mini"}


def test_a_reply_with_when_answers_only_the_request_it_accepts(srv: ScriptedOpenAIServer) -> None:
    """A late request (e.g. from a turn the client abandoned) must not take the reply meant for
    the next one: it gets the loud 500, and the matching request still gets its reply."""
    srv.enqueue(Text("for the second question"), when=lambda body: "second" in body["messages"][-1]["content"])
    late = [ConversationMessage(role="user", content="first question, sent late", created_at=datetime.now(UTC))]
    with pytest.raises(ProviderError, match="no scripted reply"):
        asyncio.run(make_backend(srv).chat(late))
    second = [ConversationMessage(role="user", content="second question", created_at=datetime.now(UTC))]
    assert asyncio.run(make_backend(srv).chat(second)).content == "for the second question"
    found = srv.wait_for_request("gpt-4o-mini", when=lambda body: "second" in body["messages"][-1]["content"])
    assert found is srv.requests[1] and len(srv.unscripted) == 1


def test_an_unscripted_call_fails_loudly(srv: ScriptedOpenAIServer) -> None:
    with pytest.raises(ProviderError, match="no scripted reply") as info:
        asyncio.run(make_backend(srv).chat(MESSAGES))
    assert info.value.context["status_code"] == "500"
    assert len(srv.unscripted) == 1


# --------------------------------------------------------------------------- faults


def test_429_maps_to_rate_limit_with_retry_after(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Status(429, retry_after=2))
    srv.enqueue(Status(429, retry_after=2))
    _, error = stream_error(make_backend(srv))
    assert type(error) is RateLimitError
    assert error.context["retry_after_s"] == "2"
    with pytest.raises(RateLimitError) as info:
        asyncio.run(make_backend(srv).chat(MESSAGES))
    assert info.value.context["retry_after_s"] == "2"


def test_401_maps_to_authentication_error(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Status(401))
    _, error = stream_error(make_backend(srv))
    assert type(error) is AuthenticationError


@pytest.mark.parametrize("code", [500, 503])
def test_5xx_maps_to_provider_error(srv: ScriptedOpenAIServer, code: int) -> None:
    srv.enqueue(Status(code))
    _, error = stream_error(make_backend(srv))
    assert type(error) is ProviderError
    assert error.context["status_code"] == str(code)


def test_slow_first_byte_beyond_the_timeout_is_a_backend_timeout(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(SlowFirstByte(3))
    started = time.monotonic()
    _, error = stream_error(make_backend(srv, timeout=1))
    assert type(error) is BackendTimeoutError
    assert time.monotonic() - started < 2.9  # bounded by the 1 s timeout, not the 3 s delay


def test_slow_first_byte_within_the_timeout_succeeds(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(SlowFirstByte(0.2, then=Text("late but fine")))
    assert "".join(c.delta for c in stream(make_backend(srv))) == "late but fine"


def test_a_stall_mid_stream_is_a_plain_provider_error_not_a_timeout(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(Text("first second", delay_s=3))
    seen, error = stream_error(make_backend(srv, timeout=1))
    # httpx's ReadTimeout while iterating the body is not wrapped by the SDK, so it is NOT a
    # BackendTimeoutError: persona-core's catch-all makes it a ProviderError(underlying=ReadTimeout).
    assert [c.delta for c in seen] == ["first "]
    assert type(error) is ProviderError
    assert error.context["underlying"] == "ReadTimeout"


def test_cut_stream(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(CutStream(after_chunks=2, text="one two three four"))
    seen, error = stream_error(make_backend(srv))
    # The chunks before the cut arrive; the dropped connection is an httpx RemoteProtocolError
    # ("incomplete chunked read") which the openai SDK does not wrap mid-stream, so persona-core's
    # catch-all turns it into a plain ProviderError.
    assert [c.delta for c in seen] == ["one ", "two "]
    assert type(error) is ProviderError
    assert error.context["underlying"] == "RemoteProtocolError"


def test_malformed_sse(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(MalformedSSE(text="ok"))
    seen, error = stream_error(make_backend(srv))
    # The SDK json-decodes each event; the JSONDecodeError becomes a plain ProviderError.
    assert [c.delta for c in seen] == ["ok"]
    assert type(error) is ProviderError
    assert error.context["underlying"] == "JSONDecodeError"


def test_empty_completion_is_just_a_final_chunk(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(EmptyCompletion())
    chunks = stream(make_backend(srv))
    # persona-core's OpenAI stream raises nothing for an empty completion: one final chunk.
    assert len(chunks) == 1 and chunks[0].is_final and chunks[0].delta == ""
    assert chunks[0].usage is not None and chunks[0].usage.completion_tokens == 0


@pytest.mark.parametrize(("reply", "expected", "underlying"), [
    (Status(403), ModelUnavailableError, None),
    (Status(404), ModelNotFoundError, None),
    # Without a stream the truncated body fails inside the SDK, which wraps it as APIConnectionError.
    (CutStream(), BackendTimeoutError, None),
    (MalformedSSE(), ProviderError, "JSONDecodeError"),
])
def test_non_streaming_faults(srv: ScriptedOpenAIServer, reply: Any, expected: type, underlying: str | None) -> None:
    srv.enqueue(reply)
    with pytest.raises(ProviderError) as info:
        asyncio.run(make_backend(srv).chat(MESSAGES))
    assert type(info.value) is expected
    assert info.value.context.get("underlying") == underlying


def test_non_streaming_empty_completion_is_an_empty_reply(srv: ScriptedOpenAIServer) -> None:
    srv.enqueue(EmptyCompletion())
    reply = asyncio.run(make_backend(srv).chat(MESSAGES))
    assert (reply.content, reply.tool_calls, reply.usage.completion_tokens) == ("", [], 0)


# --------------------------------------------------------------------------- the server itself


def test_close_cuts_a_slow_reply_short() -> None:
    srv = ScriptedOpenAIServer()
    srv.enqueue(SlowFirstByte(60))
    errors: list[BaseException] = []

    def call() -> None:
        request = urllib.request.Request(
            f"{srv.base_url}/chat/completions", data=b'{"model": "m", "messages": []}', method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=30)  # noqa: S310 — loopback
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert srv.wait_for_requests(1)
    started = time.monotonic()
    srv.close()
    caller.join(timeout=5)
    assert time.monotonic() - started < 3
    assert not caller.is_alive() and errors  # the client saw the connection drop
    srv.close()  # idempotent


def test_unknown_route_is_404(srv: ScriptedOpenAIServer) -> None:
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{srv.base_url}/embeddings", timeout=5)  # noqa: S310 — loopback
    assert info.value.code == 404
    info.value.close()
