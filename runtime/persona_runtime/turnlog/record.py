"""TurnLog: one frozen, versioned telemetry record per turn (or agent step).

Written as one JSON line by :mod:`persona_runtime.turnlog.writer`; the readers
(:mod:`~persona_runtime.turnlog.query` and friends) never rebuild these models, they read
plain dicts, so a record of a newer schema (unknown fields) reads fine.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["SCHEMA_VERSION", "AttemptRecord", "ToolCallRecord", "TurnLog", "TurnStatus", "new_id"]

SCHEMA_VERSION = 1
TurnStatus = Literal["ok", "interrupted", "error"]


def new_id() -> str:
    return uuid.uuid4().hex


class _Record(BaseModel):
    # Readers must accept records written by a newer version: unknown fields are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ToolCallRecord(_Record):
    name: str
    ok: bool
    #: The tool's own time; the person's time at the approval question is apart.
    duration_ms: float = 0.0
    approval_ms: float = 0.0


class AttemptRecord(_Record):
    """One try at one model; a turn with more than one attempt fell back."""

    tier: str
    provider: str
    model: str
    outcome: Literal["ok", "error", "interrupted"]
    error_type: str | None = None
    error: str | None = None
    latency_ms: float = 0.0


class TurnLog(_Record):
    schema_version: int = SCHEMA_VERSION
    turn_id: str = Field(default_factory=new_id)
    #: ``undo``: a record that the turn ``undoes`` names was taken back (no tokens of its own).
    kind: Literal["chat", "agent", "undo"] = "chat"
    conversation_id: str
    turn_index: int = Field(ge=0)
    persona_id: str
    run_id: str | None = None
    step: int | None = None
    tier: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    #: True when a provider reported no usage for some request of this turn and the tokens
    #: (and so the cost) are our own count (cl100k), not the provider's.
    usage_estimated: bool = False
    #: Cents. ``None`` when the price is unknown: never an invented 0.
    cost_cents: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    skill_used: str | None = None
    history_compacted: bool = False
    routing: dict[str, object] | None = None
    #: Ids of the memory entries recalled and sent with this turn (identity, always sent, aside).
    recalled: tuple[str, ...] = ()
    attempts: tuple[AttemptRecord, ...] = ()
    status: TurnStatus = "ok"
    error: str | None = None
    #: The start of the person's message, one line, redacted (for `logs tail` and `logs list`).
    preview: str | None = None
    undoes: str | None = None
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("timestamp")
    @classmethod
    def _tz_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value

    @property
    def fallback(self) -> bool:
        """True when more than one model was tried."""
        return len(self.attempts) > 1

    def to_json_line(self) -> str:
        return self.model_dump_json(exclude_none=False) + "\n"
