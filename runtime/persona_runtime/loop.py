"""ConversationLoop: one turn of a persona conversation, as a stream of typed events.

A turn: retrieve typed memory -> manage history (compacting with a real small-tier
summary) -> route -> build the prompt within the tier's context budget -> stream
from the routed model through the shared engine (:mod:`persona_runtime.engine`), running
the tool-call sub-loop -> write the turn to the conversation and the episodic store,
exactly once, and publish ``TurnFinished``, whose record the TurnLog subscriber writes.

Faults: a model fault moves to the next model of the tier, then to the next tier (see
``TierRegistry.fallback_chain``); a short ``Retry-After`` is waited out first. Every
attempt, and every request's tokens (summaries included), lands in the TurnLog. When
nothing answers, or the turn hits a bug, it ends with ``TurnFailed`` and status ``error``;
the user's message is kept in the conversation (``metadata.status == "error"``) so it can
be retried.

Cancellation: fire the ``cancel`` token (the turn ends ``interrupted``, normally), or
cancel the task consuming ``turn()`` / close the generator (recorded, then re-raised).
Either way the user message plus the partial reply are kept, marked ``interrupted``, with
one TurnLog line saying so. The loop holds no state between turns beyond the
``Conversation`` the caller owns.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from persona_runtime import _offline
from persona_runtime.conversations import preview
from persona_runtime.engine.account import CallAccount
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.engine.messages import (
    assistant_message,
    assistant_with_calls,
    system_message,
    text_of,
    tool_result_message,
    user_message,
)
from persona_runtime.engine.reply import ModelReply
from persona_runtime.engine.stream import Cancelled
from persona_runtime.engine.tools import ToolOutcome
from persona_runtime.events import (
    HistoryCompacted,
    Notice,
    RoutingDecided,
    SkillActivated,
    TextDelta,
    ToolCallFinished,
    TurnContent,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from persona_runtime.fallback import AllModelsFailed, failure_message, short_error
from persona_runtime.history import HistoryWindow
from persona_runtime.memory import recalled_event
from persona_runtime.memory_guard import memory_notice
from persona_runtime.prompt import PromptBuilder, RetrievedContext, fit_recall
from persona_runtime.recorder import EventBus, Subscriber
from persona_runtime.routing.chat_turn import route_chat_turn
from persona_runtime.secrets import redact
from persona_runtime.spend import SpendCapReached
from persona_runtime.tooling import SIDE_EFFECT_TOOLS, ToolApprover, inject_skill
from persona_runtime.turnlog.record import TurnLog
from persona_runtime.turnlog.writer import TurnLogWriter

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation, ConversationMessage
    from persona.schema.persona import Persona

    from persona_runtime.cancel import CancelToken
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.tier import ModelSlot, TierRegistry

__all__ = ["SIDE_EFFECT_TOOLS", "ConversationLoop", "MessageTooLong", "ToolApprover", "sendable_history"]


SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below in at most 120 words for the assistant's own notes. "
    "Keep names, facts, decisions, open questions and anything the user asked to remember. "
    "Write plain sentences, no preamble."
)
SUMMARY_MAX_TOKENS = 256
CAP_NUDGE = "You have used the maximum number of tool calls for this turn. Answer now with what you have."


class MessageTooLong(ValueError):
    """The person's message is longer than every configured model can read."""


class ConversationLoop:
    """Runs turns for one persona. Build once (the session does), call ``turn`` per message."""

    def __init__(
        self,
        *,
        persona: Persona,
        tiers: TierRegistry,
        memory: PersonaMemory | None = None,
        router: Any = None,
        prompt_builder: PromptBuilder | None = None,
        toolbox: Any = None,
        skills: Sequence[Any] = (),
        skill_injector: Any = None,
        history_window: HistoryWindow | None = None,
        turn_log: TurnLogWriter | None = None,
        subscribers: Sequence[Subscriber] = (),
        max_tool_rounds: int = 5,
        options: EngineOptions = EngineOptions(),
    ) -> None:
        _offline.install()
        if max_tool_rounds < 0:
            raise ValueError("max_tool_rounds must be >= 0")
        self.persona = persona
        self.persona_id = persona.persona_id or "persona"
        self.tiers = tiers
        self.memory = memory
        self.router = router
        self.prompt_builder = prompt_builder or PromptBuilder()
        self.skills = {s.name: s for s in skills}
        self.skill_injector = skill_injector
        self.history_window = history_window or HistoryWindow()
        self.max_tool_rounds = max_tool_rounds
        self.engine, self.tools = options.build(tiers, toolbox)
        self.events = EventBus(subscribers, turn_log=turn_log)
        self._skill_index = _render_skill_index(list(self.skills.values()))
        self._pending_notices: list[str] = []

    @property
    def toolbox(self) -> Any:
        return self.tools.toolbox

    # -- the turn ------------------------------------------------------------------------

    async def turn(
        self,
        conversation: Conversation,
        user_text: str,
        *,
        tier: str | None = None,
        approve: ToolApprover | None = None,
        cancel: CancelToken | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Run one turn; yields events and always ends with one ``TurnFinished``."""
        if not conversation.persona_id:
            raise ValueError("conversation.persona_id is required")
        account = CallAccount()
        text: list[str] = []  # this attempt's reply; a fallback starts it again
        tool_msgs: list[ConversationMessage] = []  # this attempt's tool calls and results, for the file
        turn_index = len(conversation.messages)
        publish = self.events.publish
        failure: TurnFailed | None = None
        status = "ok"
        finished = False
        try:
            try:
                async for event in self._run(conversation, user_text, tier, approve, cancel, account, text, tool_msgs):
                    yield publish(event)
            except AllModelsFailed:
                last = account.attempts[-1] if account.attempts else None
                error_type = (last.error_type if last else "ConfigError") or "ProviderError"
                failure = TurnFailed(message=failure_message(account.attempts), error_type=error_type)
            except Cancelled:
                status = "interrupted"
                account.close_open_attempt()
            except MessageTooLong as exc:
                failure = TurnFailed(message=str(exc), error_type="MessageTooLong")
            except SpendCapReached as exc:  # refused before the call: nothing was sent
                account.attempt_started = None
                failure = TurnFailed(message=exc.message, error_type="SpendCapReached")
            except Exception as exc:  # noqa: BLE001 - a fault outside any model ends this turn, not the session
                failure = TurnFailed(message=f"internal error: {redact(short_error(exc))}", error_type=type(exc).__name__)
            if failure is not None:
                status = "error"
                yield publish(failure)
            done = self._finish(
                conversation, turn_index, user_text, account, text, status, error=failure and failure.message, tool_msgs=tool_msgs
            )
            finished = True
            publish(done)  # the TurnLog is written now, even if the consumer leaves during a notice
            while self._pending_notices:
                yield publish(Notice(self._pending_notices.pop(0)))
            yield done
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            if not finished:
                finished = True
                account.close_open_attempt()
                publish(self._finish(conversation, turn_index, user_text, account, text, "interrupted", tool_msgs=tool_msgs))
            raise

    def record_interrupted(self, conversation: Conversation, user_text: str) -> TurnLog:
        """Record a turn cancelled before its first step ran (Ctrl-C right after Enter, before
        ``turn()``'s body started): the message is kept, marked interrupted, as if cut at once."""
        event = self._finish(conversation, len(conversation.messages), user_text, CallAccount(), [], "interrupted")
        return self.events.publish(event).log

    async def _run(
        self,
        conversation: Conversation,
        user_text: str,
        forced: str | None,
        approve: ToolApprover | None,
        cancel: CancelToken | None,
        account: CallAccount,
        text: list[str],
        tool_msgs: list[ConversationMessage],
    ) -> AsyncIterator[TurnEvent]:
        self._check_length(user_text)
        try:
            context = await self._retrieve(user_text)
        except Exception as exc:  # noqa: BLE001 - memory is help, not a precondition: answer without it
            context = RetrievedContext()
            yield Notice(memory_notice("could not recall", self.memory, exc))
        else:
            if self.memory is not None:
                recalled = recalled_event(context)
                account.recalled = recalled.ids
                yield recalled
        history, compacted = await self._history(conversation, account, cancel)
        if compacted is not None:
            yield compacted
        decision = route_chat_turn(self.persona, self.tiers, self.router, conversation, user_text, forced)
        account.routing = decision
        yield RoutingDecided(decision)
        async for event in self.engine.walk(
            account, decision.tier,
            lambda tier_name, slot: self._attempt(
                account, tier_name, slot, context, history, user_text, approve, cancel, text, tool_msgs
            ),
            cancel=cancel, is_output=lambda e: isinstance(e, TextDelta), on_failed=text.clear,
        ):
            yield event

    # -- one model attempt ---------------------------------------------------------------

    async def _attempt(
        self,
        account: CallAccount,
        tier_name: str,
        slot: ModelSlot,
        context: RetrievedContext,
        history: list[ConversationMessage],
        user_text: str,
        approve: ToolApprover | None,
        cancel: CancelToken | None,
        text: list[str],
        extra: list[ConversationMessage],
    ) -> AsyncIterator[TurnEvent]:
        window = self.tiers.context_window_for(tier_name)
        reply_tokens, _setting = self.engine.reply_budget(tier_name, slot)
        recall_budget = self.engine.recall_budget(slot)
        if recall_budget is not None:
            context = fit_recall(context, recall_budget)
        if self.memory is not None and (sent := recalled_event(context)).ids != account.recalled:
            account.recalled = sent.ids  # the TurnLog names what this model was sent
            yield sent
        specs = self.tools.specs_for(slot)
        extra.clear()  # the caller's list, so the turn's file line holds the tool calls; a fallback starts again
        skill_content: str | None = None
        seen: Counter[str] = Counter()
        rounds = 0
        final_round = False
        while True:
            prompt = self.prompt_builder.build(
                self.persona, context, history, user_text,
                max_tokens=window - reply_tokens, skill_index=self._skill_index if specs else "",
                skill_content=skill_content,
            )
            reply: ModelReply | None = None
            async for item in self.engine.request(
                account, tier_name, slot, [*prompt.messages, *extra],
                tools=None if final_round else specs, cancel=cancel,
                accept_calls=not final_round, allow_empty=bool(text),
            ):
                if isinstance(item, ModelReply):
                    reply = item
                    continue
                if isinstance(item, TextDelta):
                    text.append(item.text)
                yield item
            assert reply is not None
            if not reply.calls or final_round:
                return
            if rounds >= self.max_tool_rounds:
                extra.append(system_message(CAP_NUDGE))
                final_round = True
                continue
            rounds += 1
            if reply.native:
                extra.append(assistant_with_calls(reply.text, reply.calls))
            activated: str | None = None
            async for item in self.tools.run(reply.calls, seen, approve=approve, cancel=cancel):
                if isinstance(item, ToolOutcome):
                    account.tool_records.append(item.record)
                    extra.append(tool_result_message(item.call, item.result, reply.provider, reply.native))
                    if item.skill_name in self.skills:
                        skill_content = await inject_skill(self.skills, self.skill_injector, item.skill_name)
                        account.skill_used = activated = item.skill_name
                    continue
                yield item
                if isinstance(item, ToolCallFinished) and activated is not None:
                    yield SkillActivated(activated)
                    activated = None

    # -- before generation ---------------------------------------------------------------

    def _check_length(self, user_text: str) -> None:
        """A message no model could read fails at once, before memory embeds megabytes of it."""
        estimate = len(user_text) // 4  # the routers' estimate too
        largest = max(self.tiers.context_window_for(name) for name in self.tiers.configured_tier_names)
        if estimate > largest:
            raise MessageTooLong(
                f"your message is about {estimate:,} tokens, more than the largest context window here "
                f"({largest:,} tokens); shorten it or send it in parts"
            )

    async def _retrieve(self, user_text: str) -> RetrievedContext:
        if self.memory is None:
            return RetrievedContext()
        # Chroma + the embedder are blocking; keep the event loop (and Ctrl-C) live.
        return await asyncio.to_thread(self.memory.retrieve, user_text)

    async def _history(
        self, conversation: Conversation, account: CallAccount, cancel: CancelToken | None
    ) -> tuple[list[ConversationMessage], HistoryCompacted | None]:
        window = self.history_window
        compacted = None
        boundary = window.due(conversation.messages, conversation.compacted_up_to)
        if boundary is not None:
            folded = conversation.messages[conversation.compacted_up_to : boundary]
            transcript = "\n".join(
                f"{m.role.upper()}: {text_of(m)}" for m in folded if m.metadata.get("status") != "error"
            )
            # The conversation changes only once the summary is in: a Ctrl-C here leaves it as it was.
            summary = await self.engine.summarise(
                account, transcript, instructions=SUMMARY_INSTRUCTIONS, max_tokens=SUMMARY_MAX_TOKENS, cancel=cancel
            )
            if summary.text is not None:
                window.fold(conversation, boundary, summary.text)
                account.compacted = True
                compacted = HistoryCompacted(len(folded), summary.tier or "", summary.model or "")
            # else: the small tier could not summarise; send it all and let the budget reducer trim.
        return sendable_history(window.visible(conversation)), compacted

    # -- after generation ----------------------------------------------------------------

    def _finish(
        self,
        conversation: Conversation,
        turn_index: int,
        user_text: str,
        account: CallAccount,
        text: list[str],
        status: str,
        error: str | None = None,
        tool_msgs: Sequence[ConversationMessage] = (),
    ) -> TurnFinished:
        """Record the turn in the conversation and episodic memory (complete turns only). Runs once."""
        now = datetime.now(UTC)
        reply = "".join(text)
        meta = {"status": status}
        added = len(conversation.messages)
        chunk_id: str | None = None
        conversation.messages.append(user_message(user_text, created_at=now, metadata=dict(meta)))
        if status != "error":
            reply_meta = {**meta, "tier": account.tier or "", "model": account.slot.model if account.slot else ""}
            conversation.messages.append(assistant_message(reply, created_at=now, metadata=reply_meta))
        if status == "ok" and self.memory is not None:
            try:
                chunk_id = self.memory.remember_turn(user_text, reply, conversation_id=conversation.conversation_id)
            except Exception as exc:  # noqa: BLE001 - the turn is kept and logged all the same
                self._pending_notices.append(memory_notice("could not remember this turn", self.memory, exc))
        log = account.turn_log(
            conversation_id=conversation.conversation_id, turn_index=turn_index, persona_id=self.persona_id,
            status=status, error=error, timestamp=now,
        ).model_copy(update={"preview": preview(user_text)})
        content = TurnContent(
            messages=tuple(conversation.messages[added:]), tool_messages=tuple(m for m in tool_msgs if m.role != "system"),
            chunk_id=chunk_id, summary=conversation.compacted_summary if account.compacted else None,
            compacted_up_to=conversation.compacted_up_to,
        )
        return TurnFinished(
            status=log.status, text=reply, tier=log.tier, provider=log.provider, model=log.model,
            prompt_tokens=log.prompt_tokens, completion_tokens=log.completion_tokens, cost_cents=log.cost_cents,
            latency_ms=log.latency_ms, ttft_ms=log.ttft_ms, log=log, content=content,
        )


# -- helpers -------------------------------------------------------------------------------


def sendable_history(messages: list[ConversationMessage]) -> list[ConversationMessage]:
    """History as the model sees it: failed user messages (kept for /retry) are not sent."""
    return [m for m in messages if not (m.role == "user" and m.metadata.get("status") == "error")]


def _render_skill_index(skills: list[Any]) -> str:
    if not skills:
        return ""
    from persona.skills import render_skill_index

    return render_skill_index(skills)
