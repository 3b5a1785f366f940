"""HistoryWindow: which past messages a turn sends verbatim, and when older ones are summarised.

persona-core's ``ConversationHistoryManager`` counts messages but calls them turns: its cut
(``len(messages) - keep_recent``) can fall between a question and its answer, so the prompt's
history may start with a reply, and once past the threshold it asks for a new summary on
every turn. This window works in whole turns (a user message and what follows it) and
summarises in batches: once more than ``compact_after`` messages are verbatim, everything
but the last ``keep_recent_turns`` turns is folded into the running summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation, ConversationMessage

__all__ = ["HistoryWindow"]

SUMMARY_PREFIX = "Earlier in this conversation: "


@dataclass(frozen=True)
class HistoryWindow:
    compact_after: int = 20
    keep_recent_turns: int = 3

    def __post_init__(self) -> None:
        if self.compact_after <= 0 or self.keep_recent_turns <= 0:
            raise ValueError("compact_after and keep_recent_turns must be positive")

    def due(self, messages: Sequence[ConversationMessage], compacted_up_to: int) -> int | None:
        """The index to fold up to (exclusive, always a user message), or None if nothing is due."""
        if len(messages) - compacted_up_to <= self.compact_after:
            return None
        starts = [i for i in range(compacted_up_to, len(messages)) if messages[i].role == "user"]
        if len(starts) <= self.keep_recent_turns:
            return None
        return starts[-self.keep_recent_turns]

    @staticmethod
    def fold(conversation: Conversation, boundary: int, summary: str) -> None:
        """Record a new summary segment covering messages up to ``boundary``."""
        summary = summary.strip()
        existing = (conversation.compacted_summary or "").rstrip()
        conversation.compacted_summary = f"{existing}\n\n{summary}" if existing else summary
        conversation.compacted_up_to = boundary

    @staticmethod
    def visible(conversation: Conversation) -> list[ConversationMessage]:
        """The running summary (as a system message) and every message after it."""
        recent = list(conversation.messages[conversation.compacted_up_to :])
        if not conversation.compacted_summary:
            return recent
        from persona.schema.conversation import ConversationMessage

        summary = ConversationMessage(
            role="system", content=SUMMARY_PREFIX + conversation.compacted_summary,
            created_at=datetime.now(UTC), metadata={"kind": "compacted_summary"},
        )
        return [summary, *recent]
