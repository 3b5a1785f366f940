"""The conversation store: files, crash safety, prefixes, undo; written by the real loop."""

from __future__ import annotations

import asyncio
import json
import stat

import pytest
from persona.schema.conversation import Conversation
from persona.stores import HashEmbedder

from persona_runtime.conversations import ConversationNotFound, ConversationRecorder, ConversationStore, StoredTurn
from persona_runtime.loop import ConversationLoop
from persona_runtime.memory import PersonaMemory
from persona_runtime.routing import HeuristicRouter
from persona_runtime.testing import Reply, ScriptedBackend, ScriptedToolCall
from persona_runtime.turnlog import MemoryTurnLogWriter
from persona_runtime.undo import NothingToUndo, undo_last_turn
from tests.unit.test_loop import PERSONA, calculator_toolbox, make_tiers


def turn(turn_id: str, user: str, reply: str, **kw) -> StoredTurn:
    now = "2026-11-30T08:00:00+00:00"
    return StoredTurn(
        turn_id=turn_id, index=0, status="ok", timestamp=kw.pop("timestamp", now),
        messages=[{"role": "user", "content": user, "created_at": now, "metadata": {"status": "ok"}, "tool_calls": []},
                  {"role": "assistant", "content": reply, "created_at": now, "metadata": {"status": "ok"}, "tool_calls": []}],
        **kw,
    )


def test_turns_are_appended_to_one_private_file_and_load_back(tmp_path) -> None:
    store = ConversationStore(tmp_path / "conversations")
    store.record_turn("p", "chat-1", turn("t1", "hello", "hi"))
    store.record_turn("p", "chat-1", turn("t2", "again", "yes"))
    path = store.path_for("p", "chat-1")
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["header", "turn", "turn"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    conversation = store.load("p", "chat-1")
    assert [(m.role, m.content) for m in conversation.messages] == [
        ("user", "hello"), ("assistant", "hi"), ("user", "again"), ("assistant", "yes")
    ]


def test_a_torn_last_line_is_skipped(tmp_path) -> None:
    store = ConversationStore(tmp_path)
    store.record_turn("p", "chat-1", turn("t1", "hello", "hi"))
    with store.path_for("p", "chat-1").open("ab") as f:
        f.write(b'{"type":"turn","turn_id":"t2","messages":[{"role":"us')
    assert [t.turn_id for t in store.read(store.path_for("p", "chat-1")).turns] == ["t1"]
    assert store.summaries("p")[0].turns == 1


def test_undo_and_compaction_lines_are_applied_on_read(tmp_path) -> None:
    store = ConversationStore(tmp_path)
    for i in range(3):
        store.record_turn("p", "c", turn(f"t{i}", f"q{i}", f"a{i}"))
    store.record_compaction("p", "c", "They talked.", 4)
    store.record_undo("p", "c", "t2")
    conversation = store.load("p", "c")
    assert [m.content for m in conversation.messages] == ["q0", "a0", "q1", "a1"]
    assert conversation.compacted_summary == "They talked." and conversation.compacted_up_to == 4
    store.record_undo("p", "c", "t1")  # the folded turn is undone: the boundary stays inside the history
    assert store.load("p", "c").compacted_up_to == 2
    assert len(store.read(store.path_for("p", "c"), include_undone=True).turns) == 3


def test_prefixes_resolve_like_agent_resume(tmp_path) -> None:
    store = ConversationStore(tmp_path)
    for cid in ("chat-20261130-080000-aaaaaa", "chat-20261130-080000-bbbbbb", "chat-20261129-070000-cccccc"):
        store.record_turn("p", cid, turn("t-" + cid, "q", "a"))
    assert store.find("p", "20261129") == "chat-20261129-070000-cccccc"  # "chat-" may be left out
    assert store.find("p", "chat-20261130-080000-b") == "chat-20261130-080000-bbbbbb"
    with pytest.raises(ConversationNotFound, match="ambiguous: 2 match"):
        store.find("p", "20261130")
    with pytest.raises(ConversationNotFound, match="no conversation"):
        store.find("p", "20251")
    with pytest.raises(ConversationNotFound, match="at least 4"):
        store.find("p", "202")
    with pytest.raises(ConversationNotFound, match="not a conversation id"):
        store.find("p", "../x")


def test_summaries_are_newest_first_with_a_preview(tmp_path) -> None:
    store = ConversationStore(tmp_path)
    store.record_turn("p", "chat-old", turn("t1", "q", "old answer", timestamp="2026-11-29T08:00:00+00:00"))
    store.record_turn("p", "chat-new", turn("t2", "q", "new answer\nwith two lines", timestamp="2026-11-30T08:00:00+00:00"))
    rows = store.summaries("p")
    assert [(r.id, r.last_message) for r in rows] == [("chat-new", "new answer with two lines"), ("chat-old", "old answer")]
    assert store.latest("p") == "chat-new" and store.latest("nobody") is None


def test_secrets_never_reach_the_file(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PERSONA_API_KEY", "sk-test-conversation-SECRET-99")
    store = ConversationStore(tmp_path)
    store.record_turn("p", "c", turn("t1", "my key is sk-test-conversation-SECRET-99", "ok",
                                     tools=[{"role": "tool", "content": "read sk-test-conversation-SECRET-99"}]))
    assert "SECRET-99" not in store.path_for("p", "c").read_text()


def make_loop(tmp_path, backend, *, memory=None, toolbox=None) -> tuple[ConversationLoop, ConversationStore, MemoryTurnLogWriter]:
    store = ConversationStore(tmp_path / "conversations")
    log = MemoryTurnLogWriter()
    tiers = make_tiers(mid=backend)
    loop = ConversationLoop(
        persona=PERSONA, tiers=tiers, memory=memory, router=HeuristicRouter(tiers), toolbox=toolbox, turn_log=log,
        subscribers=[ConversationRecorder(store)],
    )
    return loop, store, log


async def say(loop: ConversationLoop, conversation: Conversation, text: str) -> None:
    async for _event in loop.turn(conversation, text):
        pass


def test_the_loop_stores_each_turn_with_its_tool_calls_but_sends_only_the_exchange(tmp_path) -> None:
    backend = ScriptedBackend(
        [Reply("Let me compute. ", tool_calls=[ScriptedToolCall("calculator", {"expression": "6*7"})]), Reply("It is 42."),
         Reply("You asked about 6*7.")],
        provider_name="openai",
    )
    loop, store, log = make_loop(tmp_path, backend, toolbox=calculator_toolbox())
    conversation = Conversation(conversation_id="chat-x", persona_id="tester")
    asyncio.run(say(loop, conversation, "what is six times seven?"))
    asyncio.run(say(loop, conversation, "what did I ask?"))
    stored = store.read(store.path_for("tester", "chat-x")).turns
    assert [t.turn_id for t in stored] == [record.turn_id for record in log.logs]
    assert [m["role"] for m in stored[0].messages] == ["user", "assistant"]
    assert [m["role"] for m in stored[0].tools] == ["assistant", "tool"] and "42" in stored[0].tools[1]["content"]
    assert stored[0].tools[0]["tool_calls"][0]["name"] == "calculator"
    # What is resent as history is the exchange, as before: no tool messages.
    assert [m.role for m in backend.calls[2].messages[1:-1]] == ["user", "assistant"]
    assert store.load("tester", "chat-x").messages == conversation.messages
    assert log.logs[0].preview == "what is six times seven?"


def test_undo_removes_the_exchange_the_file_turn_and_the_memory_chunk(tmp_path, memories) -> None:
    memory = memories.keep(PersonaMemory.open(PERSONA, root=tmp_path / "chroma", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    backend = ScriptedBackend([Reply("Noted."), Reply("Also noted.")])
    loop, store, log = make_loop(tmp_path, backend, memory=memory)
    conversation = Conversation(conversation_id="chat-u", persona_id="tester")
    asyncio.run(say(loop, conversation, "keep this"))
    asyncio.run(say(loop, conversation, "my boat is Tern"))
    episodic = memory.stores["episodic"]
    before = {c.id for c in episodic.get_all("tester")}
    undone, problem = undo_last_turn(store, conversation, memory=memory, events=loop.events)
    assert problem is None and undone.turn_id == log.logs[1].turn_id
    assert [m.content for m in conversation.messages] == ["keep this", "Noted."]
    assert before - {c.id for c in episodic.get_all("tester")} == {undone.chunk_id}  # only that chunk went
    assert [m.content for m in store.load("tester", "chat-u").messages] == ["keep this", "Noted."]
    assert (log.logs[-1].kind, log.logs[-1].undoes) == ("undo", undone.turn_id)
    undo_last_turn(store, conversation, memory=memory, events=loop.events)
    with pytest.raises(NothingToUndo):
        undo_last_turn(store, conversation, memory=memory, events=loop.events)


def test_an_interrupted_turn_is_stored_with_its_partial_reply_marked(tmp_path) -> None:
    import threading

    from persona_runtime.testing import Hang

    waiting = threading.Event()
    loop, store, _log = make_loop(tmp_path, ScriptedBackend([Hang(waiting, after_deltas=("Partial ", "answer"))]))
    conversation = Conversation(conversation_id="chat-i", persona_id="tester")

    async def main() -> None:
        task = asyncio.ensure_future(say(loop, conversation, "tell me a long story"))
        while not waiting.is_set():
            await asyncio.sleep(0)  # yield to the task until the backend signals it is hanging
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    (stored,) = store.read(store.path_for("tester", "chat-i")).turns
    assert stored.status == "interrupted"
    assert [(m["role"], m["content"], m["metadata"]["status"]) for m in stored.messages] == [
        ("user", "tell me a long story", "interrupted"), ("assistant", "Partial answer", "interrupted")
    ]


def test_a_conversation_file_that_cannot_be_written_never_breaks_the_turn(tmp_path) -> None:
    from persona_runtime.events import TurnFinished

    loop, store, log = make_loop(tmp_path, ScriptedBackend([Reply("Still answered.")]))
    store.root.write_text("a file where the folder should be")
    conversation = Conversation(conversation_id="chat-f", persona_id="tester")

    async def main() -> list:
        return [e async for e in loop.turn(conversation, "hello")]

    events = asyncio.run(main())
    assert [e.status for e in events if isinstance(e, TurnFinished)] == ["ok"] and len(log.logs) == 1
    failures = loop.events.take_failures()
    assert len(failures) == 1 and "conversations" in failures[0]


def test_undo_records_are_not_counted_as_turns_or_cost_and_ids_match_by_prefix() -> None:
    from persona_runtime.turnlog.query import id_matches
    from persona_runtime.turnlog.record import TurnLog
    from persona_runtime.turnlog.stats import stats

    turn_record = TurnLog(conversation_id="chat-20261130-080000-aaaaaa", turn_index=0, persona_id="p", tier="mid",
                          prompt_tokens=100, completion_tokens=10, cost_cents=0.5)
    undo = TurnLog(kind="undo", conversation_id=turn_record.conversation_id, turn_index=0, persona_id="p", undoes=turn_record.turn_id)
    records = [json.loads(r.to_json_line()) for r in (turn_record, undo)]
    (total,) = stats(records, "all")
    assert (total.turns, total.prompt_tokens, total.cost_cents, total.unpriced) == (1, 100, 0.5, 0)
    cid = turn_record.conversation_id
    assert id_matches(cid, cid) and id_matches(cid, "chat-20261130") and id_matches(cid, "20261130-08")
    assert not id_matches(cid, "20261") and not id_matches(cid, "20261201") and not id_matches(None, "20261130")
