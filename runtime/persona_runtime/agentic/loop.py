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

Loop guard (shared with chat, :mod:`persona_runtime.engine.tools`): the ``loop_guard``-th
identical tool call (same name, same arguments) in a run, and every repeat after it, is
not run; the model is told so. The run goes on (``max_steps`` still bounds it).

Cancellation: ``CancelToken.cancel()`` is checked before each step and between stream
deltas, and it interrupts a silent stream, a running tool, an approval or a question at
once. Cancelling the task that consumes ``run()`` works too: the run is saved as
``cancelled`` before the cancellation propagates.

Records (:mod:`.records`): the :class:`Run` is saved to ``runs_dir`` (and locked there while
this process works on it, so a killed run reads as ``abandoned``) after every step; each
``StepFinished`` carries the step's ``TurnLog`` (``kind="agent"``, ``run_id``, ``step``), which
the TurnLog subscriber writes; the outcome goes to episodic memory (except for a run paused
on a question). Model calls, tools and compaction go through the engine shared with chat
(:mod:`.step`, :mod:`persona_runtime.engine`); the run's state is in :mod:`.state`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime import _offline
from persona_runtime.agentic.events import (
    AgentEvent,
    AskUser,
    FinalAnswer,
    RunFinished,
    RunStarted,
    StepStarted,
    UserAnswered,
)
from persona_runtime.agentic.markers import MarkerKind
from persona_runtime.agentic.records import RunRecords
from persona_runtime.agentic.run import Run, RunStatus, StepType
from persona_runtime.agentic.state import RunState, StepFailed, StepProgress
from persona_runtime.agentic.step import AgentReply, StepCalls
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.engine.messages import assistant_message, system_message, user_message
from persona_runtime.engine.stream import Cancelled, cancellable
from persona_runtime.engine.tools import call_signature
from persona_runtime.events import Notice
from persona_runtime.memory_guard import memory_notice
from persona_runtime.fallback import short_error
from persona_runtime.prompt import PromptBuilder, RetrievedContext
from persona_runtime.recorder import EventBus, Subscriber
from persona_runtime.secrets import redact
from persona_runtime.tooling import ToolApprover
from persona_runtime.turnlog.record import new_id
from persona_runtime.turnlog.writer import TurnLogWriter

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage
    from persona.schema.persona import Persona

    from persona_runtime.cancel import CancelToken
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.tier import TierRegistry

__all__ = ["AGENT_INSTRUCTIONS", "AgenticLoop", "Asker", "ToolApprover"]

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
EMPTY_REPLY = "(no reply)"


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
        subscribers: Sequence[Subscriber] = (),
        runs_dir: Path | None = None,
        persona_path: Path | None = None,
        max_steps: int = 8,
        options: EngineOptions = EngineOptions(),
        compact_ratio: float = 0.8,
        keep_recent: int = 4,
    ) -> None:
        _offline.install()
        if max_steps < 1:
            raise ValueError("max_steps must be >= 1")
        if not 0 < compact_ratio <= 1:
            raise ValueError("compact_ratio must be in (0, 1]")
        self.persona = persona
        self.persona_id = persona.persona_id or "persona"
        self.tiers = tiers
        self.memory = memory
        self.prompt_builder = prompt_builder or PromptBuilder()
        self.persona_path = str(Path(persona_path).resolve()) if persona_path is not None else None
        self.max_steps = max_steps
        self.engine, self.tools = options.build(tiers, toolbox)
        self.skills = {s.name: s for s in skills}
        self.calls = StepCalls(
            self.engine, self.tools, skills=self.skills, skill_injector=skill_injector,
            compact_ratio=compact_ratio, keep_recent=keep_recent,
        )
        self.records = RunRecords(
            persona_id=self.persona_id, runs_dir=Path(runs_dir) if runs_dir is not None else None, memory=memory
        )
        self.events = EventBus(subscribers, turn_log=turn_log)

    @property
    def runs_dir(self) -> Path | None:
        return self.records.runs_dir

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
        lock = self.records.hold(st.run, resumed=resume is not None)
        publish = self.events.publish
        done = False
        try:
            yield publish(RunStarted(st.run.id, st.run.task, self.persona_id, st.limit, resumed=st.resumed))
            status: RunStatus | None = None
            try:
                async for event in self._work(st, ask, cancel, approve, tier):
                    yield publish(event)
                status = st.stop
            except Cancelled:
                status = RunStatus.CANCELLED
            except StepFailed as failed:
                status = RunStatus.SPEND_CAP_REACHED if failed.spend_cap else RunStatus.ERROR
                st.error = failed.message
            except Exception as exc:  # noqa: BLE001 - a bug ends the run with status error, never an exception
                status, st.error = RunStatus.ERROR, f"internal error: {redact(short_error(exc))}"
            run = await self.records.finish(st, status or RunStatus.ERROR)
            done = True
            yield publish(RunFinished(run))
        except (asyncio.CancelledError, GeneratorExit, KeyboardInterrupt):
            if not done:
                done = True
                self.records.finish_abruptly(st, publish)
            raise
        finally:
            if lock is not None:
                lock.release()  # after the last save: a reader that then gets the lock sees the final status

    async def _work(
        self, st: RunState, ask: Asker | None, cancel: CancelToken | None, approve: ToolApprover | None, tier: str | None
    ) -> AsyncIterator[AgentEvent]:
        """Steps until the run stops; sets ``st.stop``."""
        if not st.messages:
            st.messages, trouble = await self._floor(st.run.task)
            if trouble is not None:
                yield Notice(trouble)
        self.records.save(st)
        if st.pending_question is not None:
            index = st.steps[-1].index if st.steps else 0
            async for event in self._await_answer(st, index, st.pending_question, ask, cancel, st.record_answer):
                yield event
            self.records.save(st)
            if st.pending_question is not None:
                st.stop = RunStatus.NEEDS_INPUT
                return
        while st.stop is None:
            if cancel is not None and cancel.is_cancelled:
                raise Cancelled
            if st.model_steps >= st.limit:
                st.stop = RunStatus.MAX_STEPS_REACHED
                break
            async for event in self._step(st, ask, cancel, approve, tier):
                yield event
        if st.stop is RunStatus.MAX_STEPS_REACHED:
            async for event in self._best_effort(st, cancel):
                yield event

    # -- set-up --------------------------------------------------------------------------

    def _prepare(self, task: str | None, resume: Run | None, max_steps: int | None) -> RunState:
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
            st = RunState(
                run=resume, messages=messages, steps=list(resume.steps), limit=resume.model_steps + steps_now,
                resumed=True, pending_question=resume.pending_question,
            )
            for step in resume.steps:
                for call in step.tool_calls:
                    st.calls_seen[call_signature(call.name, call.arguments)] += 1
            return st
        if task is None or not task.strip():
            raise ValueError("the task is empty")
        run = Run(
            id=new_id(), task=redact(task.strip()), persona_id=self.persona_id, persona_path=self.persona_path, max_steps=steps_now
        )
        return RunState(run=run, messages=[], steps=[], limit=steps_now, resumed=False)

    async def _floor(self, task: str) -> tuple[list[ConversationMessage], str | None]:
        """``[system (persona + memory + agent instructions), TASK]``, and a notice when memory
        could not be read (the run goes on without it)."""
        context, trouble = RetrievedContext(), None
        if self.memory is not None:
            try:
                context = await asyncio.to_thread(self.memory.retrieve, task)
            except Exception as exc:  # noqa: BLE001 - memory is help, not a precondition
                trouble = memory_notice("could not recall", self.memory, exc)
        window = self.tiers.context_window_for("frontier")
        prompt = self.prompt_builder.build(
            self.persona, context, [], f"TASK: {task}",
            max_tokens=window - self.engine.window_budget("frontier"),
            skill_index=self._skill_index() if self.tools.available else "",
            extra_system=AGENT_INSTRUCTIONS,
        )
        return list(prompt.messages), trouble

    def _skill_index(self) -> str:
        if not self.skills:
            return ""
        from persona.skills import render_skill_index

        return render_skill_index(list(self.skills.values()))

    # -- one step ------------------------------------------------------------------------

    async def _step(
        self, st: RunState, ask: Asker | None, cancel: CancelToken | None, approve: ToolApprover | None, forced: str | None
    ) -> AsyncIterator[AgentEvent]:
        progress = StepProgress(index=len(st.steps) + 1)
        st.current = progress
        tier, progress.rationale = self._route(st, forced)
        st.first_in_invocation = False
        yield StepStarted(progress.index, st.limit, tier, self.tiers.model_name_for(tier), progress.rationale)
        try:
            async for event in self.calls.maybe_compact(st, progress, tier, cancel):
                yield event
            reply = None
            async for item in self.calls.call(progress, tier, st.messages, cancel, tools=True):
                if isinstance(item, AgentReply):
                    reply = item
                else:
                    yield item
            assert reply is not None
            progress.thinking = reply.scan.thinking if reply.scan.kind is not MarkerKind.NONE else reply.text.strip()
            if reply.calls:
                progress.type = StepType.TOOL_CALL
                async for event in self.calls.run_tools(st, progress, reply, approve, cancel):
                    yield event
            elif reply.scan.kind is MarkerKind.FINAL:
                progress.type = StepType.FINAL
                progress.content = reply.scan.payload or reply.scan.thinking
                st.messages.append(assistant_message(reply.text.strip() or EMPTY_REPLY))
                st.output, st.best_effort, st.stop = progress.content, False, RunStatus.COMPLETED
                yield FinalAnswer(progress.content, best_effort=False)
            elif reply.scan.kind is MarkerKind.ASK_USER:
                progress.type = StepType.ASK_USER
                question = reply.scan.payload or reply.scan.thinking or "(the model asked for input without a question)"
                progress.content = progress.question = question
                st.messages.append(assistant_message(reply.text.strip()))
                st.pending_question = question
                progress.latency_ms = progress.account.elapsed_ms()
                async for event in self._await_answer(
                    st, progress.index, question, ask, cancel, lambda a: setattr(progress, "answer", a)
                ):
                    yield event
                if st.pending_question is not None:
                    st.stop = RunStatus.NEEDS_INPUT
            else:
                progress.type = StepType.REASONING
                st.messages.append(assistant_message(reply.text.strip() or EMPTY_REPLY))
                st.messages.append(user_message(CONTINUE_NUDGE))
            yield self.records.record_step(st, progress)
        except Cancelled:
            progress.interrupted = progress.interrupted or progress.type is None
            yield self.records.record_step(st, progress)
            raise
        except StepFailed as failed:
            progress.error = failed.message
            yield self.records.record_step(st, progress)
            raise

    async def _best_effort(self, st: RunState, cancel: CancelToken | None) -> AsyncIterator[AgentEvent]:
        """After the step limit: one call without tools; its text is the (labelled) output."""
        if cancel is not None and cancel.is_cancelled:
            raise Cancelled
        progress = StepProgress(index=len(st.steps) + 1, best_effort=True)
        st.current = progress
        tier = "frontier"
        progress.rationale = "step limit reached → best-effort answer on frontier"
        yield StepStarted(progress.index, st.limit, tier, self.tiers.model_name_for(tier), progress.rationale, best_effort=True)
        messages = [*st.messages, system_message(BEST_EFFORT_NUDGE)]
        try:
            reply = None
            async for item in self.calls.call(progress, tier, messages, cancel, tools=False, all_answer=True):
                if isinstance(item, AgentReply):
                    reply = item
                else:
                    yield item
            assert reply is not None
            scan = reply.scan
            output = (scan.payload or scan.thinking) if scan.kind is not MarkerKind.NONE else reply.text.strip()
            progress.type, progress.content = StepType.FINAL, output
            st.output, st.best_effort = output, True
            yield FinalAnswer(output, best_effort=True)
            yield self.records.record_step(st, progress)
        except Cancelled:
            progress.interrupted = True
            yield self.records.record_step(st, progress)
            raise
        except StepFailed as failed:
            progress.error = failed.message
            st.error = f"the best-effort answer failed: {failed.message}"
            yield self.records.record_step(st, progress)

    def _route(self, st: RunState, forced: str | None) -> tuple[str, str]:
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

    # -- questions -----------------------------------------------------------------------

    async def _await_answer(
        self,
        st: RunState,
        index: int,
        question: str,
        ask: Asker | None,
        cancel: CancelToken | None,
        on_answer: Callable[[str], None],
    ) -> AsyncIterator[AgentEvent]:
        yield AskUser(index, question)
        answer = await cancellable(ask(question), cancel) if ask is not None else None
        if cancel is not None and cancel.is_cancelled:
            raise Cancelled
        if answer is None:
            return
        answer = str(answer)
        st.messages.append(user_message(answer))
        st.pending_question = None
        on_answer(answer)
        yield UserAnswered(index, answer)
