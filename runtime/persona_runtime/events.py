"""Typed events a turn yields, so a UI can render it without knowing providers.

``ConversationLoop.turn`` yields these in order: ``RoutingDecided`` (and
``HistoryCompacted`` when history was folded), then any mix of ``TextDelta``,
``ToolCallStarted`` / ``ToolCallFinished``, ``SkillActivated``, ``RetryWaiting``
and ``FallbackTriggered``; and it always ends with exactly one ``TurnFinished``
(status ok / interrupted / error), preceded by ``TurnFailed`` when it failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_runtime.routing.types import RoutingDecision
    from persona_runtime.turnlog.record import TurnLog

__all__ = [
    "FallbackTriggered",
    "HistoryCompacted",
    "RetryWaiting",
    "RoutingDecided",
    "SkillActivated",
    "TextDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "TurnEvent",
    "TurnFailed",
    "TurnFinished",
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
class TextDelta:
    text: str


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
class TurnFailed:
    """Nothing could answer. The user's message is kept so the turn can be retried."""

    message: str
    error_type: str


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


TurnEvent = (
    RoutingDecided
    | HistoryCompacted
    | TextDelta
    | ToolCallStarted
    | ToolCallFinished
    | SkillActivated
    | RetryWaiting
    | FallbackTriggered
    | TurnFailed
    | TurnFinished
)
