"""ConversationLoop on ScriptedBackend tiers: events, write-back, tools, fallback, cancel, compaction."""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import pytest
from persona.backends.errors import ProviderError, RateLimitError
from persona.schema.conversation import Conversation, ConversationMessage
from persona.schema.persona import Persona

from persona_runtime import events as ev
from persona_runtime.history import HistoryWindow
from persona_runtime.loop import ConversationLoop
from persona_runtime.memory import PersonaMemory
from persona_runtime.routing import HeuristicRouter
from persona_runtime.testing import Hang, Raise, Reply, ScriptedBackend, ScriptedToolCall
from persona_runtime.tier import TierConfig, TierRegistry
from persona_runtime.turnlog import MemoryTurnLogWriter

PERSONA = Persona.model_validate(
    {
        "persona_id": "tester",
        "identity": {
            "name": "Tess",
            "role": "test persona",
            "background": "Exists to be tested.",
            "constraints": ["Do not fabricate facts."],
        },
        "self_facts": [{"fact": "I like exact answers."}],
        "worldview": [{"claim": "Tests should be able to fail.", "epistemic": "belief"}],
        "tools": ["calculator", "file_write"],
    }
)


def calculator_toolbox():
    from persona.tools import Toolbox
    from persona.tools.builtin.calculator import make_calculator_tool

    return Toolbox([make_calculator_tool()], allow_list=["calculator"])


def make_tiers(**backends: ScriptedBackend) -> TierRegistry:
    return TierRegistry([TierConfig.from_backend(name, b) for name, b in backends.items()])


def make_loop(tiers: TierRegistry, *, memory=None, toolbox=None, **kw) -> tuple[ConversationLoop, MemoryTurnLogWriter]:
    log = MemoryTurnLogWriter()
    loop = ConversationLoop(
        persona=PERSONA, tiers=tiers, memory=memory, router=HeuristicRouter(tiers), toolbox=toolbox, turn_log=log, **kw
    )
    return loop, log


def new_conversation() -> Conversation:
    return Conversation(conversation_id="c1", persona_id="tester")


async def collect(loop: ConversationLoop, conv: Conversation, text: str, **kw) -> list[ev.TurnEvent]:
    return [e async for e in loop.turn(conv, text, **kw)]


def run(coro):
    return asyncio.run(coro)


def test_streams_text_and_finishes_once() -> None:
    frontier = ScriptedBackend([Reply("Hello there, friend.")], model_name="big")
    loop, log = make_loop(make_tiers(frontier=frontier))
    conv = new_conversation()
    events = run(collect(loop, conv, "hi"))

    assert isinstance(events[0], ev.RoutingDecided)
    assert events[0].decision.tier == "frontier"
    assert events[0].decision.rationale.startswith("first_turn")
    text = "".join(e.text for e in events if isinstance(e, ev.TextDelta))
    assert text == "Hello there, friend."
    assert sum(isinstance(e, ev.TextDelta) for e in events) > 1  # streamed, not one blob
    finished = [e for e in events if isinstance(e, ev.TurnFinished)]
    assert len(finished) == 1 and events[-1] is finished[0]
    assert finished[0].status == "ok" and finished[0].model == "big"
    assert [m.role for m in conv.messages] == ["user", "assistant"]
    assert conv.messages[1].content == "Hello there, friend."
    assert len(log.logs) == 1
    record = log.logs[0]
    assert record.status == "ok" and record.turn_index == 0 and record.persona_id == "tester"
    assert record.completion_tokens > 0 and record.ttft_ms is not None
    assert record.cost_cents is None  # a scripted model has no known price: unpriced, not 0
    assert [a.outcome for a in record.attempts] == ["ok"]


def test_prompt_contains_identity_rules_and_history() -> None:
    backend = ScriptedBackend(["one", "two"])
    loop, _ = make_loop(make_tiers(mid=backend))
    conv = new_conversation()
    run(collect(loop, conv, "first question"))
    run(collect(loop, conv, "second question"))
    sent = backend.calls[-1].messages
    assert sent[0].role == "system"
    assert "You are Tess, test persona." in sent[0].content
    assert "1. Do not fabricate facts." in sent[0].content
    assert [m.content for m in sent[1:]] == ["first question", "one", "second question"]


def test_tool_round_trip_with_real_toolbox() -> None:
    toolbox = calculator_toolbox()
    backend = ScriptedBackend(
        [Reply("Let me compute. ", tool_calls=[ScriptedToolCall("calculator", {"expression": "6*7"})]), Reply("It is 42.")],
        provider_name="openai",
    )
    loop, log = make_loop(make_tiers(mid=backend), toolbox=toolbox)
    events = run(collect(loop, new_conversation(), "what is six times seven?"))

    started = [e for e in events if isinstance(e, ev.ToolCallStarted)]
    done = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert [s.name for s in started] == ["calculator"] and started[0].arguments == {"expression": "6*7"}
    assert not done[0].is_error and "42" in done[0].content
    second = backend.calls[1].messages
    assert second[-2].role == "assistant" and second[-2].tool_calls[0].name == "calculator"
    assert second[-1].role == "tool" and "42" in second[-1].content
    assert backend.calls[0].tools and "calculator" in backend.calls[0].tool_names
    assert log.logs[0].tool_calls[0].name == "calculator" and log.logs[0].tool_calls[0].ok


def test_tool_rounds_are_capped_then_one_final_generation_without_tools() -> None:
    call = Reply(tool_calls=[ScriptedToolCall("calculator", {"expression": "1+1"})])
    backend = ScriptedBackend([call, call, Reply("done")])
    loop, _ = make_loop(make_tiers(mid=backend), toolbox=calculator_toolbox(), max_tool_rounds=1)
    events = run(collect(loop, new_conversation(), "loop forever"))
    assert sum(isinstance(e, ev.ToolCallStarted) for e in events) == 1
    assert backend.call_count == 3
    assert backend.calls[2].tools in (None, [], ())
    assert "maximum number of tool calls" in backend.calls[2].messages[-1].content


def test_hallucinated_tool_and_bad_arguments_go_back_to_the_model() -> None:
    backend = ScriptedBackend(
        [
            Reply(tool_calls=[ScriptedToolCall("teleport", {"to": "mars"}), ScriptedToolCall("calculator", raw_arguments="{not json")]),
            Reply("Sorry."),
        ]
    )
    loop, log = make_loop(make_tiers(mid=backend), toolbox=calculator_toolbox())
    events = run(collect(loop, new_conversation(), "go"))
    results = [e for e in events if isinstance(e, ev.ToolCallFinished)]
    assert [r.is_error for r in results] == [True, True]
    assert "not available" in results[0].content and "calculator" in results[0].content
    assert events[-1].status == "ok"
    assert [t.ok for t in log.logs[0].tool_calls] == [False, False]


def test_declined_side_effect_tool_is_reported_to_the_model() -> None:
    from persona.schema.tools import ToolResult
    from persona.tools import Toolbox, tool

    ran: list[str] = []

    @tool(name="file_write", description="Write a file.")
    async def file_write(path: str, content: str) -> ToolResult:
        ran.append(path)
        return ToolResult(tool_name="file_write", content="written")

    asked: list[str] = []

    async def deny(call) -> bool:
        asked.append(call.name)
        return False

    backend = ScriptedBackend([Reply(tool_calls=[ScriptedToolCall("file_write", {"path": "x.txt", "content": "hi"})]), Reply("OK, not writing.")])
    loop, _ = make_loop(make_tiers(mid=backend), toolbox=Toolbox([file_write], allow_list=["file_write"]))
    events = run(collect(loop, new_conversation(), "write it", approve=deny))
    assert asked == ["file_write"] and ran == []
    finished = next(e for e in events if isinstance(e, ev.ToolCallFinished))
    assert finished.approved is False and finished.is_error
    assert "declined" in backend.calls[1].messages[-1].content


def test_provider_error_falls_back_to_the_next_tier_and_logs_every_attempt() -> None:
    frontier = ScriptedBackend([Raise(ProviderError("boom", context={"provider": "x"}))], model_name="big")
    mid = ScriptedBackend([Reply("from mid")], model_name="medium")
    loop, log = make_loop(make_tiers(frontier=frontier, mid=mid))
    conv = new_conversation()
    events = run(collect(loop, conv, "hello"))
    fallback = [e for e in events if isinstance(e, ev.FallbackTriggered)]
    assert len(fallback) == 1
    assert (fallback[0].failed_model, fallback[0].next_tier, fallback[0].next_model) == ("big", "mid", "medium")
    assert events[-1].status == "ok" and events[-1].text == "from mid"
    record = log.logs[0]
    assert [(a.tier, a.outcome) for a in record.attempts] == [("frontier", "error"), ("mid", "ok")]
    assert record.attempts[0].error_type == "ProviderError" and record.fallback
    assert record.tier == "mid" and record.model == "medium"


def test_stream_cut_mid_reply_restarts_on_the_next_model() -> None:
    frontier = ScriptedBackend([Raise(ProviderError("cut"), after_deltas=("partial ",))])
    mid = ScriptedBackend([Reply("whole reply")])
    loop, _ = make_loop(make_tiers(frontier=frontier, mid=mid))
    conv = new_conversation()
    events = run(collect(loop, conv, "hello"))
    fallback = next(e for e in events if isinstance(e, ev.FallbackTriggered))
    assert fallback.discarded_text is True
    assert events[-1].text == "whole reply"
    assert conv.messages[-1].content == "whole reply"


def test_short_retry_after_is_waited_out_on_the_same_model() -> None:
    limited = RateLimitError("slow down", context={"provider": "x", "retry_after_s": "0"})
    mid = ScriptedBackend([Raise(limited), Reply("after waiting")])
    loop, log = make_loop(make_tiers(mid=mid))
    events = run(collect(loop, new_conversation(), "hello", tier="mid"))
    waits = [e for e in events if isinstance(e, ev.RetryWaiting)]
    assert len(waits) == 1 and waits[0].seconds == 0
    assert not any(isinstance(e, ev.FallbackTriggered) for e in events)
    assert events[-1].text == "after waiting"
    assert [a.outcome for a in log.logs[0].attempts] == ["error", "ok"]


def test_all_models_failing_keeps_the_message_and_logs_error() -> None:
    frontier = ScriptedBackend([Raise(ProviderError("down"))])
    mid = ScriptedBackend([Raise(ProviderError("also down"))])
    loop, log = make_loop(make_tiers(frontier=frontier, mid=mid))
    conv = new_conversation()
    events = run(collect(loop, conv, "are you there?"))
    failed = [e for e in events if isinstance(e, ev.TurnFailed)]
    assert len(failed) == 1 and "2 attempts" in failed[0].message
    assert events[-1].status == "error"
    assert [(m.role, m.content, m.metadata["status"]) for m in conv.messages] == [("user", "are you there?", "error")]
    assert log.logs[0].status == "error" and len(log.logs[0].attempts) == 2

    # The failed message is not re-sent as history on the next turn.
    mid.push(Reply("back"))
    frontier.push(Reply("back"))
    run(collect(loop, conv, "retry", tier="mid"))
    assert [m.content for m in mid.calls[-1].messages[1:]] == ["retry"]


def test_cancel_mid_stream_keeps_partial_reply_marked_interrupted() -> None:
    waiting = threading.Event()
    backend = ScriptedBackend([Hang(waiting, after_deltas=("Partial ", "answer"))])
    loop, log = make_loop(make_tiers(mid=backend))
    conv = new_conversation()
    seen: list[ev.TurnEvent] = []

    async def main() -> None:
        async def consume() -> None:
            async for e in loop.turn(conv, "tell me a long story", tier="mid"):
                seen.append(e)

        task = asyncio.ensure_future(consume())
        while not waiting.is_set():
            await asyncio.sleep(0)  # yield to the task until the backend signals it is hanging
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run(main())
    assert "".join(e.text for e in seen if isinstance(e, ev.TextDelta)) == "Partial answer"
    assert not any(isinstance(e, ev.TurnFinished) for e in seen)
    assert [(m.role, m.metadata["status"]) for m in conv.messages] == [("user", "interrupted"), ("assistant", "interrupted")]
    assert conv.messages[1].content == "Partial answer"
    assert len(log.logs) == 1 and log.logs[0].status == "interrupted"
    assert [a.outcome for a in log.logs[0].attempts] == ["interrupted"]


def test_closing_the_generator_early_records_the_turn_once() -> None:
    backend = ScriptedBackend([Reply("a b c d")])
    loop, log = make_loop(make_tiers(mid=backend))
    conv = new_conversation()

    async def main() -> None:
        gen = loop.turn(conv, "hi", tier="mid")
        async for e in gen:
            if isinstance(e, ev.TextDelta):
                break
        await gen.aclose()

    run(main())
    assert len(log.logs) == 1 and log.logs[0].status == "interrupted"
    assert conv.messages[-1].metadata["status"] == "interrupted"


def test_history_compaction_uses_a_real_small_tier_summary_and_cuts_between_turns() -> None:
    small = ScriptedBackend([Reply("SUMMARY: they talked about tides.")], model_name="tiny")
    mid = ScriptedBackend([Reply("fine"), Reply("still fine")], model_name="medium")
    loop, log = make_loop(make_tiers(mid=mid, small=small), history_window=HistoryWindow(compact_after=10, keep_recent_turns=3))
    conv = new_conversation()
    now = datetime.now(UTC)
    for i in range(6):
        conv.messages.append(ConversationMessage(role="user", content=f"question {i}", created_at=now))
        conv.messages.append(ConversationMessage(role="assistant", content=f"answer {i}", created_at=now))
    events = run(collect(loop, conv, "and now?", tier="mid"))
    compacted = [e for e in events if isinstance(e, ev.HistoryCompacted)]
    assert len(compacted) == 1 and compacted[0].messages_folded == 6 and compacted[0].summary_model == "tiny"
    assert small.calls[0].method == "chat"
    assert "question 0" in small.calls[0].messages[-1].content and "question 3" not in small.calls[0].messages[-1].content
    sent = mid.calls[0].messages
    assert sent[1].role == "system" and "SUMMARY: they talked about tides." in sent[1].content
    # Whole turns stay verbatim: the history starts with a question, never with an orphaned answer.
    assert [m.content for m in sent[2:-1]] == ["question 3", "answer 3", "question 4", "answer 4", "question 5", "answer 5"]
    assert conv.compacted_up_to == 6 and log.logs[0].history_compacted
    # The next turn is under the threshold again (8 verbatim messages): no new summary is asked for.
    events = run(collect(loop, conv, "one more", tier="mid"))
    assert not [e for e in events if isinstance(e, ev.HistoryCompacted)] and len(small.calls) == 1
    assert "SUMMARY: they talked about tides." in mid.calls[1].messages[1].content


def test_history_window_cuts_at_a_user_message_even_after_a_failed_turn() -> None:
    now = datetime.now(UTC)
    roles = ["user", "assistant", "user", "user", "assistant", "user", "assistant", "user", "assistant"]  # turn 2 failed
    messages = [ConversationMessage(role=r, content=str(i), created_at=now) for i, r in enumerate(roles)]
    window = HistoryWindow(compact_after=4, keep_recent_turns=2)
    assert window.due(messages, 0) == 5 and messages[5].role == "user"
    assert window.due(messages, 5) is None  # 4 verbatim messages: not over the threshold
    assert HistoryWindow(compact_after=4, keep_recent_turns=9).due(messages, 0) is None  # fewer turns than kept


def test_episodic_write_back_and_recall_with_real_chroma(tmp_path, memories) -> None:
    from persona.stores import HashEmbedder

    memory = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "chroma", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    memory.load()
    backend = ScriptedBackend(["Noted: your cat is called Pus.", "ok"])
    loop, _ = make_loop(make_tiers(mid=backend), memory=memory)
    conv = new_conversation()
    run(collect(loop, conv, "my cat is called Pus", tier="mid"))
    stored = memory.stores["episodic"].get_all("tester")
    assert len(stored) == 1 and "USER: my cat is called Pus" in stored[0].text
    # The next turn recalls it, in front of the person's message.
    run(collect(loop, new_conversation(), "what is my cat called?", tier="mid"))
    assert "my cat is called Pus" in backend.calls[1].messages[-1].content
    # The persona's few self facts stand in the system message instead of being recalled per message.
    assert "Relevant facts about yourself:" not in backend.calls[1].messages[-1].content
    assert "Facts about yourself:" in backend.calls[1].messages[0].content
    assert backend.calls[1].messages[-1].content.endswith("what is my cat called?")


def test_interrupted_turn_writes_no_episodic_memory(tmp_path, memories) -> None:
    from persona.stores import HashEmbedder

    memory = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "chroma", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    memory.load()
    backend = ScriptedBackend([Reply("x y z")])
    loop, _ = make_loop(make_tiers(mid=backend), memory=memory)

    async def main() -> None:
        gen = loop.turn(new_conversation(), "hi", tier="mid")
        async for e in gen:
            if isinstance(e, ev.TextDelta):
                break
        await gen.aclose()

    run(main())
    assert memory.stores["episodic"].get_all("tester") == []


def test_persona_override_pins_the_tier() -> None:
    pinned = PERSONA.model_copy(update={"routing": PERSONA.routing.model_copy(update={"tier_for_generation": "small"})})
    small = ScriptedBackend(["pinned"])
    tiers = make_tiers(frontier=ScriptedBackend([]), small=small)
    loop = ConversationLoop(persona=pinned, tiers=tiers, router=HeuristicRouter(tiers))
    events = run(collect(loop, new_conversation(), "hello"))
    assert events[0].decision.tier == "small" and "persona_override" in events[0].decision.rationale
    assert events[-1].text == "pinned"


def test_a_message_longer_than_every_context_window_fails_that_turn_only() -> None:
    backend = ScriptedBackend([Reply("Short answer.")])
    loop, log = make_loop(make_tiers(mid=backend))
    conv = new_conversation()
    huge = "word " * (8_192 * 2)  # ~16k tokens by the routers' estimate; the window is 8,192
    events = run(collect(loop, conv, huge, tier="mid"))
    failed = [e for e in events if isinstance(e, ev.TurnFailed)]
    assert [f.error_type for f in failed] == ["MessageTooLong"] and "largest context window" in failed[0].message
    assert events[-1].status == "error" and backend.call_count == 0
    assert conv.messages[-1].content == huge  # kept, as every failed message is, for /retry
    events = run(collect(loop, conv, "A short one, then.", tier="mid"))
    assert events[-1].status == "ok" and events[-1].text == "Short answer."
    assert [r.status for r in log.logs] == ["error", "ok"]


def test_a_secret_in_a_turn_never_reaches_memory(tmp_path, monkeypatch, memories) -> None:
    from persona.stores import HashEmbedder

    monkeypatch.setenv("PERSONA_MID_API_KEY", "env-secret-value-1234")
    memory = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "chroma", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    memory.load()
    backend = ScriptedBackend(["Got it: sk-live-abcdefghijkl0123 and env-secret-value-1234 noted."])
    loop, _ = make_loop(make_tiers(mid=backend), memory=memory)
    run(collect(loop, new_conversation(), "my key is sk-live-abcdefghijkl0123, keep it safe", tier="mid"))
    stored = memory.stores["episodic"].get_all("tester")[0].text
    assert "sk-live-abcdefghijkl0123" not in stored and "env-secret-value-1234" not in stored
    assert stored.count("[redacted]") == 3


def test_a_turn_log_that_cannot_be_written_never_breaks_the_turn() -> None:
    class FullDisk:
        def write(self, log: object) -> None:
            raise OSError(28, "No space left on device", "turns.jsonl")

    loop = ConversationLoop(persona=PERSONA, tiers=make_tiers(mid=ScriptedBackend(["fine"])), turn_log=FullDisk())
    events = run(collect(loop, new_conversation(), "hello", tier="mid"))
    assert events[-1].status == "ok" and events[-1].text == "fine"
    assert loop.events.take_failures() == ["No space left on device: turns.jsonl"]
    assert loop.events.take_failures() == []


def test_a_subscriber_bug_is_not_swallowed() -> None:
    def broken(_event: object) -> None:
        raise AssertionError("a bug")

    loop = ConversationLoop(persona=PERSONA, tiers=make_tiers(mid=ScriptedBackend(["fine"])), subscribers=[broken])
    with pytest.raises(AssertionError):
        run(collect(loop, new_conversation(), "hello", tier="mid"))
