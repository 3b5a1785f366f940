"""ConversationLoop: one turn of a persona conversation, as a stream of typed events.

A turn: retrieve typed memory -> manage history (compacting with a real small-tier
summary) -> route -> build the prompt within the tier's context budget -> stream
from the routed model, running the tool-call sub-loop -> write the turn to the
conversation, the episodic store and the TurnLog, exactly once.

Faults: a ``ProviderError`` from a model moves to the next model of the tier, then
to the next tier (see ``TierRegistry.fallback_chain``); a short ``Retry-After`` is
waited out first. Every attempt lands in the TurnLog. When nothing answers, the
turn ends with ``TurnFailed`` and status ``error``; the user's message is kept in
the conversation (``metadata.status == "error"``) so it can be retried.

Cancellation: cancel the task consuming ``turn()`` (or close the generator) and the
user message plus the partial reply are kept, marked ``interrupted``, with one
TurnLog line saying so. The loop holds no state between turns beyond the
``Conversation`` the caller owns.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from persona_runtime import _offline
from persona_runtime.events import (
    HistoryCompacted,
    RoutingDecided,
    SkillActivated,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TurnEvent,
    TurnFailed,
    TurnFinished,
)
from persona_runtime.history import HistoryWindow
from persona_runtime.pricing import cost_cents
from persona_runtime.prompt import PromptBuilder, RetrievedContext
from persona_runtime.routing.types import RoutingContext, RoutingDecision
from persona_runtime.fallback import (
    AllModelsFailed,
    AttemptFailed,
    attempt_record,
    failure_message,
    walk_fallback_chain,
)
from persona_runtime.secrets import redact
from persona_runtime.tooling import SIDE_EFFECT_TOOLS, ToolApprover, inject_skill, run_tool_call
from persona_runtime.turnlog.record import AttemptRecord, ToolCallRecord, TurnLog
from persona_runtime.turnlog.writer import TurnLogWriter

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation, ConversationMessage
    from persona.schema.persona import Persona
    from persona.schema.tools import ToolCall, ToolResult

    from persona_runtime.memory import PersonaMemory
    from persona_runtime.tier import ModelSlot, TierRegistry

__all__ = ["SIDE_EFFECT_TOOLS", "ConversationLoop", "ToolApprover", "prefill_local_models"]


SUMMARY_INSTRUCTIONS = (
    "Summarise the conversation below in at most 120 words for the assistant's own notes. "
    "Keep names, facts, decisions, open questions and anything the user asked to remember. "
    "Write plain sentences, no preamble."
)
#: Reply cap on local GGUF models, which ramble and run at tens of tokens per second.
LOCAL_REPLY_TOKENS = 384
CAP_NUDGE = "You have used the maximum number of tool calls for this turn. Answer now with what you have."
_NATIVE_FORMAT_PROVIDERS = frozenset(
    {"anthropic", "openai", "deepseek", "groq", "together", "nvidia", "openrouter", "cloudflare", "ollama", "local"}
)


@dataclass
class _TurnState:
    """Everything a turn accumulates; reset per attempt where noted."""

    started: float
    text: list[str] = field(default_factory=list)  # reset per attempt
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    ttft_ms: float | None = None
    tool_records: list[ToolCallRecord] = field(default_factory=list)
    attempts: list[AttemptRecord] = field(default_factory=list)
    skill_used: str | None = None
    history_compacted: bool = False
    decision: RoutingDecision | None = None
    tier: str | None = None
    slot: ModelSlot | None = None
    #: Set while a model attempt is in flight (so an interrupt can record it).
    attempt_started: float | None = None

    def add_usage(self, usage: Any, price: tuple[float, float] | None) -> None:
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        part = cost_cents(price, usage.prompt_tokens, usage.completion_tokens)
        self.cost = None if part is None or self.cost is None else round(self.cost + part, 6)


class ConversationLoop:
    """Runs turns for one persona. Build once (the composition root does), call ``turn`` per message."""

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
        max_tool_rounds: int = 5,
        reply_tokens: int = 1024,
        temperature: float = 0.0,
        retry_after_max_s: float = 10.0,
        tool_timeout_s: float = 60.0,
        tool_result_max_chars: int = 20_000,
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
        self.toolbox = toolbox
        self.skills = {s.name: s for s in skills}
        self.skill_injector = skill_injector
        self.history_window = history_window or HistoryWindow()
        self.turn_log = turn_log
        self.max_tool_rounds = max_tool_rounds
        self.reply_tokens = reply_tokens
        self.temperature = temperature
        self.retry_after_max_s = retry_after_max_s
        self.tool_timeout_s = tool_timeout_s
        self.tool_result_max_chars = tool_result_max_chars
        self._skill_index = _render_skill_index(list(self.skills.values()))

    # -- the turn ------------------------------------------------------------------------

    async def turn(
        self,
        conversation: Conversation,
        user_text: str,
        *,
        tier: str | None = None,
        approve: ToolApprover | None = None,
    ) -> AsyncIterator[TurnEvent]:
        """Run one turn; yields events and always ends with one ``TurnFinished``."""
        if not conversation.persona_id:
            raise ValueError("conversation.persona_id is required")
        state = _TurnState(started=time.perf_counter())
        turn_index = len(conversation.messages)
        finished = False
        try:
            context = await self._retrieve(user_text)
            history, compacted = await self._history(conversation)
            if compacted is not None:
                state.history_compacted = True
                yield compacted

            decision = self._route(conversation, user_text, tier)
            state.decision = decision
            yield RoutingDecided(decision)

            try:
                async for event in walk_fallback_chain(
                    self.tiers, decision.tier,
                    lambda tier_name, slot: self._attempt(state, tier_name, slot, context, history, user_text, approve),
                    state, retry_after_max_s=self.retry_after_max_s,
                    is_output=lambda e: isinstance(e, TextDelta), on_failed=state.text.clear,
                ):
                    yield event
            except AllModelsFailed:
                pass
            else:
                log = self._finish(conversation, turn_index, user_text, state, "ok")
                finished = True
                yield _finished_event(state, log)
                return
            # Every model failed.
            last = state.attempts[-1] if state.attempts else None
            message = failure_message(state.attempts)
            yield TurnFailed(message=message, error_type=(last.error_type if last else "ConfigError") or "ProviderError")
            log = self._finish(conversation, turn_index, user_text, state, "error", error=message)
            finished = True
            yield _finished_event(state, log)
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            if not finished:
                finished = True
                if state.slot is not None and state.attempt_started is not None:
                    state.attempts.append(
                        attempt_record(state.tier or "", state.slot, "interrupted", state.attempt_started)
                    )
                self._finish(conversation, turn_index, user_text, state, "interrupted")
            raise

    def record_interrupted(self, conversation: Conversation, user_text: str) -> TurnLog:
        """Record a turn cancelled before its first step ran (Ctrl-C right after Enter, before
        ``turn()``'s body started): the message is kept, marked interrupted, as if cut at once."""
        return self._finish(conversation, len(conversation.messages), user_text, _TurnState(started=time.perf_counter()), "interrupted")

    # -- one model attempt ---------------------------------------------------------------

    async def _attempt(
        self,
        state: _TurnState,
        tier_name: str,
        slot: ModelSlot,
        context: RetrievedContext,
        history: list[ConversationMessage],
        user_text: str,
        approve: ToolApprover | None,
    ) -> AsyncIterator[TurnEvent]:
        from persona.backends.errors import ProviderError

        try:
            backend = self.tiers.backend_for(slot)
        except ProviderError as exc:
            raise AttemptFailed(exc) from exc
        window = self.tiers.context_window_for(tier_name)
        reply_tokens = max(64, min(self.reply_tokens, window // 4))
        if slot.provider == "gguf":
            reply_tokens = min(reply_tokens, LOCAL_REPLY_TOKENS)  # small local models ramble
        price = self.tiers.price_for(tier_name, slot)
        use_tools = self.toolbox is not None and slot.provider != "gguf" and bool(self.toolbox.names())
        specs = self.toolbox.get_specs() if use_tools else None

        extra: list[ConversationMessage] = []
        skill_content: str | None = None
        rounds = 0
        final_round = False
        while True:
            prompt = self.prompt_builder.build(
                self.persona, context, history, user_text,
                max_tokens=window - reply_tokens, skill_index=self._skill_index if use_tools else "",
                skill_content=skill_content,
            )
            calls: dict[str, dict[str, str]] = {}
            round_text: list[str] = []
            try:
                stream = backend.chat_stream(
                    [*prompt.messages, *extra],
                    tools=None if final_round else specs,
                    temperature=self.temperature,
                    max_tokens=reply_tokens,
                )
                async for chunk in stream:
                    if chunk.delta:
                        if state.ttft_ms is None:
                            state.ttft_ms = (time.perf_counter() - state.started) * 1000
                        state.text.append(chunk.delta)
                        round_text.append(chunk.delta)
                        yield TextDelta(chunk.delta)
                    if chunk.tool_call_delta is not None and not final_round:
                        d = chunk.tool_call_delta
                        slot_acc = calls.setdefault(d.call_id, {"name": "", "args": ""})
                        slot_acc["name"] += d.name_delta
                        slot_acc["args"] += d.arguments_delta
                    if chunk.is_final:
                        state.add_usage(chunk.usage, price)
            except ProviderError as exc:
                raise AttemptFailed(exc) from exc
            except (OSError, ValueError, RuntimeError) as exc:
                # A transport or parsing fault the backend did not map: treat it as this model failing.
                raise AttemptFailed(exc) from exc

            if not calls and not state.text:
                from persona.backends.errors import EmptyCompletionError

                raise AttemptFailed(EmptyCompletionError("the model returned an empty reply", context={"model": slot.model}))
            if not calls or final_round:
                return
            if rounds >= self.max_tool_rounds:
                extra.append(_system(CAP_NUDGE))
                final_round = True
                continue
            rounds += 1
            tool_calls = [_parse_call(cid, acc) for cid, acc in calls.items()]
            native = bool(getattr(backend, "supports_native_tools", False))
            if native:
                extra.append(_assistant_with_calls("".join(round_text), tool_calls))
            for call in tool_calls:
                yield ToolCallStarted(call.call_id, call.name, dict(call.args))
                result, record, approved = await self._run_tool(call, approve)
                state.tool_records.append(record)
                yield ToolCallFinished(
                    call.call_id, call.name, redact(result.content), result.is_error, record.duration_ms, approved
                )
                extra.append(_format_result(call, result, backend.provider_name, native))
                skill_name = (result.data or {}).get("skill_name") if isinstance(result.data, dict) else None
                if skill_name and not result.is_error and skill_name in self.skills:
                    skill_content = await inject_skill(self.skills, self.skill_injector, skill_name)
                    state.skill_used = skill_name
                    yield SkillActivated(skill_name)

    async def _run_tool(self, call: ToolCall, approve: ToolApprover | None) -> tuple[ToolResult, ToolCallRecord, bool]:
        started = time.perf_counter()
        result, approved = await run_tool_call(
            self.toolbox, call, approve=approve, timeout_s=self.tool_timeout_s, max_chars=self.tool_result_max_chars
        )
        record = ToolCallRecord(name=call.name, ok=not result.is_error, duration_ms=(time.perf_counter() - started) * 1000)
        return result, record, approved

    # -- before generation ---------------------------------------------------------------

    async def _retrieve(self, user_text: str) -> RetrievedContext:
        if self.memory is None:
            return RetrievedContext()
        # Chroma + the embedder are blocking; keep the event loop (and Ctrl-C) live.
        return await asyncio.to_thread(self.memory.retrieve, user_text)

    async def _history(self, conversation: Conversation) -> tuple[list[ConversationMessage], HistoryCompacted | None]:
        window = self.history_window
        compacted = None
        boundary = window.due(conversation.messages, conversation.compacted_up_to)
        if boundary is not None:
            folded = conversation.messages[conversation.compacted_up_to : boundary]
            # The conversation changes only once the summary is in: a Ctrl-C here leaves it as it was.
            summary, tier_name, model = await self._summarise(folded)
            if summary is not None:
                window.fold(conversation, boundary, summary)
                compacted = HistoryCompacted(len(folded), tier_name, model)
            # else: the small tier could not summarise; send it all and let the budget reducer trim.
        return _sendable(window.visible(conversation)), compacted

    async def _summarise(self, messages: Sequence[ConversationMessage]) -> tuple[str | None, str, str]:
        from persona.backends.errors import ProviderError

        transcript = "\n".join(f"{m.role.upper()}: {_text_of(m)}" for m in messages if m.metadata.get("status") != "error")
        request = [_system(SUMMARY_INSTRUCTIONS), _user(transcript)]
        for tier_name, slot in self.tiers.fallback_chain("small"):
            try:
                response = await self.tiers.backend_for(slot).chat(request, temperature=0.0, max_tokens=256)
            except ProviderError:
                continue
            if response.content.strip():
                return response.content.strip(), tier_name, slot.model
        return None, "", ""

    def _route(self, conversation: Conversation, user_text: str, forced: str | None) -> RoutingDecision:
        if forced and forced != "auto":
            return self._decision(forced, f"forced → {forced}")
        override = getattr(getattr(self.persona, "routing", None), "tier_for_generation", "auto")
        if override != "auto":
            return self._decision(override, f"persona_override → {override}")
        if self.router is None:
            return self._decision("mid", "no router → mid")
        from persona_runtime.routing import classify_message

        traits = classify_message(user_text, self.persona)
        ctx = RoutingContext(
            estimated_input_tokens=len(user_text) // 4,
            is_first_turn=conversation.turn_count == 0,
            is_identity_sensitive=traits.is_identity_sensitive,
            is_boilerplate=traits.is_boilerplate,
            conversation_phase="opening" if conversation.turn_count < 2 else "middle",
        )
        return self.router.route(ctx)

    def _decision(self, tier: str, rationale: str) -> RoutingDecision:
        return RoutingDecision(tier=tier, model=self.tiers.model_name_for(tier), rationale=rationale, candidates_considered=(tier,))

    # -- after generation ----------------------------------------------------------------

    def _finish(
        self, conversation: Conversation, turn_index: int, user_text: str, state: _TurnState, status: str, error: str | None = None
    ) -> TurnLog:
        """Record the turn: conversation, episodic memory (complete turns only), TurnLog. Runs once."""
        now = datetime.now(UTC)
        text = "".join(state.text)
        meta = {"status": status}
        conversation.messages.append(_user(user_text, created_at=now, metadata=dict(meta)))
        if status != "error":
            reply_meta = {**meta, "tier": state.tier or "", "model": state.slot.model if state.slot else ""}
            conversation.messages.append(_assistant(text, created_at=now, metadata=reply_meta))
        if status == "ok" and self.memory is not None:
            self.memory.remember_turn(user_text, text, conversation_id=conversation.conversation_id)
        slot = state.slot
        log = TurnLog(
            conversation_id=conversation.conversation_id,
            turn_index=turn_index,
            persona_id=self.persona_id,
            tier=state.tier,
            provider=slot.provider if slot else None,
            model=slot.model if slot else None,
            prompt_tokens=state.prompt_tokens,
            completion_tokens=state.completion_tokens,
            cost_cents=state.cost,
            latency_ms=round((time.perf_counter() - state.started) * 1000, 3),
            ttft_ms=round(state.ttft_ms, 3) if state.ttft_ms is not None else None,
            tool_calls=tuple(state.tool_records),
            skill_used=state.skill_used,
            history_compacted=state.history_compacted,
            routing=state.decision.to_record() if state.decision else None,
            attempts=tuple(state.attempts),
            status=status,  # type: ignore[arg-type]
            error=redact(error) if error else None,
            timestamp=now,
        )
        if self.turn_log is not None:
            self.turn_log.write(log)
        return log


# -- helpers -------------------------------------------------------------------------------


def _sendable(messages: list[ConversationMessage]) -> list[ConversationMessage]:
    """History as the model sees it: failed user messages (kept for /retry) are not sent."""
    return [m for m in messages if not (m.role == "user" and m.metadata.get("status") == "error")]


def prefill_local_models(persona: Persona, tiers: TierRegistry, prompt_builder: PromptBuilder | None = None) -> int:
    """Read the system message every turn will start with into each local model a tier uses
    (:meth:`LlamaCppBackend.prefill`), so the first reply does not wait for it. Local tiers get
    no tools, hence no skill index: exactly what :meth:`ConversationLoop.turn` sends them.
    Blocking; run it on a thread of its own once the models are loading. Returns tokens read."""
    system = (prompt_builder or PromptBuilder()).system_message(persona)
    seen: set[int] = set()
    read = 0
    for _name, _serving, slot in tiers.describe():
        if slot.provider != "gguf":
            continue
        try:
            backend = tiers.backend_for(slot)
        except Exception:  # noqa: BLE001, S112 - a model that cannot load is reported by the turn that needs it
            continue
        prefill = getattr(backend, "prefill", None)
        if prefill is not None and id(backend) not in seen:
            seen.add(id(backend))
            read += prefill([system])
    return read


def _render_skill_index(skills: list[Any]) -> str:
    if not skills:
        return ""
    from persona.skills import render_skill_index

    return render_skill_index(skills)


def _finished_event(state: _TurnState, log: TurnLog) -> TurnFinished:
    return TurnFinished(
        status=log.status, text="".join(state.text), tier=log.tier, provider=log.provider, model=log.model,
        prompt_tokens=log.prompt_tokens, completion_tokens=log.completion_tokens, cost_cents=log.cost_cents,
        latency_ms=log.latency_ms, ttft_ms=log.ttft_ms, log=log,
    )


def _parse_call(call_id: str, acc: dict[str, str]) -> ToolCall:
    from persona.schema.tools import ToolCall

    raw = acc["args"].strip() or "{}"
    try:
        args = json.loads(raw)
        if not isinstance(args, dict):
            raise ValueError("arguments are not an object")
        return ToolCall(name=acc["name"], args=args, call_id=call_id)
    except ValueError:
        return ToolCall(name=acc["name"], args={}, call_id=call_id, truncated=True)


def _format_result(call: ToolCall, result: ToolResult, provider: str, native: bool) -> ConversationMessage:
    from persona.tools import format_tool_result

    fmt_provider = provider if provider in _NATIVE_FORMAT_PROVIDERS else "openai"
    return format_tool_result(call, result, provider_name=fmt_provider, native=native)


def _text_of(message: ConversationMessage) -> str:
    content = message.content
    return content if isinstance(content, str) else " ".join(getattr(p, "text", "") for p in content)


def _message(role: str, content: str, created_at: datetime | None = None, metadata: dict[str, str] | None = None, **extra: Any) -> ConversationMessage:
    from persona.schema.conversation import ConversationMessage

    return ConversationMessage(
        role=role, content=content, created_at=created_at or datetime.now(UTC), metadata=metadata or {}, **extra  # type: ignore[arg-type]
    )


def _system(content: str) -> ConversationMessage:
    return _message("system", content)


def _user(content: str, **kw: Any) -> ConversationMessage:
    return _message("user", content, **kw)


def _assistant(content: str, **kw: Any) -> ConversationMessage:
    return _message("assistant", content, **kw)


def _assistant_with_calls(text: str, calls: list[ToolCall]) -> ConversationMessage:
    return _message("assistant", text, tool_calls=calls)
