"""What memory recalled for a turn: the MemoryRecalled event, the TurnLog's recalled ids, the
recall summary line, and /why, /memory, /forget, /remember, /recall in the REPL."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest
from persona.schema.conversation import Conversation
from rich.console import Console

from persona_runtime import events as ev
from persona_runtime.loop import ConversationLoop
from persona_runtime.memory_admin import MemoryAdmin
from persona_runtime.testing import Reply, ScriptedBackend
from persona_runtime.tier import TierConfig, TierRegistry
from persona_runtime.turnlog import MemoryTurnLogWriter


@pytest.fixture(autouse=True)
def _facts_recalled_per_message(monkeypatch) -> None:
    """These tests are about recall, so the persona's self facts and views are recalled per
    message as for a persona with too many to stand in the system message (test_standing.py)."""
    monkeypatch.setattr("persona_runtime.memory.STANDING_MAX_ENTRIES", 0)


def _turn(tmp_path, memories, text: str = "tell me about the boat", backend: ScriptedBackend | None = None, **options):
    from persona_runtime.engine.engine import EngineOptions

    memory = memories.open(tmp_path)
    note = MemoryAdmin(memory).add("episodic", "The person's boat is called Tern.")
    backend = backend or ScriptedBackend([Reply("Sure.")])
    tiers = TierRegistry([TierConfig.from_backend("mid", backend)])
    log = MemoryTurnLogWriter()
    loop = ConversationLoop(
        persona=memory.persona, tiers=tiers, memory=memory, turn_log=log, options=EngineOptions(**options)
    )
    conversation = Conversation(conversation_id="c1", persona_id="tess")

    async def collect() -> list[ev.TurnEvent]:
        return [e async for e in loop.turn(conversation, text)]

    return asyncio.run(collect()), log, note, loop


def test_the_turn_says_what_was_recalled_and_the_turnlog_keeps_the_ids(tmp_path, memories) -> None:
    events, log, note, _loop = _turn(tmp_path, memories)
    recalled = [e for e in events if isinstance(e, ev.MemoryRecalled)]
    assert len(recalled) == 1 and events.index(recalled[0]) < next(
        i for i, e in enumerate(events) if isinstance(e, ev.RoutingDecided)
    )
    entries = recalled[0].entries
    assert {e.store for e in entries} == {"self_facts", "worldview", "episodic"}  # identity is always sent, not listed
    tern = next(e for e in entries if e.id == note.id)
    assert tern.first_line == "The person's boat is called Tern." and tern.score is not None and tern.created_at is not None
    assert set(log.logs[0].recalled) == {e.id for e in entries} and note.id in log.logs[0].recalled
    assert '"recalled":[' in log.logs[0].to_json_line()


def test_a_local_model_is_sent_what_fits_its_recall_budget_and_the_turnlog_says_so(tmp_path, memories) -> None:
    local = ScriptedBackend([Reply("Sure.")], provider_name="gguf")
    events, log, note, _loop = _turn(tmp_path, memories, backend=local, local_recall_tokens=12)
    first, sent = [e for e in events if isinstance(e, ev.MemoryRecalled)]
    assert note.id in first.ids and len(sent.ids) < len(first.ids)  # recalled, then trimmed for this model
    assert log.logs[0].recalled == sent.ids
    prompt = local.last_messages[-1].content
    left_out = [e.first_line for e in first.entries if e.id not in sent.ids]
    assert left_out and not any(line.split(": ", 1)[-1] in prompt for line in left_out)


def test_a_remote_model_gets_everything_recalled(tmp_path, memories) -> None:
    events, log, _note, _loop = _turn(tmp_path, memories, local_recall_tokens=12)
    [recalled] = [e for e in events if isinstance(e, ev.MemoryRecalled)]
    assert log.logs[0].recalled == recalled.ids and len(recalled.ids) == 4


def test_the_summary_line_counts_by_store() -> None:
    def entry(store: str) -> ev.RecalledEntry:
        return ev.RecalledEntry(store=store, id=f"x::{store}", score=0.5, created_at=datetime.now(UTC), first_line="t")

    assert ev.MemoryRecalled((entry("episodic"), entry("episodic"), entry("self_facts"))).summary() == "recalled: 2 episodic · 1 fact"
    assert ev.MemoryRecalled((entry("worldview"),)).summary() == "recalled: 1 view"
    assert ev.MemoryRecalled(()).summary() == "recalled: nothing"


def _consoles() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200, force_terminal=False, color_system=None), buffer


def test_turn_view_prints_the_summary_only_when_asked(tmp_path, memories) -> None:
    from persona_cli.turn_view import TurnView

    events, _log, _note, _loop = _turn(tmp_path, memories)
    for show in (True, False):
        out, _ = _consoles()
        info, buffer = _consoles()
        view = TurnView(out=out, info=info, show_recall=show)
        for event in events:
            view.handle(event)
        assert ("recalled: 1 episodic · 2 facts · 1 view" in buffer.getvalue()) is show
        assert view.recalled is not None


def _slash_ctx(loop: ConversationLoop, last_recall=None):
    from persona_cli.slash import SlashContext

    info, buffer = _consoles()

    async def built() -> ConversationLoop:
        return loop

    session = SimpleNamespace(loop=built, built_loop=loop, persona_id="tess", settings=SimpleNamespace(show_recall=False))
    ctx = SlashContext(session=session, tier="auto", totals=None, out=info, info=info, last_recall=last_recall)
    return ctx, buffer


def test_why_lists_the_last_turns_recall_and_forget_and_remember_change_memory(tmp_path, memories) -> None:
    from persona_cli.slash import handle_slash

    events, _log, note, loop = _turn(tmp_path, memories)
    recalled = next(e for e in events if isinstance(e, ev.MemoryRecalled))
    ctx, buffer = _slash_ctx(loop, recalled)
    asyncio.run(handle_slash(ctx, "/why"))
    text = buffer.getvalue()
    assert "recalled: 1 episodic · 2 facts · 1 view" in text
    assert note.id.removeprefix("tess::") in text and "The person's boat is called Tern." in text and "identity is always sent" in text

    asyncio.run(handle_slash(ctx, "/remember --fact I keep a spare tiller."))
    asyncio.run(handle_slash(ctx, "/remember The mast was replaced in May."))
    asyncio.run(handle_slash(ctx, f"/forget {note.id[-10:]}"))
    asyncio.run(handle_slash(ctx, "/memory 5"))
    admin = MemoryAdmin(loop.memory)
    texts = [e.text for e in admin.list_entries()]
    assert "self_fact: I keep a spare tiller." in texts and "The mast was replaced in May." in texts
    assert not [t for t in texts if "Tern" in t]
    out = buffer.getvalue()
    assert "remembered as a self fact" in out and "forgot episodic::" in out and "The mast was replaced in May." in out.split("forgot")[1]


def test_why_before_any_turn_and_recall_toggle(tmp_path, memories) -> None:
    from persona_cli.slash import handle_slash

    _events, _log, _note, loop = _turn(tmp_path, memories)
    ctx, buffer = _slash_ctx(loop)
    asyncio.run(handle_slash(ctx, "/why"))
    asyncio.run(handle_slash(ctx, "/forget no-such-entry"))
    assert "no turn has recalled anything yet" in buffer.getvalue() and "✗ no memory entry 'no-such-entry'" in buffer.getvalue()
    assert ctx.show_recall is False
    asyncio.run(handle_slash(ctx, "/recall on"))
    assert ctx.show_recall is True and "recall summary after each turn: on" in buffer.getvalue()
