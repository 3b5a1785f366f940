"""Running a reply's tool calls, the same for chat turns and agent steps.

Each call is announced (``ToolCallStarted``), run through :func:`run_tool_call` (approval for
tools that write or send, timeouts, contained errors, size cap) or refused by the loop guard,
and reported (``ToolCallFinished``). The loop guard: the ``loop_guard``-th identical call (same
name, same arguments) within one turn or run, and every repeat after it, is not run; the model
gets an error result saying so and the UI a ``LoopGuardTriggered``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.engine.stream import Cancelled, cancellable
from persona_runtime.events import LoopGuardTriggered, ToolCallFinished, ToolCallStarted
from persona_runtime.secrets import redact
from persona_runtime.tooling import ToolApprover, ToolRun, error_result, run_tool_call
from persona_runtime.turnlog import ToolCallRecord

if TYPE_CHECKING:
    from persona.schema.tools import ToolCall, ToolResult

    from persona_runtime.cancel import CancelToken
    from persona_runtime.tier import ModelSlot

__all__ = ["LOOP_GUARD_RESULT", "NO_TOOLS_RESULT", "ToolOutcome", "ToolRunner", "call_signature"]

LOOP_GUARD_RESULT = (
    "Not run: you have already called {name} with exactly these arguments {previous} time(s); the result "
    "will not change. Use the earlier result, try different arguments or another approach, or give the "
    "result with [FINAL]."
)
NO_TOOLS_RESULT = "No tools are available in this run; continue without tools."


def call_signature(name: str, args: Any) -> str:
    return name + "\x00" + json.dumps(args, sort_keys=True, default=str, separators=(",", ":"))


@dataclass(frozen=True)
class ToolOutcome:
    call: ToolCall
    result: ToolResult
    #: The result as the person may see it (secrets redacted).
    shown: str
    approved: bool
    repeated: bool
    #: The tool's own time, without the person's time at the approval question.
    duration_ms: float
    approval_ms: float = 0.0

    @property
    def record(self) -> ToolCallRecord:
        """The call as the TurnLog keeps it."""
        return ToolCallRecord(
            name=self.call.name, ok=not self.result.is_error, duration_ms=self.duration_ms, approval_ms=self.approval_ms
        )

    @property
    def skill_name(self) -> str | None:
        """The skill a successful ``use_skill`` call activated."""
        data = self.result.data if isinstance(self.result.data, dict) else {}
        name = data.get("skill_name")
        return name if isinstance(name, str) and name and not self.result.is_error else None


class ToolRunner:
    def __init__(self, toolbox: Any, *, timeout_s: float = 60.0, max_chars: int = 20_000, loop_guard: int = 3) -> None:
        if loop_guard < 0:
            raise ValueError("loop_guard must be >= 0 (0 turns it off)")
        self.toolbox = toolbox
        self.timeout_s = timeout_s
        self.max_chars = max_chars
        self.loop_guard = loop_guard

    @property
    def available(self) -> bool:
        return self.toolbox is not None and bool(self.toolbox.names())

    def specs_for(self, slot: ModelSlot) -> list[Any] | None:
        """Tool specs to send to this model; None on local GGUF models (they cannot call tools reliably)."""
        if slot.provider == "gguf" or not self.available:
            return None
        return list(self.toolbox.get_specs())

    async def run(
        self,
        calls: Sequence[ToolCall],
        seen: Counter[str],
        *,
        approve: ToolApprover | None,
        cancel: CancelToken | None = None,
    ) -> AsyncIterator[ToolCallStarted | LoopGuardTriggered | ToolCallFinished | ToolOutcome]:
        """Per call: ``ToolCallStarted``, maybe ``LoopGuardTriggered``, the ``ToolOutcome``, then
        ``ToolCallFinished``. ``seen`` counts identical calls across the turn or run."""
        for call in calls:
            if cancel is not None and cancel.is_cancelled:
                raise Cancelled
            signature = call_signature(call.name, call.args)
            seen[signature] += 1
            count = seen[signature]
            yield ToolCallStarted(call.call_id, call.name, dict(call.args))
            started = time.perf_counter()
            repeated = bool(self.loop_guard) and count >= self.loop_guard and not call.truncated
            if repeated:
                run = ToolRun(error_result(call, LOOP_GUARD_RESULT.format(name=call.name, previous=count - 1)), True)
                yield LoopGuardTriggered(call.name, dict(call.args), count)
            elif not self.available:
                run = ToolRun(error_result(call, NO_TOOLS_RESULT), True)
            else:
                run = await run_tool_call(
                    self.toolbox, call, approve=approve, timeout_s=self.timeout_s, max_chars=self.max_chars,
                    guard=lambda awaitable: cancellable(awaitable, cancel),
                )
            duration = (time.perf_counter() - started) * 1000 - run.approval_ms
            shown = redact(run.result.content)
            yield ToolOutcome(call, run.result, shown, run.approved, repeated, duration, run.approval_ms)
            yield ToolCallFinished(call.call_id, call.name, shown, run.result.is_error, duration, run.approved)
