"""Step-history compaction: fold the middle of a run's context into one summary message.

The context is ``[system floor, TASK, ...step messages]``. When its estimated size passes
``ratio`` of the step tier's budget, the messages between the floor and the last
``keep_recent`` are summarised (by the loop, on the small tier) into one system message,
``"Earlier in this run: ..."``. The boundary never splits a tool call from its results:
it moves back until the kept tail does not start with a tool result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from persona_runtime.engine.tokens import prompt_tokens

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage

__all__ = ["SUMMARY_INSTRUCTIONS", "SUMMARY_PREFIX", "estimate_tokens", "fold_boundary", "is_tool_result", "transcript"]

SUMMARY_PREFIX = "Earlier in this run: "
SUMMARY_INSTRUCTIONS = (
    "Below are earlier steps of an agent working on a task: its notes, tool calls and their "
    "results, questions and answers. Summarise them in at most 150 words for the agent's own "
    "use: keep facts found (with numbers and sources), decisions, the person's answers, what "
    "failed and what is still open. Plain sentences, no preamble."
)
DROPPED_NOTE = "Earlier steps were dropped to fit the context window; their details are lost."


def _text(message: ConversationMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else " ".join(getattr(p, "text", "") for p in content)


def estimate_tokens(messages: Sequence[ConversationMessage]) -> int:
    """cl100k estimate of what the model is sent, tool-call arguments included."""
    return prompt_tokens(messages)


def is_tool_result(message: ConversationMessage) -> bool:
    return message.role == "tool" or "tool_call_id" in message.metadata


def fold_boundary(messages: Sequence[Any], *, floor: int, keep_recent: int) -> int | None:
    """Where the kept tail starts, or ``None`` when nothing lies between floor and tail.

    The tail never starts on a tool result: the boundary moves back to the assistant
    message that made the calls, so a call and its results stay together.
    """
    boundary = max(floor, len(messages) - max(1, keep_recent))
    while boundary > floor and is_tool_result(messages[boundary]):
        boundary -= 1
    return boundary if boundary > floor else None


def transcript(messages: Sequence[ConversationMessage]) -> str:
    lines = []
    for m in messages:
        if m.tool_calls:
            calls = "; ".join(f"{c.name}({json.dumps(c.args, default=str)})" for c in m.tool_calls)
            lines.append(f"ASSISTANT (calls {calls}): {_text(m)}".rstrip())
        elif is_tool_result(m):
            lines.append(f"TOOL {m.metadata.get('tool_name', '')}: {_text(m)}")
        else:
            lines.append(f"{m.role.upper()}: {_text(m)}")
    return "\n".join(lines)
