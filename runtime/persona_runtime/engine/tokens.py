"""Token counts we make ourselves, with the tokenizer the prompt budget uses (cl100k).

One place for them, used where a provider reports no usage (``Usage.estimated``), by the
agent's context compaction, and by anything that must know a request's size before it is
sent (e.g. a worst-case cost check). Every count here is an *estimate*: a provider's own
count, when it sends one, always wins.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from persona_runtime.prompt import MESSAGE_OVERHEAD, count_tokens

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage

__all__ = ["completion_tokens", "message_tokens", "prompt_tokens", "text_tokens", "tool_spec_tokens"]


def text_tokens(text: str) -> int:
    return count_tokens(text) if text else 0


def message_text(message: ConversationMessage) -> str:
    content = message.content
    if isinstance(content, str):
        return content
    return " ".join(getattr(part, "text", "") or "" for part in content)


def message_tokens(message: ConversationMessage) -> int:
    """One message as sent: its text, the tool calls it carries, and the template's framing."""
    total = text_tokens(message_text(message)) + MESSAGE_OVERHEAD
    for call in message.tool_calls:
        total += text_tokens(call.name) + text_tokens(json.dumps(call.args, default=str)) + MESSAGE_OVERHEAD
    return total


def tool_spec_tokens(tools: Iterable[Any] | None) -> int:
    """Tool specs as a provider receives them (name, description, JSON-schema parameters)."""
    total = 0
    for spec in tools or ():
        parameters = getattr(spec, "parameters", None) or {}
        total += text_tokens(getattr(spec, "name", "")) + text_tokens(getattr(spec, "description", "") or "")
        total += text_tokens(json.dumps(parameters, default=str, sort_keys=True)) + MESSAGE_OVERHEAD
    return total


def prompt_tokens(messages: Sequence[ConversationMessage], tools: Iterable[Any] | None = None) -> int:
    """Estimated prompt tokens of one request: the messages actually sent, plus the tool specs."""
    return sum(message_tokens(m) for m in messages) + tool_spec_tokens(tools)


def completion_tokens(text: str, reasoning: str = "", calls: Iterable[tuple[str, str]] = ()) -> int:
    """Estimated completion tokens of one reply: its text, its reasoning, and each tool call's
    name and arguments as received (``(name, arguments)`` pairs)."""
    total = text_tokens(text) + text_tokens(reasoning)
    for name, arguments in calls:
        total += text_tokens(name) + text_tokens(arguments)
    return total
