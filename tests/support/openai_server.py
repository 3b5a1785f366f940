"""A scripted OpenAI-compatible HTTP server for tests (stdlib only, 127.0.0.1, ephemeral port).

    with ScriptedOpenAIServer() as srv:
        srv.enqueue(Text("hello world"))
        srv.enqueue(Status(429, retry_after=2), model="gpt-4o-mini")
        backend = load_backend(BackendConfig(provider="openai", base_url=srv.base_url, ...))
        ...
        assert srv.requests[0].authorization == "Bearer sk-test-123"

``POST /v1/chat/completions`` pops the next scripted reply: first from the queue of the
request's model (``enqueue(reply, model=...)``), else from the shared queue; a reply queued
with ``when=`` only answers a request whose body the predicate accepts (so a stale request
that arrives late, from a turn the client already abandoned, cannot take the next turn's reply).
With nothing queued it answers 500 ``no scripted reply`` so an unexpected call fails loudly.
Both ``stream: true`` (SSE, chunked transfer encoding, a usage chunk when
``stream_options.include_usage``, then ``data: [DONE]``) and ``stream: false`` are served.
Every delay waits on an Event, so :meth:`ScriptedOpenAIServer.close` cuts it short.

Two server-wide switches play the servers that do not honour ``stream_options``:
``stream_usage=False`` never sends usage in a stream, asked or not (llama-cpp-python's server);
``reject_stream_options=True`` answers a request that carries ``stream_options`` with a 400
naming it (recorded in :attr:`requests` and :attr:`rejected`; no scripted reply is taken).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "BodyPredicate",
    "CutStream",
    "EmptyCompletion",
    "MalformedSSE",
    "RecordedRequest",
    "ScriptedOpenAIServer",
    "ScriptedReply",
    "SlowFirstByte",
    "Status",
    "Text",
    "ToolCall",
    "ToolCalls",
]


# --------------------------------------------------------------------------- replies


@dataclass(frozen=True)
class Text:
    """Assistant text. Streamed in word-ish pieces, or ``chunk_size``-character pieces."""

    text: str
    chunk_size: int | None = None
    delay_s: float = 0.0  # between chunks (streaming only)
    usage: tuple[int, int] | None = None  # (prompt, completion); default computed


@dataclass(frozen=True)
class ToolCall:
    """One native tool call, optionally preceded by ``text``.

    Streamed as ``tool_calls`` deltas: id + name first, then the arguments in pieces of
    ``args_chunk_size`` characters; ``finish_reason`` is ``"tool_calls"``. A ``str``
    ``arguments`` is sent verbatim (so a test can send invalid JSON).
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    call_id: str = "call_1"
    text: str = ""
    args_chunk_size: int = 8
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class ToolCalls:
    """Several tool calls in one assistant message (parallel tool calling)."""

    calls: tuple[ToolCall, ...]
    text: str = ""
    usage: tuple[int, int] | None = None


@dataclass(frozen=True)
class Status:
    """An HTTP error status with an OpenAI-shaped error body (or ``body`` verbatim)."""

    code: int
    retry_after: float | str | None = None
    body: str | dict[str, Any] | None = None


@dataclass(frozen=True)
class SlowFirstByte:
    """Wait ``seconds`` before sending anything, then answer with ``then``."""

    seconds: float
    then: ScriptedReply | None = None  # default Text("ok")


@dataclass(frozen=True)
class CutStream:
    """Send ``after_chunks`` content chunks, then drop the connection (no [DONE], no final chunk)."""

    after_chunks: int = 1
    text: str = "this stream will be cut short before it ends"


@dataclass(frozen=True)
class MalformedSSE:
    """One valid content chunk, then ``data: {not json``. Non-streaming: a non-JSON body."""

    text: str = "ok"


@dataclass(frozen=True)
class EmptyCompletion:
    """No content, no tool calls, ``finish_reason`` "stop", zero completion tokens."""


ScriptedReply = Text | ToolCall | ToolCalls | Status | SlowFirstByte | CutStream | MalformedSSE | EmptyCompletion


BodyPredicate = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True, eq=False)  # identity equality: deque.remove must drop this very entry
class _Queued:
    reply: ScriptedReply
    when: BodyPredicate | None


@dataclass(frozen=True)
class RecordedRequest:
    """One received ``POST /v1/chat/completions``."""

    path: str
    body: dict[str, Any]
    headers: dict[str, str]  # lower-cased names

    @property
    def authorization(self) -> str | None:
        return self.headers.get("authorization")

    @property
    def model(self) -> str | None:
        return self.body.get("model")

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


# --------------------------------------------------------------------------- rendering helpers


def _pieces(text: str, chunk_size: int | None) -> list[str]:
    if not text:
        return []
    if chunk_size:
        return [text[i : i + chunk_size] for i in range(0, len(text), chunk_size)]
    return re.findall(r"\s*\S+\s*", text) or [text]


def _args_json(call: ToolCall) -> str:
    return call.arguments if isinstance(call.arguments, str) else json.dumps(call.arguments)


def _prompt_words(body: dict[str, Any]) -> int:
    count = 0
    for message in body.get("messages") or []:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            count += len(content.split())
        elif isinstance(content, list):
            count += sum(len(str(part.get("text", "")).split()) for part in content if isinstance(part, dict))
    return count


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class _Closed(Exception):
    """The server is closing: abandon the response."""


# --------------------------------------------------------------------------- server


class ScriptedOpenAIServer:
    """A context-managed scripted OpenAI-compatible server on ``127.0.0.1:<ephemeral>``."""

    def __init__(self, *, stream_usage: bool = True, reject_stream_options: bool = False) -> None:
        self.stream_usage = stream_usage
        self.reject_stream_options = reject_stream_options
        #: Requests answered 400 because they carried ``stream_options``.
        self.rejected: list[RecordedRequest] = []
        self._lock = threading.Condition()
        self._shared: deque[_Queued] = deque()
        self._by_model: dict[str, deque[_Queued]] = {}
        self._models_seen: list[str] = []
        self._closing = threading.Event()
        self.requests: list[RecordedRequest] = []
        self.unscripted: list[RecordedRequest] = []  # calls that found the queue empty
        #: (prompt, completion) tokens of every usage report sent, streamed or not, in order.
        self.usage_sent: list[tuple[int, int]] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
            name="scripted-openai-server", daemon=True,
        )
        self._thread.start()

    # -- public API

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def enqueue(self, reply: ScriptedReply, *, model: str | None = None, when: BodyPredicate | None = None) -> None:
        """Queue the next reply (FIFO), for any model or only for ``model``; with ``when``, only
        for a request whose JSON body it accepts (the first matching reply in the queue is taken)."""
        queued = _Queued(reply, when)
        with self._lock:
            if model is None:
                self._shared.append(queued)
            else:
                self._by_model.setdefault(model, deque()).append(queued)
                self._see(model)

    def pending(self, model: str | None = None) -> int:
        """How many replies are still queued (shared queue, or ``model``'s own queue)."""
        with self._lock:
            return len(self._shared) if model is None else len(self._by_model.get(model, ()))

    def wait_for_requests(self, n: int = 1, timeout: float = 5.0) -> bool:
        """Block until ``n`` chat requests have arrived (True) or ``timeout`` passes (False)."""
        with self._lock:
            return self._lock.wait_for(lambda: len(self.requests) >= n, timeout)

    def wait_for_request(self, model: str, *, after: int = 0, timeout: float = 5.0,
                         when: BodyPredicate | None = None) -> RecordedRequest | None:
        """Block until a request for ``model`` (whose body ``when`` accepts, if given) arrives at
        index >= ``after`` of :attr:`requests`."""

        def found() -> RecordedRequest | None:
            return next((r for r in self.requests[after:]
                         if r.model == model and (when is None or when(r.body))), None)

        with self._lock:
            if self._lock.wait_for(lambda: found() is not None, timeout):
                return found()
            return None

    def clear(self) -> None:
        """Drop every queued reply (e.g. the rest of a script an interrupted turn never asked for)."""
        with self._lock:
            self._shared.clear()
            for queue in self._by_model.values():
                queue.clear()

    def close(self) -> None:
        """Stop serving; replies that are mid-delay are abandoned at once."""
        if self._closing.is_set():
            return
        self._closing.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> ScriptedOpenAIServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- used by the handler

    def _see(self, model: str) -> None:
        if model not in self._models_seen:
            self._models_seen.append(model)

    def _reject(self, request: RecordedRequest) -> bool:
        """Record ``request``; True when it must be rejected for carrying ``stream_options``."""
        if not (self.reject_stream_options and "stream_options" in request.body):
            return False
        with self._lock:
            self.requests.append(request)
            self.rejected.append(request)
            self._lock.notify_all()
        return True

    def _take(self, request: RecordedRequest) -> ScriptedReply | None:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            model = request.model or ""
            if model:
                self._see(model)
            for queue in (self._by_model.get(model), self._shared):
                for queued in queue or ():
                    if queued.when is None or queued.when(request.body):
                        queue.remove(queued)
                        return queued.reply
            self.unscripted.append(request)
            return None

    def _sent_usage(self, prompt: int, completion: int) -> None:
        with self._lock:
            self.usage_sent.append((prompt, completion))

    def _wait(self, seconds: float) -> None:
        if seconds > 0 and self._closing.wait(seconds):
            raise _Closed


def _make_handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(_Handler):
        srv = server

    return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    srv: ScriptedOpenAIServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — stdlib signature
        pass

    # -- routing

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            with self.srv._lock:
                models = list(self.srv._models_seen)
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in models]
            self._json(200, {"object": "list", "data": data})
        else:
            self._json(404, _error_body(f"no route GET {self.path}", "not_found"))

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._json(404, _error_body(f"no route POST {self.path}", "not_found"))
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            self._json(400, _error_body("request body is not JSON", "invalid_request_error"))
            return
        request = RecordedRequest(self.path, body, {k.lower(): v for k, v in self.headers.items()})
        if self.srv._reject(request):
            # The shape a strict server (extra fields forbidden) gives an unknown field.
            message = "Unrecognized request argument supplied: stream_options"
            self._json(400, {"error": {"message": message, "type": "invalid_request_error",
                                       "param": "stream_options", "code": None}})
            return
        reply = self.srv._take(request)
        try:
            self._reply(reply, body)
        except (_Closed, OSError):
            self.close_connection = True

    # -- replies

    def _reply(self, reply: ScriptedReply | None, body: dict[str, Any]) -> None:
        if reply is None:
            msg = f"no scripted reply for POST {self.path} (model={body.get('model')!r}); enqueue one"
            self._json(500, _error_body(msg, "server_error"))
            return
        if isinstance(reply, SlowFirstByte):
            self.srv._wait(reply.seconds)
            self._reply(reply.then or Text("ok"), body)
            return
        if isinstance(reply, Status):
            self._status(reply)
            return
        if body.get("stream"):
            self._stream(reply, body)
        else:
            self._complete(reply, body)

    def _status(self, reply: Status) -> None:
        extra: dict[str, str] = {}
        if reply.retry_after is not None:
            value = reply.retry_after
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            extra["Retry-After"] = str(value)
        if isinstance(reply.body, str):
            self._send(reply.code, reply.body.encode(), "text/plain; charset=utf-8", extra)
            return
        payload = reply.body if reply.body is not None else _error_body(
            f"scripted HTTP {reply.code}", _ERROR_TYPES.get(reply.code, "server_error")
        )
        self._send(reply.code, json.dumps(payload).encode(), "application/json", extra)

    def _complete(self, reply: ScriptedReply, body: dict[str, Any]) -> None:
        if isinstance(reply, MalformedSSE):
            self._send(200, b"{not json", "application/json")
            return
        if isinstance(reply, CutStream):
            # Promise more bytes than are sent, then drop the connection.
            partial = json.dumps(self._completion(Text(reply.text), body)).encode()
            self._send_headers(200, "application/json", {"Content-Length": str(len(partial))})
            self.wfile.write(partial[: len(partial) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self._json(200, self._completion(reply, body))

    def _completion(self, reply: ScriptedReply, body: dict[str, Any]) -> dict[str, Any]:
        text, calls, usage = _content_of(reply)
        message: dict[str, Any] = {"role": "assistant", "content": text if (text or not calls) else None}
        if calls:
            message["tool_calls"] = [
                {"id": c.call_id, "type": "function", "function": {"name": c.name, "arguments": _args_json(c)}}
                for c in calls
            ]
        completion = len(_pieces(text, None)) + len(calls)
        prompt, completion = usage or (_prompt_words(body), completion)
        self.srv._sent_usage(prompt, completion)
        return {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{
                "index": 0, "message": message, "logprobs": None,
                "finish_reason": "tool_calls" if calls else "stop",
            }],
            "usage": _usage(prompt, completion),
        }

    def _stream(self, reply: ScriptedReply, body: dict[str, Any]) -> None:
        model = str(body.get("model", "scripted"))
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }

        self._send_headers(200, "text/event-stream", {"Transfer-Encoding": "chunked", "Cache-Control": "no-cache"})
        self._event(chunk({"role": "assistant", "content": ""}))

        if isinstance(reply, CutStream):
            for piece in _pieces(reply.text, None)[: reply.after_chunks]:
                self._event(chunk({"content": piece}))
            self.close_connection = True  # no terminating zero-length chunk: the body is incomplete
            return
        if isinstance(reply, MalformedSSE):
            self._event(chunk({"content": reply.text}))
            self._chunk(b"data: {not json\n\n")
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")
            return

        text, calls, usage = _content_of(reply)
        delay = reply.delay_s if isinstance(reply, Text) else 0.0
        pieces = _pieces(text, reply.chunk_size if isinstance(reply, Text) else None)
        for i, piece in enumerate(pieces):
            if i and delay:
                self.srv._wait(delay)
            self._event(chunk({"content": piece}))
        sent = len(pieces)
        for index, call in enumerate(calls):
            head = {"index": index, "id": call.call_id, "type": "function",
                    "function": {"name": call.name, "arguments": ""}}
            self._event(chunk({"tool_calls": [head]}))
            size = max(1, call.args_chunk_size)
            args = _args_json(call)
            for start in range(0, len(args), size):
                part = {"index": index, "function": {"arguments": args[start : start + size]}}
                self._event(chunk({"tool_calls": [part]}))
            sent += 1
        self._event(chunk({}, "tool_calls" if calls else "stop"))
        if self.srv.stream_usage and (body.get("stream_options") or {}).get("include_usage"):
            prompt, completion = usage or (_prompt_words(body), sent)
            self.srv._sent_usage(prompt, completion)
            self._event({
                "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": created,
                "model": model, "choices": [], "usage": _usage(prompt, completion),
            })
        self._chunk(b"data: [DONE]\n\n")
        self._chunk(b"")

    # -- low-level writing

    def _send_headers(self, code: int, content_type: str, extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Connection", "close")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True

    def _send(self, code: int, data: bytes, content_type: str, extra: dict[str, str] | None = None) -> None:
        self._send_headers(code, content_type, {"Content-Length": str(len(data)), **(extra or {})})
        self.wfile.write(data)
        self.wfile.flush()

    def _json(self, code: int, payload: dict[str, Any]) -> None:
        self._send(code, json.dumps(payload).encode(), "application/json")

    def _chunk(self, data: bytes) -> None:
        """One HTTP/1.1 chunk; ``b""`` is the terminating chunk."""
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _event(self, payload: dict[str, Any]) -> None:
        self._chunk(b"data: " + json.dumps(payload).encode() + b"\n\n")


_ERROR_TYPES = {
    400: "invalid_request_error", 401: "invalid_api_key", 403: "permission_denied",
    404: "not_found", 429: "rate_limit_exceeded",
}


def _error_body(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def _content_of(reply: ScriptedReply) -> tuple[str, tuple[ToolCall, ...], tuple[int, int] | None]:
    if isinstance(reply, Text):
        return reply.text, (), reply.usage
    if isinstance(reply, ToolCall):
        return reply.text, (reply,), reply.usage
    if isinstance(reply, ToolCalls):
        return reply.text, reply.calls, reply.usage
    if isinstance(reply, EmptyCompletion):
        return "", (), None
    raise TypeError(f"not a content reply: {reply!r}")
