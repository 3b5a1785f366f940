"""An agent run's records: the frozen steps and their TurnLog lines, the saved run file (and
its lock), and the outcome in episodic memory."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.agentic.events import StepFinished
from persona_runtime.agentic.run import Run, RunBusyError, RunLock, RunStatus, Step, StepType
from persona_runtime.agentic.state import RunState, StepProgress, now
from persona_runtime.routing.types import RoutingDecision
from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona_runtime.memory import PersonaMemory

__all__ = ["RunRecords"]


class RunRecords:
    def __init__(self, *, persona_id: str, runs_dir: Path | None, memory: PersonaMemory | None) -> None:
        self.persona_id = persona_id
        self.runs_dir = runs_dir
        self.memory = memory

    def hold(self, run: Run, *, resumed: bool) -> RunLock | None:
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

    def record_step(self, st: RunState, progress: StepProgress) -> StepFinished:
        """Freeze the step and build its TurnLog record, then save the run. Runs once per step."""
        finished_at = now()
        account = progress.account
        account.close_open_attempt()
        if progress.type is None:
            progress.type = StepType.ERROR if progress.error else StepType.CANCELLED
        latency = progress.latency_ms if progress.latency_ms is not None else account.elapsed_ms()
        slot = account.slot
        usage = account.usage
        account.routing = RoutingDecision(
            tier=account.tier or "", model=slot.model if slot else "", rationale=progress.rationale,
            candidates_considered=(account.tier,) if account.tier else (),
        )
        status = "error" if progress.error else ("interrupted" if progress.interrupted else "ok")
        log = account.turn_log(
            kind="agent", conversation_id=st.run.id, turn_index=progress.index, persona_id=self.persona_id,
            run_id=st.run.id, step=progress.index, status=status, error=progress.error, latency_ms=latency,
            timestamp=finished_at,
        )
        step = Step(
            index=progress.index, type=progress.type, tier=account.tier, provider=log.provider, model=log.model,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            usage_estimated=usage.estimated,
            # No usage reported (cancelled or failed before the end): the cost is unknown, not 0.
            cost_cents=usage.cost_cents if usage.total_tokens else None,
            latency_ms=log.latency_ms, ttft_ms=log.ttft_ms,
            thinking=redact(progress.thinking), content=redact(progress.content), tool_calls=tuple(progress.tool_calls),
            question=progress.question, answer=progress.answer, best_effort=progress.best_effort,
            compacted=account.compacted, error=log.error, started_at=progress.started_at, finished_at=finished_at,
        )
        st.steps.append(step)
        st.current = None
        self.save(st)
        return StepFinished(step, log)

    def snapshot(self, st: RunState, status: RunStatus) -> Run:
        stamp = now()
        terminal = status is not RunStatus.RUNNING
        return st.run.model_copy(
            update={
                "status": status,
                "max_steps": st.limit,
                "steps": tuple(st.steps),
                "output": redact(st.output) if st.output else st.output,
                "best_effort": st.best_effort,
                "error": redact(st.error) if st.error else None,
                "pending_question": st.pending_question,
                "context": tuple(_redacted(m.model_dump(mode="json")) for m in st.messages),
                "updated_at": stamp,
                "finished_at": stamp if terminal else None,
            }
        )

    def save(self, st: RunState, status: RunStatus = RunStatus.RUNNING) -> Run:
        run = self.snapshot(st, status)
        if self.runs_dir is not None:
            run.save(self.runs_dir)
        st.run = run
        return run

    async def finish(self, st: RunState, status: RunStatus) -> Run:
        if status is RunStatus.NEEDS_INPUT and st.pending_question is None:
            status = RunStatus.COMPLETED  # defensive: nothing is actually waiting
        try:
            run = self.save(st, status)
        except OSError as exc:
            st.error = (st.error + "; " if st.error else "") + f"could not save the run: {exc}"
            run = self.snapshot(st, status)
            st.run = run
        if self.memory is not None and status is not RunStatus.NEEDS_INPUT:
            try:
                await asyncio.to_thread(self.remember, run)
            except Exception:  # noqa: BLE001 - memory is best effort; the run record is the truth
                pass
        return run

    def finish_abruptly(self, st: RunState, publish: Callable[[Any], Any]) -> None:
        """The consumer went away (task cancelled / generator closed): record a cancelled run.
        The step in progress is published (its TurnLog written) though nobody reads it now."""
        if st.current is not None:
            progress = st.current
            progress.interrupted = True
            try:
                publish(self.record_step(st, progress))
            except Exception:  # noqa: BLE001 - shutting down; the save below still runs
                pass
        try:
            run = self.save(st, RunStatus.CANCELLED)
        except Exception:  # noqa: BLE001
            return
        if self.memory is not None:
            try:
                self.remember(run)
            except Exception:  # noqa: BLE001
                pass

    def remember(self, run: Run) -> None:
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


def _redacted(message: dict[str, Any]) -> dict[str, Any]:
    """A context message as the run file keeps it: secrets in its text redacted."""
    if isinstance(message.get("content"), str):
        message["content"] = redact(message["content"])
    return message
