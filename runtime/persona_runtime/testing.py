"""Test your persona without a model: a scripted persona-core ``ChatBackend``.

:class:`ScriptedBackend` plays back a script of steps, one per backend call, and records
every call it receives. It satisfies persona-core's :class:`persona.backends.ChatBackend`
protocol, so it can stand in for any real backend (for instance through
``TierConfig.from_backend("mid", backend)``)::

    import asyncio
    from persona_runtime.testing import Raise, Reply, ScriptedBackend, ScriptedToolCall

    backend = ScriptedBackend([
        Reply(tool_calls=[ScriptedToolCall("web_search", {"query": "tides"})]),
        Reply("High tide is at 14:05."),
    ])

    async def main() -> None:
        first = await backend.chat(messages)                       # step 1: a tool call
        assert first.tool_calls[0].args == {"query": "tides"}
        text = ""
        async for chunk in backend.chat_stream(messages):         # step 2: streamed text
            text += chunk.delta
        assert text == "High tide is at 14:05."
        assert backend.call_count == 2
        assert backend.calls[1].method == "chat_stream"

    asyncio.run(main())

Rules worth knowing:

* ``chat()`` and ``chat_stream()`` consume steps from **one shared queue, in call order**.
  ``chat_stream()`` takes its step when it is *called* (it is a plain ``def`` that returns
  an async iterator); errors it scripts surface while iterating, as with real backends.
* A plain ``str`` in the script is shorthand for ``Reply(text=...)``.
* :class:`Reply` streams its text as deltas (``deltas`` if given, otherwise word-ish
  pieces), then one chunk per tool call carrying a complete ``ToolCallDelta``, then a final
  chunk (``is_final=True``) with ``TokenUsage``. Default usage: prompt = words in all
  messages, completion = number of deltas plus tool calls.
* :class:`Raise` raises its error when the call is made (``chat``) or after yielding
  ``after_deltas`` (``chat_stream``: simulates a stream cut mid-way).
* :class:`Hang` yields ``after_deltas`` and then waits until the consuming task is
  cancelled; ``event`` (a ``threading.Event`` or ``asyncio.Event``) is set once it is
  waiting, so a test can cancel at exactly that point without sleeping.
* When the script runs out, ``default`` is reused if given; otherwise the call fails with
  ``AssertionError("ScriptedBackend script exhausted after N calls")``.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from persona.backends.types import ChatResponse, StreamChunk, TokenUsage, ToolCallDelta, ToolSpec
from persona.schema.tools import ToolCall

__all__ = [
    "Hang", "Raise", "RecordedCall", "Reply", "ScriptedBackend", "ScriptedToolCall", "Step", "split_words",
]


@dataclass(frozen=True)
class ScriptedToolCall:
    """A tool call the scripted model makes.

    ``raw_arguments`` (if set) is sent verbatim instead of ``json.dumps(args)``, so a test
    can send invalid JSON; ``chat()`` then returns it with ``args={}`` and ``truncated=True``.
    ``call_id`` defaults to ``call_<n>``, unique per backend.
    """

    name: str
    args: Mapping[str, Any] | None = None
    raw_arguments: str | None = None
    call_id: str | None = None

    @property
    def arguments_json(self) -> str:
        if self.raw_arguments is not None:
            return self.raw_arguments
        return json.dumps(dict(self.args or {}))


@dataclass(frozen=True)
class Reply:
    """A normal model reply: text and/or tool calls."""

    text: str = ""
    tool_calls: Sequence[ScriptedToolCall] = ()
    deltas: Sequence[str] | None = None  # explicit stream pieces; their join is the text
    usage: tuple[int, int] | None = None  # (prompt_tokens, completion_tokens)
    #: False: the final chunk carries no usage at all, as from a server that sends none.
    usage_reported: bool = True
    reasoning: str | None = None  # streamed on a chunk of its own before the text

    def __post_init__(self) -> None:
        object.__setattr__(self, "tool_calls", tuple(self.tool_calls))
        if self.deltas is not None:
            object.__setattr__(self, "deltas", tuple(self.deltas))
            joined = "".join(self.deltas)
            if not self.text:
                object.__setattr__(self, "text", joined)
            elif joined != self.text:
                raise ValueError(f"Reply deltas join to {joined!r}, not the text {self.text!r}")


@dataclass(frozen=True)
class Raise:
    """Raise ``error`` on this call; a stream first yields ``after_deltas``."""

    error: BaseException
    after_deltas: Sequence[str] = ()


@dataclass(frozen=True)
class Hang:
    """Yield ``after_deltas``, set ``event``, then wait until cancelled."""

    event: threading.Event | asyncio.Event | None = None
    after_deltas: Sequence[str] = ()


Step = Reply | Raise | Hang | str


@dataclass(frozen=True)
class RecordedCall:
    """One call the backend received."""

    method: Literal["chat", "chat_stream"]
    messages: list[Any]
    tools: list[ToolSpec] | None
    temperature: float
    max_tokens: int
    stop: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # top_p, top_k, anything else

    @property
    def tool_names(self) -> list[str]:
        return [t.name for t in self.tools or ()]


def split_words(text: str) -> list[str]:
    """Split text into word-ish stream pieces whose concatenation is ``text``."""
    if not text:
        return []
    return re.findall(r"\s*\S+\s*", text) or [text]


def _word_count(messages: Iterable[Any]) -> int:
    total = 0
    for message in messages:
        content = getattr(message, "content", message)
        if isinstance(content, str):
            total += len(content.split())
        elif isinstance(content, list):
            total += sum(len(str(getattr(b, "text", "") or "").split()) for b in content)
    return total


class ScriptedBackend:
    """A persona-core ``ChatBackend`` that plays back a script. See the module docstring."""

    def __init__(
        self,
        script: Iterable[Step] = (),
        *,
        provider_name: str = "scripted",
        model_name: str = "scripted-model",
        supports_native_tools: bool = True,
        supports_vision: bool = False,
        default: Step | None = None,
    ) -> None:
        self._script: deque[Step] = deque(script)
        self._lock = threading.Lock()
        self._provider_name = provider_name
        self._model_name = model_name
        self._supports_native_tools = supports_native_tools
        self._supports_vision = supports_vision
        self.default = default
        self.calls: list[RecordedCall] = []
        self._consumed = 0
        self._call_seq = 0

    # -- ChatBackend properties

    @property
    def provider_name(self) -> str:
        return self._provider_name

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def supports_native_tools(self) -> bool:
        return self._supports_native_tools

    @property
    def supports_vision(self) -> bool:
        return self._supports_vision

    # -- script management and recording

    def push(self, *steps: Step) -> None:
        """Append steps to the end of the script."""
        with self._lock:
            self._script.extend(steps)

    @property
    def remaining(self) -> int:
        """Steps not yet consumed (``default`` not counted)."""
        return len(self._script)

    @property
    def call_count(self) -> int:
        return len(self.calls)

    @property
    def last_messages(self) -> list[Any]:
        """The messages of the most recent call (``[]`` before any call)."""
        return self.calls[-1].messages if self.calls else []

    def _next(self, call: RecordedCall) -> Reply | Raise | Hang:
        with self._lock:
            self.calls.append(call)
            if self._script:
                step = self._script.popleft()
                self._consumed += 1
            elif self.default is not None:
                step = self.default
            else:
                raise AssertionError(
                    f"ScriptedBackend script exhausted after {self._consumed} calls "
                    f"(call #{len(self.calls)} was {call.method}); push() more steps or pass default="
                )
        return Reply(text=step) if isinstance(step, str) else step

    def _record(self, method: Literal["chat", "chat_stream"], messages: Sequence[Any],
                tools: Sequence[ToolSpec] | None, temperature: float, max_tokens: int,
                stop: list[str] | None, extra: dict[str, Any]) -> RecordedCall:
        return RecordedCall(
            method=method, messages=list(messages), tools=None if tools is None else list(tools),
            temperature=temperature, max_tokens=max_tokens, stop=stop, extra=extra,
        )

    def _call_id(self, call: ScriptedToolCall) -> str:
        if call.call_id is not None:
            return call.call_id
        with self._lock:
            self._call_seq += 1
            return f"call_{self._call_seq}"

    @staticmethod
    def _deltas(reply: Reply) -> list[str]:
        return list(reply.deltas) if reply.deltas is not None else split_words(reply.text)

    @staticmethod
    def _usage(reply: Reply, messages: Sequence[Any], n_deltas: int) -> TokenUsage:
        prompt, completion = reply.usage or (_word_count(messages), n_deltas + len(reply.tool_calls))
        return TokenUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    # -- ChatBackend methods

    async def chat(
        self,
        messages: list[Any],
        *,
        tools: list[ToolSpec] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 4096,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> ChatResponse:
        started = time.perf_counter()
        step = self._next(self._record("chat", messages, tools, temperature, max_tokens, stop, kwargs))
        if isinstance(step, Raise):
            raise step.error
        if isinstance(step, Hang):
            await _hang(step.event)
        assert isinstance(step, Reply)
        tool_calls = [self._to_tool_call(c) for c in step.tool_calls]
        return ChatResponse(
            content=step.text,
            tool_calls=tool_calls,
            usage=self._usage(step, messages, len(self._deltas(step))),
            model=self._model_name,
            provider=self._provider_name,
            latency_ms=(time.perf_counter() - started) * 1000.0,
        )

    def chat_stream(
        self,
        messages: list[Any],
        *,
        tools: list[ToolSpec] | None = None,
        temperature: float = 0.0,
        max_tokens: int = 4096,
        stop: list[str] | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[StreamChunk]:
        step = self._next(self._record("chat_stream", messages, tools, temperature, max_tokens, stop, kwargs))
        return self._stream(step, list(messages))

    async def _stream(self, step: Reply | Raise | Hang, messages: list[Any]) -> AsyncIterator[StreamChunk]:
        if isinstance(step, Raise | Hang):
            for piece in step.after_deltas:
                yield StreamChunk(delta=piece)
            if isinstance(step, Raise):
                raise step.error
            await _hang(step.event)
            return
        if step.reasoning:
            yield StreamChunk(delta="", reasoning=step.reasoning)
        deltas = self._deltas(step)
        for piece in deltas:
            yield StreamChunk(delta=piece)
        for call in step.tool_calls:
            yield StreamChunk(
                delta="",
                tool_call_delta=ToolCallDelta(
                    call_id=self._call_id(call), name_delta=call.name, arguments_delta=call.arguments_json
                ),
            )
        usage = self._usage(step, messages, len(deltas)) if step.usage_reported else None
        yield StreamChunk(delta="", is_final=True, usage=usage)

    def _to_tool_call(self, call: ScriptedToolCall) -> ToolCall:
        truncated = False
        if call.raw_arguments is None:
            args: Any = dict(call.args or {})
        else:
            try:
                args = json.loads(call.raw_arguments)
            except json.JSONDecodeError:
                args = None
            if not isinstance(args, dict):
                args, truncated = {}, True
        return ToolCall(name=call.name, args=args, call_id=self._call_id(call), truncated=truncated)

    def __repr__(self) -> str:
        return (f"ScriptedBackend(provider={self._provider_name!r}, model={self._model_name!r}, "
                f"calls={self.call_count}, remaining={self.remaining})")


async def _hang(event: threading.Event | asyncio.Event | None) -> None:
    """Signal ``event`` and wait until the surrounding task is cancelled."""
    if event is not None:
        event.set()
    await asyncio.get_running_loop().create_future()  # never resolves; cancellation ends it
