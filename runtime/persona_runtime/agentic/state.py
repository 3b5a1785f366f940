"""What an agent run holds while it works: the run, its context, and the step in progress."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from persona_runtime.agentic.run import Run, RunStatus, Step, StepToolCall, StepType
from persona_runtime.engine.account import CallAccount

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage

__all__ = ["RunState", "StepFailed", "StepProgress", "now"]


def now() -> datetime:
    return datetime.now(UTC)


class StepFailed(Exception):
    """Every model in the chain failed for a step (``spend_cap``: the spend cap refused it)."""

    def __init__(self, message: str, *, spend_cap: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.spend_cap = spend_cap


@dataclass
class StepProgress:
    """A step in progress (mutable); becomes a frozen :class:`Step`. What it spent and tried
    is in ``account``, the same record a chat turn keeps."""

    index: int
    best_effort: bool = False
    started_at: datetime = field(default_factory=now)
    account: CallAccount = field(default_factory=CallAccount)
    type: StepType | None = None
    rationale: str = ""
    latency_ms: float | None = None
    tool_calls: list[StepToolCall] = field(default_factory=list)
    thinking: str = ""
    content: str = ""
    question: str | None = None
    answer: str | None = None
    interrupted: bool = False
    error: str | None = None


@dataclass
class RunState:
    run: Run
    messages: list[ConversationMessage]
    steps: list[Step]
    limit: int
    resumed: bool
    pending_question: str | None = None
    output: str | None = None
    best_effort: bool = False
    error: str | None = None
    stop: RunStatus | None = None
    first_in_invocation: bool = True
    calls_seen: Counter[str] = field(default_factory=Counter)
    current: StepProgress | None = None

    @property
    def model_steps(self) -> int:
        return sum(1 for s in self.steps if not s.best_effort)

    @property
    def previous_type(self) -> StepType | None:
        return self.steps[-1].type if self.steps else None

    def record_answer(self, answer: str) -> None:
        """On resume: the stored question step records the answer it finally got."""
        if self.steps and self.steps[-1].type is StepType.ASK_USER:
            self.steps[-1] = self.steps[-1].model_copy(update={"answer": answer})
