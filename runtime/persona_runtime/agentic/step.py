"""How one agent step talks to models and tools, on the shared engine.

* ``call``: one model call with fallback; the streamed text goes through the marker scanner
  (text before ``[FINAL]`` is thinking, after it the answer), and the step ends with an
  :class:`AgentReply`.
* ``run_tools``: the reply's tool calls, through the shared :class:`ToolRunner` (approval, the
  loop guard, containment); the calls and every result stay paired in the context.
* ``maybe_compact``: fold the middle of a long run into a small-tier summary.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.agentic.compaction import (
    DROPPED_NOTE,
    SUMMARY_INSTRUCTIONS,
    SUMMARY_PREFIX,
    estimate_tokens,
    fold_boundary,
    transcript,
)
from persona_runtime.agentic.events import AgentEvent, AnswerDelta, StepsCompacted, ThinkingDelta
from persona_runtime.agentic.markers import MarkerKind, MarkerScanner, ScanResult
from persona_runtime.agentic.run import StepToolCall
from persona_runtime.agentic.state import RunState, StepFailed, StepProgress
from persona_runtime.engine.messages import assistant_message, assistant_with_calls, system_message, tool_result_message
from persona_runtime.engine.reply import ModelReply
from persona_runtime.engine.stream import Cancelled
from persona_runtime.engine.tools import ToolOutcome
from persona_runtime.events import SkillActivated, TextDelta
from persona_runtime.fallback import AllModelsFailed, failure_message
from persona_runtime.spend import SpendCapReached
from persona_runtime.tooling import ToolApprover, inject_skill

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.tools import ToolCall

    from persona_runtime.cancel import CancelToken
    from persona_runtime.engine.engine import ModelEngine
    from persona_runtime.engine.tools import ToolRunner
    from persona_runtime.tier import ModelSlot

__all__ = ["CANCELLED_RESULT", "FLOOR", "AgentReply", "StepCalls"]

CANCELLED_RESULT = "Cancelled by the person before it finished."
SUMMARY_MAX_TOKENS = 320
#: The context's fixed start: [system, TASK].
FLOOR = 2


@dataclass
class AgentReply:
    """What one successful model call produced."""

    text: str
    scan: ScanResult
    calls: list[ToolCall]
    native: bool
    provider: str


class StepCalls:
    def __init__(
        self,
        engine: ModelEngine,
        tools: ToolRunner,
        *,
        skills: dict[str, Any],
        skill_injector: Any,
        compact_ratio: float,
        keep_recent: int,
    ) -> None:
        self.engine = engine
        self.tools = tools
        self.skills = skills
        self.skill_injector = skill_injector
        self.compact_ratio = compact_ratio
        self.keep_recent = keep_recent

    # -- the model call --------------------------------------------------------------------

    async def call(
        self,
        progress: StepProgress,
        tier: str,
        messages: Sequence[ConversationMessage],
        cancel: CancelToken | None,
        *,
        tools: bool,
        all_answer: bool = False,
    ) -> AsyncIterator[AgentEvent | AgentReply]:
        """``all_answer``: every word is the answer (the best-effort call after the step limit)."""
        account = progress.account
        try:
            async for item in self.engine.walk(
                account, tier,
                lambda tier_name, slot: self._attempt(progress, tier_name, slot, messages, cancel, tools, all_answer),
                cancel=cancel, is_output=lambda item: not isinstance(item, AgentReply),
            ):
                yield item
        except AllModelsFailed:
            raise StepFailed(failure_message(account.attempts)) from None
        except SpendCapReached as exc:
            account.attempt_started = None
            raise StepFailed(exc.message, spend_cap=True) from None
        progress.latency_ms = account.elapsed_ms()

    async def _attempt(
        self,
        progress: StepProgress,
        tier: str,
        slot: ModelSlot,
        messages: Sequence[ConversationMessage],
        cancel: CancelToken | None,
        tools: bool,
        all_answer: bool,
    ) -> AsyncIterator[AgentEvent | AgentReply]:
        scanner = MarkerScanner()

        def deltas(thinking: str, payload: str) -> list[AgentEvent]:
            out: list[AgentEvent] = []
            if thinking:
                out.append(AnswerDelta(thinking) if all_answer else ThinkingDelta(thinking))
            if payload and (all_answer or scanner.kind is MarkerKind.FINAL):
                out.append(AnswerDelta(payload))
            return out

        reply: ModelReply | None = None
        async for item in self.engine.request(
            progress.account, tier, slot, messages, tools=self.tools.specs_for(slot) if tools else None, cancel=cancel,
            accept_calls=tools,
        ):
            if isinstance(item, ModelReply):
                reply = item
            elif isinstance(item, TextDelta):
                for event in deltas(*scanner.feed(item.text)):
                    yield event
            else:
                yield item  # the model's own reasoning, a cut reply
        assert reply is not None
        for event in deltas(*scanner.finish()):
            yield event
        yield AgentReply(
            text=scanner.text, scan=scanner.result(), calls=reply.calls, native=reply.native, provider=reply.provider
        )

    # -- tools -------------------------------------------------------------------------------

    async def run_tools(
        self, st: RunState, progress: StepProgress, reply: AgentReply, approve: ToolApprover | None, cancel: CancelToken | None
    ) -> AsyncIterator[AgentEvent]:
        from persona.schema.tools import ToolResult

        group: list[ConversationMessage] = []
        if reply.native:
            group.append(assistant_with_calls(reply.text.strip(), reply.calls))
        elif reply.text.strip():
            group.append(assistant_message(reply.text.strip()))
        skill: tuple[str, str] | None = None
        finished = 0
        try:
            async for item in self.tools.run(reply.calls, st.calls_seen, approve=approve, cancel=cancel):
                if not isinstance(item, ToolOutcome):
                    yield item
                    continue
                call, result = item.call, item.result
                progress.account.tool_records.append(item.record)
                progress.tool_calls.append(
                    StepToolCall(
                        call_id=call.call_id, name=call.name, arguments=dict(call.args), result=item.shown,
                        is_error=result.is_error, duration_ms=round(item.duration_ms, 3), approved=item.approved,
                        repeated=item.repeated, approval_ms=round(item.approval_ms, 3),
                    )
                )
                group.append(tool_result_message(call, result, reply.provider, reply.native))
                finished += 1
                if item.skill_name in self.skills:
                    skill = (item.skill_name, await inject_skill(self.skills, self.skill_injector, item.skill_name))
        except Cancelled:
            progress.interrupted = True
            for call in reply.calls[finished:]:
                cut = ToolResult(tool_name=call.name, call_id=call.call_id, content=CANCELLED_RESULT, is_error=True)
                group.append(tool_result_message(call, cut, reply.provider, reply.native))
            st.messages.extend(group)  # the calls and every result stay paired, for a resume
            raise
        st.messages.extend(group)
        if skill is not None:
            name, content = skill
            st.messages.append(system_message(f"Activated skill '{name}':\n{content}"))
            progress.account.skill_used = name
            yield SkillActivated(name)

    # -- compaction --------------------------------------------------------------------------

    async def maybe_compact(
        self, st: RunState, progress: StepProgress, tier: str, cancel: CancelToken | None
    ) -> AsyncIterator[AgentEvent]:
        window = self.engine.tiers.context_window_for(tier)
        budget = window - self.engine.window_budget(tier)
        if estimate_tokens(st.messages) <= self.compact_ratio * budget:
            return
        boundary = fold_boundary(st.messages, floor=FLOOR, keep_recent=self.keep_recent)
        if boundary is None:
            return
        middle = st.messages[FLOOR:boundary]
        summary = await self.engine.summarise(
            progress.account, transcript(middle), instructions=SUMMARY_INSTRUCTIONS,
            max_tokens=SUMMARY_MAX_TOKENS, cancel=cancel,
        )
        note = SUMMARY_PREFIX + summary.text if summary.text is not None else DROPPED_NOTE
        st.messages = [*st.messages[:FLOOR], system_message(note), *st.messages[boundary:]]
        progress.account.compacted = True
        yield StepsCompacted(len(middle), summary.tier, summary.model)
