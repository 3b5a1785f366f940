"""Typed events an agent run yields, so a UI renders it without knowing the loop's insides.

``AgenticLoop.run`` yields, in order: one ``RunStarted``; per step a ``StepStarted``, then
any mix of ``ThinkingDelta`` / ``AnswerDelta``, ``ToolCallStarted`` / ``ToolCallFinished``,
``LoopGuardTriggered``, ``SkillActivated``, ``RetryWaiting`` / ``FallbackTriggered``,
``StepsCompacted``, ``AskUser`` / ``UserAnswered`` and ``FinalAnswer``, and one
``StepFinished`` carrying the step's record; and always exactly one ``RunFinished`` last,
carrying the saved :class:`~persona_runtime.agentic.run.Run`.

The tool, retry and fallback events are the chat loop's own classes, so both loops
render the same way. :func:`event_to_dict` gives each event a JSON-ready form.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.events import (
    FallbackTriggered,
    LoopGuardTriggered,
    Notice,
    ReplyCut,
    RetryWaiting,
    SkillActivated,
    ThinkingDelta,
    ToolCallFinished,
    ToolCallStarted,
)
from persona_runtime.agentic.run import Run, Step

if TYPE_CHECKING:
    from persona_runtime.turnlog import TurnLog

__all__ = [
    "AgentEvent",
    "AnswerDelta",
    "AskUser",
    "FallbackTriggered",
    "FinalAnswer",
    "LoopGuardTriggered",
    "Notice",
    "ReplyCut",
    "RetryWaiting",
    "RunFinished",
    "RunStarted",
    "SkillActivated",
    "StepFinished",
    "StepStarted",
    "StepsCompacted",
    "ThinkingDelta",
    "ToolCallFinished",
    "ToolCallStarted",
    "UserAnswered",
    "event_to_dict",
]


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    task: str
    persona_id: str
    max_steps: int
    #: True when this continues a stored run (``--resume``).
    resumed: bool = False


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: int
    max_steps: int
    tier: str
    model: str
    rationale: str = ""
    #: The one tool-less call made after the step limit.
    best_effort: bool = False


@dataclass(frozen=True, slots=True)
class AnswerDelta:
    """Streamed text of the final answer (after ``[FINAL]``)."""

    text: str


@dataclass(frozen=True, slots=True)
class StepsCompacted:
    """Older steps were folded into an "Earlier in this run" summary to fit the context."""

    messages_folded: int
    summary_tier: str | None
    summary_model: str | None


@dataclass(frozen=True, slots=True)
class AskUser:
    step: int
    question: str


@dataclass(frozen=True, slots=True)
class UserAnswered:
    step: int
    answer: str


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    text: str
    #: True for the tool-less answer made after the step limit: a best effort, not a result.
    best_effort: bool = False


@dataclass(frozen=True, slots=True)
class StepFinished:
    step: Step
    #: The step's TurnLog record (written by the TurnLog subscriber); None only in hand-made events.
    log: TurnLog | None = None


@dataclass(frozen=True, slots=True)
class RunFinished:
    run: Run

    @property
    def status(self) -> str:
        return str(self.run.status)


AgentEvent = (
    RunStarted
    | StepStarted
    | ThinkingDelta
    | AnswerDelta
    | ReplyCut
    | ToolCallStarted
    | ToolCallFinished
    | LoopGuardTriggered
    | Notice
    | SkillActivated
    | RetryWaiting
    | FallbackTriggered
    | StepsCompacted
    | AskUser
    | UserAnswered
    | FinalAnswer
    | StepFinished
    | RunFinished
)


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def event_to_dict(event: Any) -> dict[str, Any]:
    """``{"type": "step_started", ...fields}``; records become JSON-ready dicts.

    ``RunFinished`` is summarised (status, output, usage, cost), without the context.
    """
    kind = _snake(type(event).__name__)
    if isinstance(event, StepFinished):
        return {"type": kind, "step": event.step.model_dump(mode="json")}
    if isinstance(event, RunFinished):
        run = event.run
        return {
            "type": kind,
            "run_id": run.id,
            "status": str(run.status),
            "steps": len(run.steps),
            "output": run.output,
            "best_effort": run.best_effort,
            "error": run.error,
            "question": run.pending_question,
            "usage": {
                "prompt_tokens": run.prompt_tokens, "completion_tokens": run.completion_tokens,
                "estimated": run.usage_estimated,
            },
            "cost_cents": run.cost_cents,
            "unpriced_steps": run.unpriced_steps,
        }
    data: dict[str, Any] = {"type": kind}
    for f in dataclasses.fields(event):
        data[f.name] = getattr(event, f.name)
    return data
