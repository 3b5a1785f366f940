"""What one chat turn or agent step spent and tried, and the one place its TurnLog is built."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from persona_runtime.engine.usage import Usage
from persona_runtime.fallback import attempt_record
from persona_runtime.secrets import redact
from persona_runtime.turnlog import AttemptRecord, ToolCallRecord, TurnLog

if TYPE_CHECKING:
    from persona_runtime.routing.types import RoutingDecision
    from persona_runtime.tier import ModelSlot

__all__ = ["CallAccount"]


@dataclass
class CallAccount:
    """Mutable while the turn or step runs. Every request's usage (replies, tool rounds,
    summaries) is added here, so the TurnLog holds all of it."""

    started: float = field(default_factory=time.perf_counter)
    usage: Usage = field(default_factory=Usage)
    ttft_ms: float | None = None
    #: The model being tried (set by the fallback walk) and when its attempt started.
    tier: str | None = None
    slot: ModelSlot | None = None
    attempt_started: float | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    tool_records: list[ToolCallRecord] = field(default_factory=list)
    skill_used: str | None = None
    compacted: bool = False
    routing: RoutingDecision | None = None
    #: Calls the spend cap moved to a cheaper model (``routing.spend_cap`` in the TurnLog).
    spend_reroutes: list[dict[str, Any]] = field(default_factory=list)
    #: Ids of the memory entries sent with the turn (identity aside).
    recalled: tuple[str, ...] = ()

    def add(self, usage: Usage) -> None:
        self.usage = self.usage + usage

    def close_open_attempt(self) -> None:
        """An attempt still in flight when the turn was interrupted is recorded as such."""
        if self.slot is not None and self.attempt_started is not None:
            self.attempts.append(attempt_record(self.tier or "", self.slot, "interrupted", self.attempt_started))
            self.attempt_started = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def turn_log(
        self,
        *,
        conversation_id: str,
        turn_index: int,
        persona_id: str,
        status: str,
        error: str | None = None,
        kind: str = "chat",
        run_id: str | None = None,
        step: int | None = None,
        latency_ms: float | None = None,
        timestamp: datetime | None = None,
    ) -> TurnLog:
        slot = self.slot
        routing: dict[str, Any] | None = self.routing.to_record() if self.routing is not None else None
        if self.spend_reroutes:
            routing = {**(routing or {}), "spend_cap": list(self.spend_reroutes)}
        return TurnLog(
            kind=kind,  # type: ignore[arg-type]
            conversation_id=conversation_id,
            turn_index=turn_index,
            persona_id=persona_id,
            run_id=run_id,
            step=step,
            tier=self.tier,
            provider=slot.provider if slot else None,
            model=slot.model if slot else None,
            prompt_tokens=self.usage.prompt_tokens,
            completion_tokens=self.usage.completion_tokens,
            usage_estimated=self.usage.estimated,
            cost_cents=self.usage.cost_cents,
            latency_ms=round(latency_ms if latency_ms is not None else self.elapsed_ms(), 3),
            ttft_ms=round(self.ttft_ms, 3) if self.ttft_ms is not None else None,
            tool_calls=tuple(self.tool_records),
            skill_used=self.skill_used,
            history_compacted=self.compacted,
            routing=routing,
            recalled=self.recalled,
            attempts=tuple(self.attempts),
            status=status,  # type: ignore[arg-type]
            error=redact(error) if error else None,
            timestamp=timestamp or datetime.now(UTC),
        )
