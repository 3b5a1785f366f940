"""One streamed model request, gathered into a :class:`ModelReply`.

``stream_reply`` yields ``TextDelta`` and ``ThinkingDelta`` (the model's reasoning, when the
provider sends it) as they arrive, then the ``ModelReply`` as its last item. Any fault of the
model or its transport, and an empty reply (no text, no tool call), raise ``AttemptFailed``
so the fallback walk tries the next model. The reply's usage is the provider's; where the
provider reported none, it is counted here (``engine.tokens``) and marked ``estimated``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.engine import tokens
from persona_runtime.engine.messages import parse_tool_call
from persona_runtime.engine.stream import StreamPump
from persona_runtime.engine.usage import Usage
from persona_runtime.events import TextDelta, ThinkingDelta
from persona_runtime.fallback import AttemptFailed

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.tools import ToolCall

    from persona_runtime.cancel import CancelToken

__all__ = ["ModelReply", "stream_reply"]


@dataclass
class ModelReply:
    text: str
    reasoning: str
    calls: list[ToolCall]
    usage: Usage
    #: The reply stopped because it reached ``max_tokens``.
    cut: bool
    max_tokens: int
    native: bool
    provider: str
    model: str = ""


async def stream_reply(
    backend: Any,
    messages: Sequence[ConversationMessage],
    *,
    tools: list[Any] | None,
    temperature: float,
    max_tokens: int,
    price: tuple[float, float] | None,
    cancel: CancelToken | None = None,
    accept_calls: bool = True,
    allow_empty: bool = False,
) -> AsyncIterator[TextDelta | ThinkingDelta | ModelReply]:
    """``accept_calls``: gather tool calls (a model may send them even when ``tools`` is None;
    they are answered with an error result). ``allow_empty``: an empty reply is fine (a chat
    turn's last round, after tool results, when the turn already said something)."""
    from persona.backends.errors import EmptyCompletionError, ProviderError
    from persona.backends.types import reasoning_as_text

    text: list[str] = []
    reasoning: list[str] = []
    calls: dict[str, list[str]] = {}  # call id -> [name, arguments]
    reported: Any = None  # the provider's TokenUsage, from the final chunk
    pump = StreamPump(
        lambda: backend.chat_stream(list(messages), tools=tools, temperature=temperature, max_tokens=max_tokens),
        cancel,
    )
    try:
        async with pump:
            async for chunk in pump:
                if chunk.reasoning:
                    thought = reasoning_as_text(chunk.reasoning)
                    if thought:
                        reasoning.append(thought)
                        yield ThinkingDelta(thought)
                if chunk.delta:
                    text.append(chunk.delta)
                    yield TextDelta(chunk.delta)
                if chunk.tool_call_delta is not None and accept_calls:
                    d = chunk.tool_call_delta
                    acc = calls.setdefault(d.call_id, ["", ""])
                    acc[0] += d.name_delta
                    acc[1] += d.arguments_delta
                if chunk.is_final:
                    reported = chunk.usage
    except ProviderError as exc:
        raise AttemptFailed(exc) from exc
    except (OSError, ValueError, RuntimeError) as exc:
        # A transport or parsing fault the backend did not map: this model failed.
        raise AttemptFailed(exc) from exc
    joined = "".join(text)
    thought = "".join(reasoning)
    if not calls and not joined.strip() and not allow_empty:
        model = getattr(backend, "model_name", "")
        raise AttemptFailed(EmptyCompletionError("the model returned an empty reply", context={"model": model}))
    usage = Usage.measured_or_estimated(
        reported, price,
        prompt_estimate=lambda: tokens.prompt_tokens(messages, tools),
        completion_estimate=lambda: tokens.completion_tokens(joined, thought, [(n, a) for n, a in calls.values()]),
    )
    yield ModelReply(
        text=joined,
        reasoning=thought,
        calls=[parse_tool_call(cid, name, args) for cid, (name, args) in calls.items()],
        usage=usage,
        cut=not calls and usage.completion_tokens >= max_tokens,
        max_tokens=max_tokens,
        native=bool(getattr(backend, "supports_native_tools", False)),
        provider=backend.provider_name,
        model=getattr(backend, "model_name", ""),
    )
