"""Typed events a turn yields, so a UI can render it without knowing providers.

``ConversationLoop.turn`` yields these in order: ``MemoryRecalled`` (when the loop has
memory: what was recalled for this message), ``RoutingDecided`` (and ``HistoryCompacted``
when history was folded; and a second ``MemoryRecalled``, with fewer entries, when a local
model's recall budget left some out), then any mix of ``TextDelta``,
``ThinkingDelta`` (the model's reasoning, when its provider sends it),
``ToolCallStarted`` / ``ToolCallFinished``, ``LoopGuardTriggered``, ``SkillActivated``, ``RetryWaiting``,
``FallbackTriggered`` and ``ReplyCut``; and it always ends with exactly one ``TurnFinished``
(status ok / interrupted / error), preceded by ``TurnFailed`` when it failed.

The text, reasoning, cut, tool, retry and fallback events are shared with agent runs
(:mod:`persona_runtime.agentic.events`), so both render the same way.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_runtime.routing.types import RoutingDecision
    from persona_runtime.turnlog.record import TurnLog

__all__ = [
    "FallbackTriggered",
    "HistoryCompacted",
    "LoopGuardTriggered",
    "MemoryRecalled",
    "Notice",
    "RecalledEntry",
    "ReplyCut",
    "RetryWaiting",
    "RoutingDecided",
    "SkillActivated",
    "SpendCapRerouted",
    "TextDelta",
    "ThinkingDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "TurnContent",
    "TurnEvent",
    "TurnFailed",
    "TurnFinished",
    "TurnUndone",
]


@dataclass(frozen=True, slots=True)
class RoutingDecided:
    decision: RoutingDecision


@dataclass(frozen=True, slots=True)
class HistoryCompacted:
    """Older messages were folded into a summary (made on the small tier)."""

    messages_folded: int
    summary_tier: str
    summary_model: str


@dataclass(frozen=True, slots=True)
class RecalledEntry:
    """One memory entry sent with this message (the identity is always sent and not listed)."""

    store: str  # self_facts | worldview | episodic
    id: str
    #: Similarity to the message (1 - cosine distance); None when the store gave no distance.
    score: float | None
    created_at: datetime | None
    first_line: str


_SUMMARY_NAMES = {"episodic": ("episodic", "episodic"), "self_facts": ("fact", "facts"), "worldview": ("view", "views")}


@dataclass(frozen=True, slots=True)
class MemoryRecalled:
    """What memory recalled for this message, before the model is asked."""

    entries: tuple[RecalledEntry, ...] = ()
    #: (self facts, views) standing in the system message, sent with every message; None: none stand.
    standing: tuple[int, int] | None = None

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(e.id for e in self.entries)

    def summary(self) -> str:
        """``recalled: 2 episodic · 1 fact`` (``recalled: nothing`` when empty)."""
        counts = Counter(e.store for e in self.entries)
        parts = [
            f"{counts[store]} {names[0] if counts[store] == 1 else names[1]}"
            for store, names in _SUMMARY_NAMES.items() if counts[store]
        ]
        return f"recalled: {' · '.join(parts) if parts else 'nothing'}"


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ThinkingDelta:
    """Model text that is not the answer: reasoning, plans, an agent's text before a marker."""

    text: str


@dataclass(frozen=True, slots=True)
class ReplyCut:
    """The reply reached its token budget and stopped there (``limit`` tokens; ``setting`` says
    which variable raises it)."""

    limit: int
    setting: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    name: str
    content: str
    is_error: bool
    duration_ms: float
    #: False when the person declined the call; the model was told so.
    approved: bool = True


@dataclass(frozen=True, slots=True)
class LoopGuardTriggered:
    """The model repeated an identical tool call; it was not run again (the model was told)."""

    name: str
    arguments: dict[str, Any]
    count: int


@dataclass(frozen=True, slots=True)
class Notice:
    """One line the person should know that is not part of the reply (memory is off, say)."""

    text: str


@dataclass(frozen=True, slots=True)
class SkillActivated:
    name: str


@dataclass(frozen=True, slots=True)
class RetryWaiting:
    """A rate limit asked us to wait; the same model is retried after ``seconds``."""

    seconds: float
    tier: str
    model: str
    reason: str


@dataclass(frozen=True, slots=True)
class FallbackTriggered:
    """One model failed; the next candidate is tried."""

    failed_tier: str
    failed_provider: str
    failed_model: str
    error: str
    next_tier: str
    next_model: str
    #: True when text from the failed attempt was already streamed: the reply restarts.
    discarded_text: bool = False


@dataclass(frozen=True, slots=True)
class SpendCapRerouted:
    """The routed model could cross the spend cap on this call; a cheaper one that fits answers."""

    from_tier: str
    from_model: str
    to_tier: str
    to_model: str
    #: Why, in words: the worst case of the call and what is left under the cap.
    reason: str


@dataclass(frozen=True, slots=True)
class TurnFailed:
    """Nothing could answer. The user's message is kept so the turn can be retried."""

    message: str
    error_type: str


@dataclass(frozen=True, slots=True)
class TurnContent:
    """What a turn added to its conversation, for the conversation file
    (:class:`persona_runtime.conversations.ConversationRecorder`)."""

    #: The user message and the reply (what later turns send as history); persona-core messages.
    messages: tuple[Any, ...]
    #: The assistant's tool calls and the tool results in between (kept for reading, not resent).
    tool_messages: tuple[Any, ...] = ()
    #: The episodic memory chunk the turn wrote (``/undo`` deletes it).
    chunk_id: str | None = None
    #: The conversation's running summary when this turn compacted history, and where it ends.
    summary: str | None = None
    compacted_up_to: int = 0


@dataclass(frozen=True, slots=True)
class TurnFinished:
    status: str  # ok | interrupted | error
    text: str
    tier: str | None
    provider: str | None
    model: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_cents: float | None
    latency_ms: float
    ttft_ms: float | None
    log: TurnLog
    content: TurnContent | None = None


@dataclass(frozen=True, slots=True)
class TurnUndone:
    """``/undo`` took a turn back: the conversation file gets an undo line and the TurnLog
    ``log`` (``kind="undo"``, naming the turn in ``undoes``). Published, never yielded by a turn."""

    turn_id: str
    log: TurnLog
    #: One line when the memory the turn wrote could not be deleted.
    memory_problem: str | None = None


TurnEvent = (
    MemoryRecalled
    | RoutingDecided
    | HistoryCompacted
    | TextDelta
    | ThinkingDelta
    | ReplyCut
    | ToolCallStarted
    | ToolCallFinished
    | LoopGuardTriggered
    | Notice
    | SkillActivated
    | RetryWaiting
    | FallbackTriggered
    | SpendCapRerouted
    | TurnFailed
    | TurnFinished
)
