"""AgenticLoop: a task, worked step by step, as a stream of typed events.

Each step is one streamed model call that does one of four things:

* **calls tools** (native tool calls; they win over any marker in the text): the calls
  run (side-effecting ones only with approval), results go back, next step;
* **asks** ``[ASK_USER] question``: ``ask(question)`` is awaited; an answer continues the
  run, ``None`` (or no ``ask``) stops it as ``needs_input``, resumable later;
* **answers** ``[FINAL] answer``: the run is ``completed`` with that output;
* **keeps reasoning** (no marker, no tools): a "continue" nudge, next step.

Routing per step: the first step of a run (and the first after a resume) and every
step after a reasoning step go to **frontier** (planning, getting unstuck); steps after
tool results or an answer go to **mid**. A forced ``tier`` or the persona's
``routing.tier_for_generation`` overrides this. A model failure falls back along
``TierRegistry.fallback_chain`` (a short ``Retry-After`` is waited out first).

Terminal status (``Run.status``) is authoritative: ``completed``; ``max_steps_reached``
(then one tool-less call makes a best-effort answer, labelled as such); ``needs_input``;
``cancelled``; ``error`` (every model failed, or a bug; with the message). Provider faults
never escape as exceptions: the last event is always ``RunFinished`` with the run.

Loop guard: the ``loop_guard``-th identical tool call (same name, same arguments) in a
run, and every repeat after it, is not run; the model gets an error result saying so and
the UI a ``LoopGuardTriggered``. The run goes on (``max_steps`` still bounds it).

Cancellation: ``CancelToken.cancel()`` is checked before each step and between stream
deltas, and it interrupts a silent stream, a running tool, an approval or a question at
once. Cancelling the task that consumes ``run()`` works too: the run is saved as
``cancelled`` before the cancellation propagates.

Records: the :class:`Run` is saved to ``runs_dir`` (and locked there while this process works
on it, so a killed run reads as ``abandoned``) after every step; each step writes one
``TurnLog`` (``kind="agent"``, ``run_id``, ``step``); the outcome goes to episodic memory
(except for a run paused on a question).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from persona_runtime import _offline
from persona_runtime.agentic.cancel import CancelToken
from persona_runtime.agentic.compaction import (
    DROPPED_NOTE,
    SUMMARY_INSTRUCTIONS,
    SUMMARY_PREFIX,
    estimate_tokens,
    fold_boundary,
    transcript,
)
from persona_runtime.agentic.events import (
    AgentEvent,
    AnswerDelta,
    AskUser,
    FinalAnswer,
    LoopGuardTriggered,
    RunFinished,
    RunStarted,
    StepFinished,
    StepsCompacted,
    StepStarted,
    ThinkingDelta,
    UserAnswered,
)
from persona_runtime.agentic.markers import MarkerKind, MarkerScanner, ScanResult
from persona_runtime.agentic.run import Run, RunBusyError, RunLock, RunStatus, Step, StepToolCall, StepType
from persona_runtime.events import SkillActivated, ToolCallFinished, ToolCallStarted
from persona_runtime.tooling import ToolApprover, error_result, inject_skill, run_tool_call
from persona_runtime.fallback import (
    AllModelsFailed,
    AttemptFailed,
    attempt_record,
    failure_message,
    short_error,
    walk_fallback_chain,
)
from persona_runtime.loop import _format_result, _parse_call
from persona_runtime.pricing import cost_cents
from persona_runtime.prompt import PromptBuilder, RetrievedContext
from persona_runtime.routing.types import RoutingDecision
from persona_runtime.secrets import redact
from persona_runtime.turnlog.record import AttemptRecord, ToolCallRecord, TurnLog, new_id
from persona_runtime.turnlog.writer import TurnLogWriter

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.persona import Persona
    from persona.schema.tools import ToolCall, ToolResult

    from persona_runtime.memory import PersonaMemory
    from persona_runtime.tier import ModelSlot, TierRegistry

__all__ = ["AGENT_INSTRUCTIONS", "AgenticLoop", "Asker", "ToolApprover"]

T = TypeVar("T")
Asker = Callable[[str], Awaitable[str | None]]

AGENT_INSTRUCTIONS = """\
You are working on a task for the person, step by step. Each of your replies is one step. In each step do exactly one of these:
1. Call one or more tools, when tools are available and you need information or an action.
2. Ask the person one clear question, only when you cannot go on without the answer. Write it as:
[ASK_USER] your question
3. Give the finished result, written as:
[FINAL] your answer
Everything after [FINAL] is shown to the person as the result; markdown is fine.
4. Think briefly about the plan (no marker); you continue in the next step.
Keep steps short. Do not repeat a tool call you have already made with the same arguments."""
CONTINUE_NUDGE = (
    "Continue with the task. Call a tool, ask one question with [ASK_USER], or give the result with [FINAL]."
)
BEST_EFFORT_NUDGE = (
    "You have reached the step limit for this task. Do not call tools and do not ask questions. "
    "Give your best answer now from what you already have, and say plainly what is missing or unverified."
)
LOOP_GUARD_RESULT = (
    "Not run: you have already called {name} with exactly these arguments {previous} time(s); the result "
    "will not change. Use the earlier result, try different arguments or another approach, or give the "
    "result with [FINAL]."
)
CANCELLED_RESULT = "Cancelled by the person before it finished."
NO_TOOLS_RESULT = "No tools are available in this run; continue without tools."
EMPTY_REPLY = "(no reply)"
_FLOOR = 2  # [system, TASK]


class _Cancelled(Exception):
    """Internal: the cancel token fired."""


class _StepFailed(Exception):
    """Internal: every model in the chain failed for a step."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass
class _Reply:
    """What one successful model call produced."""

    text: str
    scan: ScanResult
    calls: list[ToolCall]
    native: bool
    provider: str


@dataclass
class _StepAcc:
    """A step in progress (mutable); becomes a frozen :class:`Step`."""

    index: int
    started: float
    started_at: datetime
    best_effort: bool = False
    type: StepType | None = None
    tier: str | None = None
    slot: ModelSlot | None = None
    rationale: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    ttft_ms: float | None = None
    latency_ms: float | None = None
    attempts: list[AttemptRecord] = field(default_factory=list)
    attempt_started: float | None = None
    tool_calls: list[StepToolCall] = field(default_factory=list)
    thinking: str = ""
    content: str = ""
    question: str | None = None
    answer: str | None = None
    skill_used: str | None = None
    compacted: bool = False
    interrupted: bool = False
    error: str | None = None

    def add_usage(self, usage: Any, price: tuple[float, float] | None) -> None:
        if usage is None:
            return
        self.prompt_tokens += usage.prompt_tokens
        self.completion_tokens += usage.completion_tokens
        part = cost_cents(price, usage.prompt_tokens, usage.completion_tokens)
        self.cost = None if part is None or self.cost is None else round(self.cost + part, 6)


@dataclass
class _RunState:
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
    current: _StepAcc | None = None

    @property
    def model_steps(self) -> int:
        return sum(1 for s in self.steps if not s.best_effort)

    @property
    def previous_type(self) -> StepType | None:
        return self.steps[-1].type if self.steps else None


class AgenticLoop:
    """Runs agent tasks for one persona. Build once; call :meth:`run` per task (or resume)."""

    def __init__(
        self,
        *,
        persona: Persona,
        tiers: TierRegistry,
        memory: PersonaMemory | None = None,
        toolbox: Any = None,
        skills: Sequence[Any] = (),
        skill_injector: Any = None,
        prompt_builder: PromptBuilder | None = None,
        turn_log: TurnLogWriter | None = None,
        runs_dir: Path | None = None,
        persona_path: Path | None = None,
        max_steps: int = 8,
        loop_guard: int = 3,
        reply_tokens: int = 1024,
        temperature: float = 0.0,
        retry_after_max_s: float = 10.0,
        tool_timeout_s: float = 60.0,
        tool_result_max_chars: int = 20_000,
        compact_ratio: float = 0.8,
        keep_recent: int = 4,
    ) -> None:
        _offline.install()
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if loop_guard < 0:
            raise ValueError("loop_guard must be >= 0 (0 turns it off)")
        if not 0 < compact_ratio <= 1:
            raise ValueError("compact_ratio must be in (0, 1]")
        self.persona = persona
        self.persona_id = persona.persona_id or "persona"
        self.tiers = tiers
        self.memory = memory
        self.toolbox = toolbox
        self.skills = {s.name: s for s in skills}
        self.skill_injector = skill_injector
        self.prompt_builder = prompt_builder or PromptBuilder()
        self.turn_log = turn_log
        self.runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.persona_path = str(Path(persona_path).resolve()) if persona_path is not None else None
        self.max_steps = max_steps
        self.loop_guard = loop_guard
        self.reply_tokens = reply_tokens
        self.temperature = temperature
        self.retry_after_max_s = retry_after_max_s
        self.tool_timeout_s = tool_timeout_s
        self.tool_result_max_chars = tool_result_max_chars
        self.compact_ratio = compact_ratio
        self.keep_recent = keep_recent

    # -- the run -------------------------------------------------------------------------

    async def run(
        self,
        task: str | None = None,
        *,
        ask: Asker | None = None,
        cancel: CancelToken | None = None,
        resume: Run | None = None,
        approve: ToolApprover | None = None,
        tier: str | None = None,
        max_steps: int | None = None,
    ) -> AsyncIterator[AgentEvent]:
        """Run ``task`` (or continue ``resume``); yields events, the last one ``RunFinished``.

        ``max_steps`` (default: the loop's) is the number of model steps this call may take;
        on resume it is added to the steps already taken. Raises ``ValueError`` only for a
        bad call (empty task, both or neither of task and resume, a run that cannot resume),
        before any event; :class:`RunBusyError` (a ``ValueError``) when another process holds
        the run. With ``runs_dir`` set, the run is locked (:class:`RunLock`) until it ends.
        """
        st = self._prepare(task, resume, max_steps)
        lock = self._hold(st.run, resumed=resume is not None)
        done = False
        try:
            yield RunStarted(st.run.id, st.run.task, self.persona_id, st.limit, resumed=st.resumed)
            status: RunStatus | None = None
            try:
                if not st.messages:
                    st.messages = await self._floor(st.run.task)
                self._save(st)
                if st.pending_question is not None:
                    index = st.steps[-1].index if st.steps else 0
                    async for event in self._await_answer(st, index, st.pending_question, ask, cancel, _answer_to(st)):
                        yield event
                    self._save(st)
                    if st.pending_question is not None:
                        status = RunStatus.NEEDS_INPUT
                while status is None:
                    if cancel is not None and cancel.is_cancelled:
                        raise _Cancelled
                    if st.model_steps >= st.limit:
                        status = RunStatus.MAX_STEPS_REACHED
                        break
                    async for event in self._step(st, ask, cancel, approve, tier):
                        yield event
                    status = st.stop
                if status is RunStatus.MAX_STEPS_REACHED:
                    async for event in self._best_effort(st, cancel):
                        yield event
            except _Cancelled:
                status = RunStatus.CANCELLED
            except _StepFailed as failed:
                status, st.error = RunStatus.ERROR, failed.message
            except Exception as exc:  # noqa: BLE001 - a bug ends the run with status error, never an exception
                status, st.error = RunStatus.ERROR, f"internal error: {redact(short_error(exc))}"
            run = await self._finish(st, status)
            done = True
            yield RunFinished(run)
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            if not done:
                done = True
                self._finish_abruptly(st)
            raise
        finally:
            if lock is not None:
                lock.release()  # after the last save: a reader that then gets the lock sees the final status

    # -- set-up --------------------------------------------------------------------------

    def _hold(self, run: Run, *, resumed: bool) -> RunLock | None:
        """Lock the run for this process (see :class:`RunLock`); on resume, make sure the
        record is still the one that was read, not one another process has since moved on."""
        if self.runs_dir is None:
            return None
        lock = RunLock(self.runs_dir, run.id).acquire()
        path = run.path_in(self.runs_dir)
        try:
            stored = Run.load(path) if resumed and path.is_file() else None
        except (OSError, ValueError):
            stored = None
        if stored is not None and stored.updated_at != run.updated_at:
            lock.release()
            raise RunBusyError(f"run {run.id} changed since it was read (another process worked on it); read it again")
        return lock

    def _prepare(self, task: str | None, resume: Run | None, max_steps: int | None) -> _RunState:
        steps_now = max_steps if max_steps is not None else self.max_steps
        if steps_now < 1:
            raise ValueError("max_steps must be >= 1")
        if resume is not None:
            if task is not None:
                raise ValueError("pass either a task or a run to resume, not both")
            if not resume.status.resumable:
                raise ValueError(f"run {resume.id} is {resume.status}; it cannot be resumed")
            from persona.schema.conversation import ConversationMessage

            messages = [ConversationMessage.model_validate(m) for m in resume.context]
            st = _RunState(
                run=resume, messages=messages, steps=list(resume.steps), limit=resume.model_steps + steps_now,
                resumed=True, pending_question=resume.pending_question,
            )
            for step in resume.steps:
                for call in step.tool_calls:
                    st.calls_seen[_signature(call.name, call.arguments)] += 1
            return st
        if task is None or not task.strip():
            raise ValueError("the task is empty")
        run = Run(
            id=new_id(), task=task.strip(), persona_id=self.persona_id, persona_path=self.persona_path, max_steps=steps_now
        )
        return _RunState(run=run, messages=[], steps=[], limit=steps_now, resumed=False)

    async def _floor(self, task: str) -> list[ConversationMessage]:
        """``[system (persona + memory + agent instructions), TASK]``."""
        context = RetrievedContext()
        if self.memory is not None:
            context = await asyncio.to_thread(self.memory.retrieve, task)
        window = self.tiers.context_window_for("frontier")
        prompt = self.prompt_builder.build(
            self.persona, context, [], f"TASK: {task}",
            max_tokens=window - self._reply_tokens(window),
            skill_index=self._skill_index() if self._tools_available() else "",
            extra_system=AGENT_INSTRUCTIONS,
        )
        return list(prompt.messages)

    # -- one step ------------------------------------------------------------------------

    async def _step(
        self, st: _RunState, ask: Asker | None, cancel: CancelToken | None, approve: ToolApprover | None, forced: str | None
    ) -> AsyncIterator[AgentEvent]:
        acc = _StepAcc(index=len(st.steps) + 1, started=time.perf_counter(), started_at=_now())
        st.current = acc
        tier, acc.rationale = self._route(st, forced)
        st.first_in_invocation = False
        yield StepStarted(acc.index, st.limit, tier, self.tiers.model_name_for(tier), acc.rationale)
        try:
            async for event in self._maybe_compact(st, acc, tier, cancel):
                yield event
            reply: _Reply | None = None
            async for item in self._call(acc, tier, st.messages, cancel, tools=True):
                if isinstance(item, _Reply):
                    reply = item
                else:
                    yield item
            assert reply is not None
            acc.thinking = reply.scan.thinking if reply.scan.kind is not MarkerKind.NONE else reply.text.strip()
            if reply.calls:
                acc.type = StepType.TOOL_CALL
                async for event in self._tools(st, acc, reply, approve, cancel):
                    yield event
            elif reply.scan.kind is MarkerKind.FINAL:
                acc.type = StepType.FINAL
                acc.content = reply.scan.payload or reply.scan.thinking
                st.messages.append(_assistant(reply.text.strip() or EMPTY_REPLY))
                st.output, st.best_effort, st.stop = acc.content, False, RunStatus.COMPLETED
                yield FinalAnswer(acc.content, best_effort=False)
            elif reply.scan.kind is MarkerKind.ASK_USER:
                acc.type = StepType.ASK_USER
                question = reply.scan.payload or reply.scan.thinking or "(the model asked for input without a question)"
                acc.content = acc.question = question
                st.messages.append(_assistant(reply.text.strip()))
                st.pending_question = question
                acc.latency_ms = _ms_since(acc.started)
                async for event in self._await_answer(st, acc.index, question, ask, cancel, lambda a: setattr(acc, "answer", a)):
                    yield event
                if st.pending_question is not None:
                    st.stop = RunStatus.NEEDS_INPUT
            else:
                acc.type = StepType.REASONING
                st.messages.append(_assistant(reply.text.strip() or EMPTY_REPLY))
                st.messages.append(_user(CONTINUE_NUDGE))
            step = self._record(st, acc)
            yield StepFinished(step)
        except _Cancelled:
            acc.interrupted = acc.interrupted or acc.type is None
            step = self._record(st, acc)
            yield StepFinished(step)
            raise
        except _StepFailed as failed:
            acc.error = failed.message
            step = self._record(st, acc)
            yield StepFinished(step)
            raise

    async def _best_effort(self, st: _RunState, cancel: CancelToken | None) -> AsyncIterator[AgentEvent]:
        """After the step limit: one call without tools; its text is the (labelled) output."""
        if cancel is not None and cancel.is_cancelled:
            raise _Cancelled
        acc = _StepAcc(index=len(st.steps) + 1, started=time.perf_counter(), started_at=_now(), best_effort=True)
        st.current = acc
        tier = "frontier"
        acc.rationale = "step limit reached → best-effort answer on frontier"
        yield StepStarted(acc.index, st.limit, tier, self.tiers.model_name_for(tier), acc.rationale, best_effort=True)
        messages = [*st.messages, _system(BEST_EFFORT_NUDGE)]
        try:
            reply: _Reply | None = None
            async for item in self._call(acc, tier, messages, cancel, tools=False, all_answer=True):
                if isinstance(item, _Reply):
                    reply = item
                else:
                    yield item
            assert reply is not None
            scan = reply.scan
            output = (scan.payload or scan.thinking) if scan.kind is not MarkerKind.NONE else reply.text.strip()
            acc.type, acc.content = StepType.FINAL, output
            st.output, st.best_effort = output, True
            yield FinalAnswer(output, best_effort=True)
            step = self._record(st, acc)
            yield StepFinished(step)
        except _Cancelled:
            acc.interrupted = True
            step = self._record(st, acc)
            yield StepFinished(step)
            raise
        except _StepFailed as failed:
            acc.error = failed.message
            st.error = f"the best-effort answer failed: {failed.message}"
            step = self._record(st, acc)
            yield StepFinished(step)

    def _route(self, st: _RunState, forced: str | None) -> tuple[str, str]:
        if forced and forced != "auto":
            return forced, f"forced → {forced}"
        override = getattr(getattr(self.persona, "routing", None), "tier_for_generation", "auto")
        if override and override != "auto":
            return override, f"persona_override → {override}"
        if st.first_in_invocation:
            return "frontier", ("resumed → frontier" if st.resumed else "first step → frontier")
        previous = st.previous_type
        if previous in (None, StepType.REASONING, StepType.ERROR, StepType.CANCELLED):
            return "frontier", f"after {previous or 'start'} → frontier"
        return "mid", f"after {previous} → mid"

    # -- the model call (with fallback) --------------------------------------------------

    async def _call(
        self,
        acc: _StepAcc,
        tier: str,
        messages: list[ConversationMessage],
        cancel: CancelToken | None,
        *,
        tools: bool,
        all_answer: bool = False,
    ) -> AsyncIterator[Any]:
        try:
            async for item in walk_fallback_chain(
                self.tiers, tier,
                lambda tier_name, slot: self._attempt(acc, tier_name, slot, messages, cancel, tools, all_answer),
                acc, retry_after_max_s=self.retry_after_max_s,
                is_output=lambda item: not isinstance(item, _Reply),
                sleep=lambda seconds: self._cancellable(asyncio.sleep(seconds), cancel),
            ):
                yield item
        except AllModelsFailed:
            raise _StepFailed(failure_message(acc.attempts)) from None
        acc.latency_ms = _ms_since(acc.started)

    async def _attempt(
        self,
        acc: _StepAcc,
        tier: str,
        slot: ModelSlot,
        messages: list[ConversationMessage],
        cancel: CancelToken | None,
        tools: bool,
        all_answer: bool,
    ) -> AsyncIterator[Any]:
        from persona.backends.errors import ProviderError
        from persona.backends.types import reasoning_as_text

        try:
            backend = self.tiers.backend_for(slot)
        except ProviderError as exc:
            raise AttemptFailed(exc) from exc
        window = self.tiers.context_window_for(tier)
        price = self.tiers.price_for(tier, slot)
        use_tools = tools and slot.provider != "gguf" and self._tools_available()
        specs = self.toolbox.get_specs() if use_tools else None
        scanner = MarkerScanner()
        calls: dict[str, dict[str, str]] = {}

        def deltas(thinking: str, payload: str) -> list[AgentEvent]:
            out: list[AgentEvent] = []
            if thinking:
                out.append(AnswerDelta(thinking) if all_answer else ThinkingDelta(thinking))
            if payload and (all_answer or scanner.kind is MarkerKind.FINAL):
                out.append(AnswerDelta(payload))
            return out

        stream = _Pump(
            lambda: backend.chat_stream(
                list(messages), tools=specs, temperature=self.temperature, max_tokens=self._reply_tokens(window)
            ),
            cancel,
        )
        try:
            async with stream:
                async for chunk in stream:
                    reasoning = reasoning_as_text(chunk.reasoning) if chunk.reasoning else None
                    if reasoning:
                        yield ThinkingDelta(reasoning)
                    if chunk.delta:
                        if acc.ttft_ms is None:
                            acc.ttft_ms = _ms_since(acc.started)
                        for event in deltas(*scanner.feed(chunk.delta)):
                            yield event
                    if chunk.tool_call_delta is not None and tools:
                        d = chunk.tool_call_delta
                        slot_acc = calls.setdefault(d.call_id, {"name": "", "args": ""})
                        slot_acc["name"] += d.name_delta
                        slot_acc["args"] += d.arguments_delta
                    if chunk.is_final:
                        acc.add_usage(chunk.usage, price)
        except ProviderError as exc:
            raise AttemptFailed(exc) from exc
        except (OSError, ValueError, RuntimeError) as exc:
            # A transport or parsing fault the backend did not map: this model failed.
            raise AttemptFailed(exc) from exc
        if not calls and not scanner.text.strip():
            # No text and no tool call: this model failed (as in a chat turn), not a reasoning step.
            from persona.backends.errors import EmptyCompletionError

            raise AttemptFailed(EmptyCompletionError("the model returned an empty reply", context={"model": slot.model}))
        for event in deltas(*scanner.finish()):
            yield event
        yield _Reply(
            text=scanner.text,
            scan=scanner.result(),
            calls=[_parse_call(cid, a) for cid, a in calls.items()],
            native=bool(getattr(backend, "supports_native_tools", False)),
            provider=backend.provider_name,
        )

    # -- tools ---------------------------------------------------------------------------

    async def _tools(
        self, st: _RunState, acc: _StepAcc, reply: _Reply, approve: ToolApprover | None, cancel: CancelToken | None
    ) -> AsyncIterator[AgentEvent]:
        from persona.schema.tools import ToolResult

        group: list[ConversationMessage] = []
        if reply.native:
            group.append(_assistant_with_calls(reply.text.strip(), reply.calls))
        elif reply.text.strip():
            group.append(_assistant(reply.text.strip()))
        skill_content: tuple[str, str] | None = None
        finished = 0
        try:
            for call in reply.calls:
                if cancel is not None and cancel.is_cancelled:
                    raise _Cancelled
                signature = _signature(call.name, call.args)
                st.calls_seen[signature] += 1
                count = st.calls_seen[signature]
                yield ToolCallStarted(call.call_id, call.name, dict(call.args))
                repeated = bool(self.loop_guard) and count >= self.loop_guard and not call.truncated
                if repeated:
                    started = time.perf_counter()
                    result = ToolResult(
                        tool_name=call.name, call_id=call.call_id, is_error=True,
                        content=LOOP_GUARD_RESULT.format(name=call.name, previous=count - 1),
                    )
                    approved = True
                    yield LoopGuardTriggered(call.name, dict(call.args), count)
                else:
                    started = time.perf_counter()
                    result, approved = await self._run_tool(call, approve, cancel)
                duration = _ms_since(started)
                shown = redact(result.content)
                acc.tool_calls.append(
                    StepToolCall(
                        call_id=call.call_id, name=call.name, arguments=dict(call.args), result=shown,
                        is_error=result.is_error, duration_ms=round(duration, 3), approved=approved, repeated=repeated,
                    )
                )
                group.append(_format_result(call, result, reply.provider, reply.native))
                finished += 1
                yield ToolCallFinished(call.call_id, call.name, shown, result.is_error, duration, approved)
                data = result.data if isinstance(result.data, dict) else {}
                skill_name = data.get("skill_name")
                if skill_name and not result.is_error and skill_name in self.skills:
                    skill_content = (skill_name, await inject_skill(self.skills, self.skill_injector, skill_name))
        except _Cancelled:
            acc.interrupted = True
            for call in reply.calls[finished:]:
                cut = ToolResult(tool_name=call.name, call_id=call.call_id, content=CANCELLED_RESULT, is_error=True)
                group.append(_format_result(call, cut, reply.provider, reply.native))
            st.messages.extend(group)  # the calls and every result stay paired, for a resume
            raise
        st.messages.extend(group)
        if skill_content is not None:
            name, content = skill_content
            st.messages.append(_system(f"Activated skill '{name}':\n{content}"))
            acc.skill_used = name
            yield SkillActivated(name)

    async def _run_tool(self, call: ToolCall, approve: ToolApprover | None, cancel: CancelToken | None) -> tuple[ToolResult, bool]:
        if not self._tools_available():
            return error_result(call, NO_TOOLS_RESULT), True
        return await run_tool_call(
            self.toolbox, call, approve=approve, timeout_s=self.tool_timeout_s, max_chars=self.tool_result_max_chars,
            guard=lambda awaitable: self._cancellable(awaitable, cancel),
        )

    def _tools_available(self) -> bool:
        return self.toolbox is not None and bool(self.toolbox.names())

    def _skill_index(self) -> str:
        if not self.skills:
            return ""
        from persona.skills import render_skill_index

        return render_skill_index(list(self.skills.values()))

    # -- questions -----------------------------------------------------------------------

    async def _await_answer(
        self,
        st: _RunState,
        index: int,
        question: str,
        ask: Asker | None,
        cancel: CancelToken | None,
        on_answer: Callable[[str], None],
    ) -> AsyncIterator[AgentEvent]:
        yield AskUser(index, question)
        answer = await self._cancellable(ask(question), cancel) if ask is not None else None
        if cancel is not None and cancel.is_cancelled:
            raise _Cancelled
        if answer is None:
            return
        answer = str(answer)
        st.messages.append(_user(answer))
        st.pending_question = None
        on_answer(answer)
        yield UserAnswered(index, answer)

    # -- compaction ----------------------------------------------------------------------

    async def _maybe_compact(
        self, st: _RunState, acc: _StepAcc, tier: str, cancel: CancelToken | None
    ) -> AsyncIterator[AgentEvent]:
        window = self.tiers.context_window_for(tier)
        budget = window - self._reply_tokens(window)
        if estimate_tokens(st.messages) <= self.compact_ratio * budget:
            return
        boundary = fold_boundary(st.messages, floor=_FLOOR, keep_recent=self.keep_recent)
        if boundary is None:
            return
        middle = st.messages[_FLOOR:boundary]
        summary, summary_tier, summary_model = await self._summarise(acc, middle, cancel)
        note = SUMMARY_PREFIX + summary if summary is not None else DROPPED_NOTE
        st.messages = [*st.messages[:_FLOOR], _system(note), *st.messages[boundary:]]
        acc.compacted = True
        yield StepsCompacted(len(middle), summary_tier, summary_model)

    async def _summarise(
        self, acc: _StepAcc, messages: Sequence[ConversationMessage], cancel: CancelToken | None
    ) -> tuple[str | None, str | None, str | None]:
        from persona.backends.errors import ProviderError

        request = [_system(SUMMARY_INSTRUCTIONS), _user(transcript(messages))]
        for tier_name, slot in self.tiers.fallback_chain("small"):
            try:
                backend = self.tiers.backend_for(slot)
                response = await self._cancellable(backend.chat(request, temperature=0.0, max_tokens=320), cancel)
            except (ProviderError, OSError, ValueError, RuntimeError):
                continue
            acc.add_usage(response.usage, self.tiers.price_for(tier_name, slot))
            if response.content.strip():
                return response.content.strip(), tier_name, slot.model
        return None, None, None

    # -- records -------------------------------------------------------------------------

    def _record(self, st: _RunState, acc: _StepAcc) -> Step:
        """Freeze the step, write its TurnLog line, save the run. Runs once per step."""
        now = _now()
        if acc.slot is not None and acc.attempt_started is not None:
            acc.attempts.append(attempt_record(acc.tier or "", acc.slot, "interrupted", acc.attempt_started))
            acc.attempt_started = None
        if acc.type is None:
            acc.type = StepType.ERROR if acc.error else StepType.CANCELLED
        latency = acc.latency_ms if acc.latency_ms is not None else _ms_since(acc.started)
        slot = acc.slot
        step = Step(
            index=acc.index, type=acc.type, tier=acc.tier, provider=slot.provider if slot else None,
            model=slot.model if slot else None, prompt_tokens=acc.prompt_tokens, completion_tokens=acc.completion_tokens,
            # No usage reported (cancelled or failed before the end): the cost is unknown, not 0.
            cost_cents=acc.cost if (acc.prompt_tokens or acc.completion_tokens) else None,
            latency_ms=round(latency, 3), ttft_ms=round(acc.ttft_ms, 3) if acc.ttft_ms is not None else None,
            thinking=redact(acc.thinking), content=redact(acc.content), tool_calls=tuple(acc.tool_calls),
            question=acc.question, answer=acc.answer, best_effort=acc.best_effort, compacted=acc.compacted,
            error=redact(acc.error) if acc.error else None, started_at=acc.started_at, finished_at=now,
        )
        st.steps.append(step)
        st.current = None
        if self.turn_log is not None:
            status = "error" if acc.error else ("interrupted" if acc.interrupted else "ok")
            decision = RoutingDecision(
                tier=acc.tier or "", model=slot.model if slot else "", rationale=acc.rationale,
                candidates_considered=(acc.tier,) if acc.tier else (),
            )
            self.turn_log.write(
                TurnLog(
                    kind="agent", conversation_id=st.run.id, turn_index=acc.index, persona_id=self.persona_id,
                    run_id=st.run.id, step=acc.index, tier=acc.tier, provider=step.provider, model=step.model,
                    prompt_tokens=acc.prompt_tokens, completion_tokens=acc.completion_tokens, cost_cents=acc.cost,
                    latency_ms=step.latency_ms, ttft_ms=step.ttft_ms,
                    tool_calls=tuple(ToolCallRecord(name=c.name, ok=not c.is_error, duration_ms=c.duration_ms) for c in acc.tool_calls),
                    skill_used=acc.skill_used, history_compacted=acc.compacted, routing=decision.to_record(),
                    attempts=tuple(acc.attempts), status=status,  # type: ignore[arg-type]
                    error=step.error, timestamp=now,
                )
            )
        self._save(st)
        return step

    def _snapshot(self, st: _RunState, status: RunStatus) -> Run:
        now = _now()
        terminal = status is not RunStatus.RUNNING
        return st.run.model_copy(
            update={
                "status": status,
                "max_steps": st.limit,
                "steps": tuple(st.steps),
                "output": st.output,
                "best_effort": st.best_effort,
                "error": redact(st.error) if st.error else None,
                "pending_question": st.pending_question,
                "context": tuple(m.model_dump(mode="json") for m in st.messages),
                "updated_at": now,
                "finished_at": now if terminal else None,
            }
        )

    def _save(self, st: _RunState, status: RunStatus = RunStatus.RUNNING) -> Run:
        run = self._snapshot(st, status)
        if self.runs_dir is not None:
            run.save(self.runs_dir)
        st.run = run
        return run

    async def _finish(self, st: _RunState, status: RunStatus) -> Run:
        if status is RunStatus.NEEDS_INPUT and st.pending_question is None:
            status = RunStatus.COMPLETED  # defensive: nothing is actually waiting
        try:
            run = self._save(st, status)
        except OSError as exc:
            st.error = (st.error + "; " if st.error else "") + f"could not save the run: {exc}"
            run = self._snapshot(st, status)
            st.run = run
        if self.memory is not None and status is not RunStatus.NEEDS_INPUT:
            try:
                await asyncio.to_thread(self._remember, run)
            except Exception:  # noqa: BLE001 - memory is best effort; the run record is the truth
                pass
        return run

    def _finish_abruptly(self, st: _RunState) -> None:
        """The consumer went away (task cancelled / generator closed): record a cancelled run."""
        if st.current is not None:
            acc = st.current
            acc.interrupted = True
            try:
                self._record(st, acc)
            except Exception:  # noqa: BLE001 - shutting down; the save below still runs
                pass
        try:
            run = self._save(st, RunStatus.CANCELLED)
        except Exception:  # noqa: BLE001
            return
        if self.memory is not None:
            try:
                self._remember(run)
            except Exception:  # noqa: BLE001
                pass

    def _remember(self, run: Run) -> None:
        assert self.memory is not None
        outcome = run.output or run.error or "(no answer)"
        label = f"{run.status}, best effort" if run.best_effort else str(run.status)
        self.memory.remember(
            f"TASK: {run.task}\n\nOUTCOME ({label}): {outcome}",
            metadata={
                "source": "agentic_run",
                "run_id": run.id,
                "task": run.task[:500],
                "tools_used": ",".join(run.tools_used),
                "steps": str(len(run.steps)),
                "status": str(run.status),
                "importance": "0.6",
            },
            written_by="persona_runtime.agentic",
        )

    # -- helpers -------------------------------------------------------------------------

    def _reply_tokens(self, window: int) -> int:
        return max(64, min(self.reply_tokens, window // 4))

    async def _cancellable(self, awaitable: Awaitable[T], cancel: CancelToken | None) -> T:
        """Await ``awaitable`` in its own task; the cancel token cancels that task."""
        if cancel is None:
            return await awaitable
        if cancel.is_cancelled:
            _close(awaitable)
            raise _Cancelled
        task = asyncio.ensure_future(awaitable)
        remove = cancel.on_cancel(task.cancel)
        try:
            return await task
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if cancel.is_cancelled and (current is None or not current.cancelling()):
                raise _Cancelled from None
            raise
        finally:
            remove()
            if not task.done():
                task.cancel()


class _Pump:
    """Iterates a backend stream in a task of its own; the consumer reads a queue.

    So a stream that sends nothing can still be cancelled (the token puts a sentinel on
    the queue and cancels the task), and the backend's generator is started, iterated and
    closed in one task, as HTTP clients expect.
    """

    _END = object()
    _CANCEL = object()

    def __init__(self, open_stream: Callable[[], Any], cancel: CancelToken | None) -> None:
        self._open = open_stream
        self._cancel = cancel
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._remove: Callable[[], None] = lambda: None

    async def __aenter__(self) -> _Pump:
        if self._cancel is not None and self._cancel.is_cancelled:
            raise _Cancelled
        self._task = asyncio.ensure_future(self._run())
        if self._cancel is not None:
            self._remove = self._cancel.on_cancel(lambda: self._queue.put_nowait(self._CANCEL))
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._remove()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async for chunk in self._open():
                self._queue.put_nowait(chunk)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._queue.put_nowait(_Failure(exc))
        else:
            self._queue.put_nowait(self._END)

    def __aiter__(self) -> _Pump:
        return self

    async def __anext__(self) -> Any:
        if self._cancel is not None and self._cancel.is_cancelled:
            raise _Cancelled
        item = await self._queue.get()
        if item is self._CANCEL:
            raise _Cancelled
        if item is self._END:
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            raise item.error
        return item


@dataclass
class _Failure:
    error: BaseException


# -- small helpers ---------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _signature(name: str, args: Any) -> str:
    return name + "\x00" + json.dumps(args, sort_keys=True, default=str, separators=(",", ":"))


def _answer_to(st: _RunState) -> Callable[[str], None]:
    """On resume: the stored question step records the answer it finally got."""

    def record(answer: str) -> None:
        if st.steps and st.steps[-1].type is StepType.ASK_USER:
            st.steps[-1] = st.steps[-1].model_copy(update={"answer": answer})

    return record


def _close(awaitable: Any) -> None:
    closer = getattr(awaitable, "close", None)
    if closer is not None:
        closer()


def _message(role: str, content: str, **extra: Any) -> ConversationMessage:
    from persona.schema.conversation import ConversationMessage

    return ConversationMessage(role=role, content=content, created_at=_now(), **extra)  # type: ignore[arg-type]


def _system(content: str) -> ConversationMessage:
    return _message("system", content)


def _user(content: str) -> ConversationMessage:
    return _message("user", content)


def _assistant(content: str) -> ConversationMessage:
    return _message("assistant", content)


def _assistant_with_calls(text: str, calls: list[ToolCall]) -> ConversationMessage:
    return _message("assistant", text, tool_calls=calls)
