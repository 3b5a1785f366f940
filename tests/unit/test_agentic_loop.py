"""AgenticLoop on ScriptedBackend tiers: every branch, records, cancellation, resume."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from persona.backends.errors import ProviderError, RateLimitError
from persona.schema.tools import ToolCall
from persona_runtime.engine.engine import EngineOptions
from persona_runtime.agentic import (
    AgenticLoop,
    CancelToken,
    Run,
    RunStatus,
    StepType,
    find_run,
    list_runs,
)
from persona_runtime.agentic import events as ev
from persona_runtime.agentic.loop import (
    AGENT_INSTRUCTIONS,
    BEST_EFFORT_NUDGE,
    CONTINUE_NUDGE,
)
from persona_runtime.testing import (
    Hang,
    Raise,
    Reply,
    ScriptedBackend,
    ScriptedToolCall,
)
from persona_runtime.tier import ModelSlot, TierConfig, TierRegistry
from persona_runtime.turnlog import MemoryTurnLogWriter

from tests.support.agentic import (
    PERSONA,
    FakeToolbox,
    calculator,
    collect,
    final_run,
    make_loop,
    tiers,
)


class FakeMemory:
    def __init__(self) -> None:
        self.remembered: list[tuple[str, dict[str, str], str]] = []

    def retrieve(self, message: str):
        from persona_runtime.prompt import RetrievedContext

        return RetrievedContext()

    def remember(self, text: str, *, metadata: dict[str, str], written_by: str) -> str:
        self.remembered.append((text, metadata, written_by))
        return "chunk"


def run(coro):
    return asyncio.run(coro)


def answers(*items: str | None):
    queue = list(items)
    asked: list[str] = []

    async def ask(question: str) -> str | None:
        asked.append(question)
        return queue.pop(0) if queue else None

    ask.asked = asked  # type: ignore[attr-defined]
    return ask


# -- the happy path: plan → tool → ask → final --------------------------------------------------


def test_plan_tool_ask_final(tmp_path: Path) -> None:
    frontier = ScriptedBackend(
        [
            Reply("Plan: compute the product, then check the unit."),
            Reply("Computing.", tool_calls=[ScriptedToolCall("calculator", {"expression": "6*7"})]),
        ],
        model_name="big",
    )
    mid = ScriptedBackend(["[ASK_USER] Which unit do you want?", "**[FINAL]** It is **42 m**."], model_name="medium")
    memory = FakeMemory()
    loop, log = make_loop(tiers(frontier=frontier, mid=mid), tmp_path, memory=memory)
    ask = answers("metres")
    events = run(collect(loop, "What is six times seven metres?", ask=ask))
    result = final_run(events)

    assert result.status is RunStatus.COMPLETED
    assert result.output == "It is **42 m**."
    assert not result.best_effort and result.error is None
    assert [s.type for s in result.steps] == [StepType.REASONING, StepType.TOOL_CALL, StepType.ASK_USER, StepType.FINAL]
    # Routing: frontier first and after reasoning; mid after tool results and answers.
    assert [s.tier for s in result.steps] == ["frontier", "frontier", "mid", "mid"]
    assert [s.model for s in result.steps] == ["big", "big", "medium", "medium"]
    tool_step = result.steps[1]
    assert tool_step.tool_calls[0].name == "calculator" and tool_step.tool_calls[0].result == "42"
    ask_step = result.steps[2]
    assert ask_step.question == "Which unit do you want?" and ask_step.answer == "metres"
    assert ask.asked == ["Which unit do you want?"]

    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "RunStarted" and kinds[1] == "StepStarted"
    assert kinds.count("StepStarted") == 4 and kinds.count("StepFinished") == 4
    assert kinds.index("AskUser") < kinds.index("UserAnswered") < kinds.index("FinalAnswer")
    started = [e for e in events if isinstance(e, ev.StepStarted)]
    assert [(s.step, s.max_steps) for s in started] == [(1, 8), (2, 8), (3, 8), (4, 8)]
    thinking = "".join(e.text for e in events if isinstance(e, ev.ThinkingDelta))
    assert "Plan: compute the product" in thinking and "[ASK_USER]" not in thinking
    answer = "".join(e.text for e in events if isinstance(e, ev.AnswerDelta))
    assert answer == "It is **42 m**."

    # The model saw the instructions, the task, the tool result and the answer.
    first = frontier.calls[0].messages
    assert AGENT_INSTRUCTIONS in first[0].content and first[1].content == "TASK: What is six times seven metres?"
    after_reasoning = frontier.calls[1].messages
    assert after_reasoning[-1].role == "user" and after_reasoning[-1].content == CONTINUE_NUDGE
    last = mid.calls[1].messages
    roles = [m.role for m in last]
    assert roles[-1] == "user" and last[-1].content == "metres"
    tool_msg = next(m for m in last if m.role == "tool")
    assert tool_msg.content == "42" and tool_msg.metadata["tool_call_id"] == tool_step.tool_calls[0].call_id
    assert frontier.calls[0].tool_names == ["calculator"]

    # One TurnLog line per step, kind agent, with the run id and step number.
    assert [(r.kind, r.run_id, r.step, r.status) for r in log.logs] == [("agent", result.id, i, "ok") for i in (1, 2, 3, 4)]
    assert log.logs[1].tool_calls[0].name == "calculator" and log.logs[2].tier == "mid"
    assert log.logs[0].routing and "first step" in log.logs[0].routing["rationale"]

    # Saved, and the JSON round-trips.
    saved = Run.load(tmp_path / "runs" / f"{result.id}.json")
    assert saved == result
    assert Run.from_json(result.to_json()) == result
    assert (tmp_path / "runs" / f"{result.id}.json").stat().st_mode & 0o777 == 0o600

    # Outcome in episodic memory.
    assert len(memory.remembered) == 1
    text, meta, written_by = memory.remembered[0]
    assert "TASK: What is six times seven metres?" in text and "42 m" in text
    assert meta["status"] == "completed" and meta["tools_used"] == "calculator" and meta["run_id"] == result.id
    assert meta["source"] == "agentic_run"


def test_markers_split_across_deltas_and_emphasis(tmp_path: Path) -> None:
    backend = ScriptedBackend([Reply(deltas=["Done thinking. _", "_[fi", "Nal", "]__", ": **ok**"])])
    loop, _ = make_loop(tiers(mid=backend), tmp_path)
    result = final_run(run(collect(loop)))
    assert result.status is RunStatus.COMPLETED and result.output == "**ok**"
    assert result.steps[0].thinking == "Done thinking."


def test_native_tool_calls_win_over_markers(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        [
            Reply("[FINAL] premature", tool_calls=[ScriptedToolCall("calculator", {"expression": "1+1"})]),
            "[FINAL] 2",
        ]
    )
    toolbox = FakeToolbox(calculator=calculator)
    loop, _ = make_loop(tiers(mid=backend), tmp_path, toolbox=toolbox)
    result = final_run(run(collect(loop)))
    assert [s.type for s in result.steps] == [StepType.TOOL_CALL, StepType.FINAL]
    assert len(toolbox.dispatched) == 1 and result.output == "2"


def test_hallucinated_tool_is_reported_to_the_model(tmp_path: Path) -> None:
    backend = ScriptedBackend(
        [Reply(tool_calls=[ScriptedToolCall("teleport", {"to": "Mars"})]), "[FINAL] I cannot teleport."]
    )
    loop, _ = make_loop(tiers(mid=backend), tmp_path)
    events = run(collect(loop))
    result = final_run(events)
    assert result.status is RunStatus.COMPLETED
    call = result.steps[0].tool_calls[0]
    assert call.is_error and "not available" in call.result and "calculator" in call.result
    finished = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert finished[0].is_error
    assert "not available" in backend.calls[1].messages[-1].content


def test_side_effect_tool_needs_approval(tmp_path: Path) -> None:
    async def file_write(path: str, content: str) -> str:
        raise AssertionError("must not run without approval")

    backend = ScriptedBackend(
        [Reply(tool_calls=[ScriptedToolCall("file_write", {"path": "a", "content": "b"})]), "[FINAL] skipped"]
    )
    toolbox = FakeToolbox(file_write=file_write)
    loop, _ = make_loop(tiers(mid=backend), tmp_path, toolbox=toolbox)
    seen: list[str] = []

    async def deny(call: ToolCall) -> bool:
        seen.append(call.name)
        return False

    result = final_run(run(collect(loop, approve=deny)))
    assert seen == ["file_write"] and toolbox.dispatched == []
    call = result.steps[0].tool_calls[0]
    assert not call.approved and call.is_error and result.status is RunStatus.COMPLETED


# -- max steps -------------------------------------------------------------------------------


def test_max_steps_then_labelled_best_effort_answer(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Thinking about it.", "Still thinking.", "Best guess: 42, unverified."])
    memory = FakeMemory()
    loop, log = make_loop(tiers(frontier=backend), tmp_path, memory=memory)
    events = run(collect(loop, max_steps=2))
    result = final_run(events)
    assert result.status is RunStatus.MAX_STEPS_REACHED
    assert result.best_effort and result.output == "Best guess: 42, unverified."
    assert [s.type for s in result.steps] == [StepType.REASONING, StepType.REASONING, StepType.FINAL]
    assert result.steps[-1].best_effort and result.model_steps == 2
    final = [e for e in events if isinstance(e, ev.FinalAnswer)]
    assert final == [ev.FinalAnswer("Best guess: 42, unverified.", best_effort=True)]
    best = backend.calls[-1]
    assert best.tools is None  # the best-effort call has no tools
    assert best.messages[-1].content == BEST_EFFORT_NUDGE
    started = [e for e in events if isinstance(e, ev.StepStarted)]
    assert started[-1].best_effort and not started[0].best_effort
    assert len(log.logs) == 3
    assert memory.remembered[0][1]["status"] == "max_steps_reached"
    assert "best effort" in memory.remembered[0][0]


def test_max_steps_best_effort_failure_keeps_status(tmp_path: Path) -> None:
    backend = ScriptedBackend(["Thinking.", Raise(ProviderError("down"))])
    loop, _ = make_loop(tiers(frontier=backend), tmp_path)
    result = final_run(run(collect(loop, max_steps=1)))
    assert result.status is RunStatus.MAX_STEPS_REACHED
    assert result.output is None and "best-effort answer failed" in (result.error or "")


# -- faults ------------------------------------------------------------------------------------


def test_every_provider_failing_ends_with_status_error(tmp_path: Path) -> None:
    frontier = ScriptedBackend([Raise(ProviderError("frontier down"))], model_name="big")
    mid = ScriptedBackend([Raise(ProviderError("mid down"))], model_name="medium")
    memory = FakeMemory()
    loop, log = make_loop(tiers(frontier=frontier, mid=mid), tmp_path, memory=memory)
    events = run(collect(loop))
    result = final_run(events)
    assert result.status is RunStatus.ERROR
    assert "every model failed" in (result.error or "") and "frontier down" in (result.error or "")
    assert result.steps[-1].type is StepType.ERROR
    assert any(isinstance(e, ev.FallbackTriggered) for e in events)
    assert log.logs[-1].status == "error" and [a.outcome for a in log.logs[-1].attempts] == ["error", "error"]
    assert Run.load(tmp_path / "runs" / f"{result.id}.json").status is RunStatus.ERROR
    assert memory.remembered[0][1]["status"] == "error"


def test_fallback_to_the_next_tier_completes(tmp_path: Path) -> None:
    frontier = ScriptedBackend([Raise(ProviderError("cut"), after_deltas=("partial ",))], model_name="big")
    mid = ScriptedBackend(["[FINAL] from mid"], model_name="medium")
    loop, log = make_loop(tiers(frontier=frontier, mid=mid), tmp_path)
    events = run(collect(loop))
    result = final_run(events)
    assert result.status is RunStatus.COMPLETED and result.output == "from mid"
    fallback = next(e for e in events if isinstance(e, ev.FallbackTriggered))
    assert fallback.discarded_text and fallback.next_model == "medium"
    assert result.steps[0].tier == "mid" and [a.outcome for a in log.logs[0].attempts] == ["error", "ok"]


def test_retry_after_is_waited_out_once(tmp_path: Path) -> None:
    limited = RateLimitError("slow down", context={"provider": "x", "retry_after_s": "0"})
    backend = ScriptedBackend([Raise(limited), "[FINAL] ok"])
    loop, _ = make_loop(tiers(mid=backend), tmp_path)
    events = run(collect(loop))
    assert final_run(events).status is RunStatus.COMPLETED
    assert any(isinstance(e, ev.RetryWaiting) for e in events)


def test_a_bug_is_status_error_not_an_exception(tmp_path: Path) -> None:
    backend = ScriptedBackend(["[ASK_USER] ok?"])

    async def broken(question: str) -> str:
        raise KeyError("oops")

    loop, _ = make_loop(tiers(mid=backend), tmp_path)
    result = final_run(run(collect(loop, ask=broken)))
    assert result.status is RunStatus.ERROR and "internal error" in (result.error or "") and "KeyError" in result.error


# -- asking ------------------------------------------------------------------------------------


def test_question_without_answer_pauses_then_resume_continues(tmp_path: Path) -> None:
    backend = ScriptedBackend(["[ASK_USER] Which database?"], model_name="m1")
    memory = FakeMemory()
    loop, log = make_loop(tiers(mid=backend), tmp_path, memory=memory)
    events = run(collect(loop, "Pick a database", ask=None))
    paused = final_run(events)
    assert paused.status is RunStatus.NEEDS_INPUT
    assert paused.pending_question == "Which database?" and paused.output is None
    assert paused.steps[-1].answer is None
    assert memory.remembered == []  # not an outcome yet
    assert [e.question for e in events if isinstance(e, ev.AskUser)] == ["Which database?"]

    stored = find_run(tmp_path / "runs", paused.id[:6])
    assert stored.status is RunStatus.NEEDS_INPUT
    backend.push("[FINAL] Use DuckDB.")
    ask = answers("duckdb")
    events = run(collect(loop, None, resume=stored, ask=ask))
    done = final_run(events)
    assert isinstance(events[0], ev.RunStarted) and events[0].resumed
    assert done.id == paused.id and done.status is RunStatus.COMPLETED and done.output == "Use DuckDB."
    assert ask.asked == ["Which database?"]
    assert [s.type for s in done.steps] == [StepType.ASK_USER, StepType.FINAL]
    assert done.steps[0].answer == "duckdb" and done.pending_question is None
    sent = backend.calls[-1].messages
    assert [m.content for m in sent[-2:]] == ["[ASK_USER] Which database?", "duckdb"]
    assert [r.step for r in log.logs] == [1, 2] and {r.run_id for r in log.logs} == {paused.id}
    assert memory.remembered[-1][1]["status"] == "completed"


def test_resume_after_max_steps_gets_a_new_budget(tmp_path: Path) -> None:
    backend = ScriptedBackend(["thinking", "best effort"])
    loop, _ = make_loop(tiers(frontier=backend), tmp_path)
    first = final_run(run(collect(loop, max_steps=1)))
    assert first.status is RunStatus.MAX_STEPS_REACHED
    backend.push("more thinking", "[FINAL] done")
    second = final_run(run(collect(loop, None, resume=first, max_steps=3)))
    assert second.status is RunStatus.COMPLETED and second.output == "done" and not second.best_effort
    assert second.max_steps == 4 and len(second.steps) == 4
    # The best-effort exchange is not part of what the model sees when resumed.
    assert all(m.content != "best effort" for m in backend.calls[-1].messages)


def test_resume_refuses_a_completed_run(tmp_path: Path) -> None:
    loop, _ = make_loop(tiers(mid=ScriptedBackend(["[FINAL] x"])), tmp_path)
    done = final_run(run(collect(loop)))
    with pytest.raises(ValueError, match="completed"):
        run(collect(loop, None, resume=done))


def test_bad_calls_raise_value_error() -> None:
    registry = tiers(mid=ScriptedBackend([]))
    loop = AgenticLoop(persona=PERSONA, tiers=registry)
    with pytest.raises(ValueError):
        run(collect(loop, "  "))
    with pytest.raises(ValueError):
        run(collect(loop, "x", max_steps=0))
    with pytest.raises(ValueError):
        AgenticLoop(persona=PERSONA, tiers=registry, max_steps=0)


# -- loop guard ------------------------------------------------------------------------------


def test_loop_guard_refuses_the_third_identical_call(tmp_path: Path) -> None:
    same = ScriptedToolCall("calculator", {"expression": "2+2"})
    backend = ScriptedBackend([Reply(tool_calls=[same])] * 3 + ["[FINAL] 4"])
    toolbox = FakeToolbox(calculator=calculator)
    loop, _ = make_loop(tiers(mid=backend), tmp_path, toolbox=toolbox, options=EngineOptions(loop_guard=3))
    events = run(collect(loop))
    result = final_run(events)
    assert len(toolbox.dispatched) == 2
    guard = [e for e in events if isinstance(e, ev.LoopGuardTriggered)]
    assert guard == [ev.LoopGuardTriggered("calculator", {"expression": "2+2"}, 3)]
    third = result.steps[2].tool_calls[0]
    assert third.repeated and third.is_error and "already called calculator" in third.result
    assert result.status is RunStatus.COMPLETED


# -- cancellation ----------------------------------------------------------------------------


def test_cancel_before_the_run_makes_no_model_call(tmp_path: Path) -> None:
    backend = ScriptedBackend(["[FINAL] never"])
    loop, _ = make_loop(tiers(mid=backend), tmp_path)
    token = CancelToken()
    token.cancel()
    result = final_run(run(collect(loop, cancel=token)))
    assert result.status is RunStatus.CANCELLED and result.steps == () and backend.call_count == 0


def test_cancel_mid_stream(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], ScriptedBackend]:
        hanging = asyncio.Event()
        backend = ScriptedBackend([Hang(hanging, after_deltas=("I am think",))])
        loop, log = make_loop(tiers(mid=backend), tmp_path)
        token = CancelToken()
        events: list[Any] = []

        async def consume() -> None:
            async for e in loop.run("task", cancel=token):
                events.append(e)

        task = asyncio.ensure_future(consume())
        await hanging.wait()
        token.cancel()
        await asyncio.wait_for(task, 5)
        return events, log

    events, log = run(scenario())
    result = final_run(events)
    assert result.status is RunStatus.CANCELLED
    assert result.steps[0].type is StepType.CANCELLED
    assert log.logs[0].status == "interrupted" and log.logs[0].attempts[-1].outcome == "interrupted"
    assert Run.load(tmp_path / "runs" / f"{result.id}.json").status is RunStatus.CANCELLED


def test_cancel_mid_tool_interrupts_the_tool_and_keeps_calls_paired(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Any], MemoryTurnLogWriter]:
        tool_running = asyncio.Event()
        tool_cancelled = asyncio.Event()

        async def slow(**_: Any) -> str:
            tool_running.set()
            try:
                await asyncio.get_running_loop().create_future()
            except asyncio.CancelledError:
                tool_cancelled.set()
                raise
            return "never"

        calls = [ScriptedToolCall("slow", {"n": 1}), ScriptedToolCall("calculator", {"expression": "1"})]
        backend = ScriptedBackend([Reply(tool_calls=calls)])
        loop, log = make_loop(tiers(mid=backend), tmp_path, toolbox=FakeToolbox(slow=slow, calculator=calculator))
        token = CancelToken()
        events: list[Any] = []

        async def consume() -> None:
            async for e in loop.run("task", cancel=token):
                events.append(e)

        task = asyncio.ensure_future(consume())
        await tool_running.wait()
        token.cancel()
        await asyncio.wait_for(task, 5)
        assert tool_cancelled.is_set()
        return events, log

    events, log = run(scenario())
    result = final_run(events)
    assert result.status is RunStatus.CANCELLED
    assert result.steps[0].type is StepType.TOOL_CALL
    assert log.logs[0].status == "interrupted"
    # The context keeps the assistant's calls with a result for each, so a resume is valid.
    roles = [m["role"] for m in result.context]
    assert roles[-3:] == ["assistant", "tool", "tool"]
    assert len(result.context[-3]["tool_calls"]) == 2
    assert all("Cancelled by the person" in m["content"] for m in result.context[-2:])

    # Resuming sends the restored calls and their results, then continues.
    backend = ScriptedBackend(["[FINAL] resumed fine"])
    loop, _ = make_loop(tiers(mid=backend), tmp_path, toolbox=FakeToolbox(calculator=calculator))
    done = final_run(run(collect(loop, None, resume=Run.load(tmp_path / "runs" / f"{result.id}.json"))))
    assert done.status is RunStatus.COMPLETED and done.output == "resumed fine"
    sent = backend.calls[0].messages
    assert [c.name for c in sent[-3].tool_calls] == ["slow", "calculator"]
    assert [m.metadata["tool_call_id"] for m in sent[-2:]] == [c.call_id for c in sent[-3].tool_calls]
    assert backend.calls[0].messages[0].role == "system" and sent[1].content == "TASK: task"


def test_cancel_while_waiting_for_an_answer_keeps_the_question(tmp_path: Path) -> None:
    async def scenario() -> list[Any]:
        asking = asyncio.Event()
        backend = ScriptedBackend(["[ASK_USER] Which one?"])
        loop, _ = make_loop(tiers(mid=backend), tmp_path)
        token = CancelToken()

        async def ask(question: str) -> str:
            asking.set()
            await asyncio.get_running_loop().create_future()
            return "never"

        events: list[Any] = []

        async def consume() -> None:
            async for e in loop.run("task", cancel=token, ask=ask):
                events.append(e)

        task = asyncio.ensure_future(consume())
        await asking.wait()
        token.cancel()
        await asyncio.wait_for(task, 5)
        return events

    result = final_run(run(scenario()))
    assert result.status is RunStatus.CANCELLED and result.pending_question == "Which one?"
    assert result.steps[0].type is StepType.ASK_USER and result.steps[0].answer is None


def test_cancelling_the_consumer_task_saves_a_cancelled_run(tmp_path: Path) -> None:
    async def scenario() -> None:
        hanging = asyncio.Event()
        backend = ScriptedBackend([Hang(hanging)])
        loop, log = make_loop(tiers(mid=backend), tmp_path)

        async def consume() -> None:
            async for _ in loop.run("task"):
                pass

        task = asyncio.ensure_future(consume())
        await hanging.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [r.status for r in log.logs] == ["interrupted"]

    run(scenario())
    (saved,) = list_runs(tmp_path / "runs")
    assert saved.status is RunStatus.CANCELLED and saved.steps[0].type is StepType.CANCELLED


def test_cancel_from_another_thread(tmp_path: Path) -> None:
    import threading

    async def scenario() -> Run:
        hanging = threading.Event()
        backend = ScriptedBackend([Hang(hanging)])
        loop, _ = make_loop(tiers(mid=backend), tmp_path)
        token = CancelToken()
        canceller = threading.Thread(target=lambda: (hanging.wait(5), token.cancel()))
        canceller.start()
        events = await asyncio.wait_for(collect(loop, "task", cancel=token), 10)
        canceller.join()
        return final_run(events)

    assert run(scenario()).status is RunStatus.CANCELLED


# -- compaction ------------------------------------------------------------------------------


def test_compaction_summarises_on_small_and_never_splits_a_tool_group(tmp_path: Path) -> None:
    big_result = "data " * 120

    async def fetch(page: int) -> str:
        return f"page {page}: {big_result}"

    pages = [Reply(f"Fetching page {i}.", tool_calls=[ScriptedToolCall("fetch", {"page": i})]) for i in range(6)]
    worker = ScriptedBackend([*pages, "[FINAL] all pages read"], model_name="worker")
    small = ScriptedBackend(default=Reply("Pages 0-3 were read; each held data."), model_name="tiny")
    window = 1400
    registry = TierRegistry(
        [
            TierConfig(name="frontier", models=(ModelSlot("scripted", "worker", backend=worker),), context_window=window),
            TierConfig(name="mid", models=(ModelSlot("scripted", "worker", backend=worker),), context_window=window),
            TierConfig(name="small", models=(ModelSlot("scripted", "tiny", backend=small),), context_window=window),
        ]
    )
    loop, log = make_loop(registry, tmp_path, toolbox=FakeToolbox(fetch=fetch), options=EngineOptions(reply_tokens=200), keep_recent=3)
    events = run(collect(loop, max_steps=10))
    result = final_run(events)
    assert result.status is RunStatus.COMPLETED
    compactions = [e for e in events if isinstance(e, ev.StepsCompacted)]
    assert compactions and compactions[0].summary_model == "tiny"
    assert small.calls and all(c.method == "chat" for c in small.calls)
    assert any(s.compacted for s in result.steps) and any(r.history_compacted for r in log.logs)
    for call in worker.calls:
        messages = call.messages
        assert messages[0].role == "system" and messages[1].content.startswith("TASK:")
        for i, m in enumerate(messages):
            if m.role == "tool":
                owner = next(p for p in reversed(messages[:i]) if p.role != "tool")
                assert owner.role == "assistant" and m.metadata["tool_call_id"] in {c.call_id for c in owner.tool_calls}
    assert any(m.content.startswith("Earlier in this run: Pages 0-3") for m in worker.calls[-1].messages)


# -- records ---------------------------------------------------------------------------------


def test_run_records_and_list(tmp_path: Path) -> None:
    loop, _ = make_loop(tiers(mid=ScriptedBackend(["[FINAL] a", "[FINAL] b"])), tmp_path, persona_path=Path("p.yaml"))
    first = final_run(run(collect(loop, "one")))
    second = final_run(run(collect(loop, "two")))
    listed = list_runs(tmp_path / "runs")
    assert [r.id for r in listed] == [second.id, first.id]
    assert first.persona_path and first.persona_path.endswith("p.yaml")
    data = json.loads((tmp_path / "runs" / f"{first.id}.json").read_text())
    assert data["status"] == "completed" and data["steps"][0]["type"] == "final"
    assert data["created_at"].endswith("Z") or "+00:00" in data["created_at"]
    with pytest.raises(LookupError):
        find_run(tmp_path / "runs", "nope-not-there")
    with pytest.raises(LookupError):
        find_run(tmp_path / "runs", "../etc")


def test_event_to_dict_is_json(tmp_path: Path) -> None:
    loop, _ = make_loop(
        tiers(mid=ScriptedBackend([Reply(tool_calls=[ScriptedToolCall("calculator", {"expression": "3"})]), "[FINAL] 3"])),
        tmp_path,
    )
    events = run(collect(loop))
    lines = [json.dumps(ev.event_to_dict(e)) for e in events]
    last = json.loads(lines[-1])
    assert last["type"] == "run_finished" and last["status"] == "completed" and "usage" in last and "cost_cents" in last
    assert json.loads(lines[0])["type"] == "run_started"
    assert any(json.loads(x)["type"] == "tool_call_started" for x in lines)


def test_the_run_file_keeps_no_secret_from_the_task_or_the_replies(tmp_path: Path) -> None:
    backend = ScriptedBackend(["[FINAL] Stored sk-live-abcdefghijkl0123 safely."])
    loop, _ = make_loop(tiers(frontier=backend), tmp_path)
    result = final_run(run(collect(loop, "Keep my key sk-live-abcdefghijkl0123 in mind")))
    saved = (tmp_path / "runs" / f"{result.id}.json").read_text()
    assert "sk-live-abcdefghijkl0123" not in saved and "[redacted]" in saved
    assert result.output == "Stored [redacted] safely."
