"""Conversation messages as persona-core wants them, and tool calls to and from the model."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.tools import ToolCall, ToolResult

__all__ = [
    "assistant_message",
    "assistant_with_calls",
    "message",
    "parse_tool_call",
    "system_message",
    "text_of",
    "tool_result_message",
    "user_message",
]

# persona-core's format_tool_result knows these providers; others get the OpenAI shape.
_NATIVE_FORMAT_PROVIDERS = frozenset(
    {"anthropic", "openai", "deepseek", "groq", "together", "nvidia", "openrouter", "cloudflare", "ollama", "local"}
)


def message(
    role: str, content: str, created_at: datetime | None = None, metadata: dict[str, str] | None = None, **extra: Any
) -> ConversationMessage:
    from persona.schema.conversation import ConversationMessage

    return ConversationMessage(
        role=role, content=content, created_at=created_at or datetime.now(UTC), metadata=metadata or {}, **extra  # type: ignore[arg-type]
    )


def system_message(content: str) -> ConversationMessage:
    return message("system", content)


def user_message(content: str, **kw: Any) -> ConversationMessage:
    return message("user", content, **kw)


def assistant_message(content: str, **kw: Any) -> ConversationMessage:
    return message("assistant", content, **kw)


def assistant_with_calls(text: str, calls: list[ToolCall]) -> ConversationMessage:
    return message("assistant", text, tool_calls=calls)


def text_of(msg: ConversationMessage) -> str:
    content = msg.content
    return content if isinstance(content, str) else " ".join(getattr(p, "text", "") for p in content)


def parse_tool_call(call_id: str, name: str, raw_arguments: str) -> ToolCall:
    """A streamed call, assembled. Arguments that are not a JSON object mark it ``truncated``."""
    from persona.schema.tools import ToolCall

    raw = raw_arguments.strip() or "{}"
    try:
        args = json.loads(raw)
        if not isinstance(args, dict):
            raise ValueError("arguments are not an object")
        return ToolCall(name=name, args=args, call_id=call_id)
    except ValueError:
        return ToolCall(name=name, args={}, call_id=call_id, truncated=True)


def tool_result_message(call: ToolCall, result: ToolResult, provider: str, native: bool) -> ConversationMessage:
    from persona.tools import format_tool_result

    fmt_provider = provider if provider in _NATIVE_FORMAT_PROVIDERS else "openai"
    return format_tool_result(call, result, provider_name=fmt_provider, native=native)
