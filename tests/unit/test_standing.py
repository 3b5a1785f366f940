"""A persona's few self facts and views stand in its system message (read from the store each
turn, corrections included) instead of being recalled per message; a snapshot beside the store
predicts them for the next launch. Real parts: embedded Chroma on a temp dir, the hash embedder."""

from __future__ import annotations

import asyncio

from persona.schema.conversation import Conversation

from persona_runtime.loop import ConversationLoop
from persona_runtime.memory_admin import MemoryAdmin
from persona_runtime.prompt import PromptBuilder, RetrievedContext, fit_recall
from persona_runtime.standing import (
    STANDING_MAX_ENTRIES, Standing, predict_standing, read_snapshot, snapshot_path, standing_from_persona,
)
from persona_runtime.testing import Reply, ScriptedBackend
from persona_runtime.tier import TierConfig, TierRegistry
from tests.support.memory import PERSONA_YAML, write_persona

TESS = Standing(facts=("I have sailed for twenty years.", "I prefer short answers."), views=("Life jackets save lives. (fact)",))


def _turns(memory, *texts: str) -> ScriptedBackend:
    backend = ScriptedBackend([Reply("Sure.") for _ in texts])
    loop = ConversationLoop(persona=memory.persona, tiers=TierRegistry([TierConfig.from_backend("mid", backend)]), memory=memory)

    async def go() -> None:
        for text in texts:
            [e async for e in loop.turn(Conversation(conversation_id="c1", persona_id="tess"), text)]

    asyncio.run(go())
    return backend


def test_the_persona_s_facts_and_views_stand_in_the_system_message_not_in_the_message(tmp_path, memories) -> None:
    memory = memories.open(tmp_path)
    MemoryAdmin(memory).add("episodic", "The person's boat is called Tern.")
    backend = _turns(memory, "tell me about the boat")
    system, user = backend.last_messages[0].content, backend.last_messages[-1].content
    assert "Facts about yourself:\n- I have sailed for twenty years.\n- I prefer short answers." in system
    assert "Your views:\n- Life jackets save lives. (fact)" in system
    assert "twenty years" not in user and "Life jackets" not in user
    assert "From earlier conversations:\n- The person's boat is called Tern." in user
    assert memory.standing() == TESS


def test_why_says_the_standing_facts_and_views_go_with_every_message(tmp_path, memories) -> None:
    import io
    from types import SimpleNamespace

    from rich.console import Console

    from persona_cli.slash_memory import why
    from persona_runtime.memory import recalled_event

    memory = memories.open(tmp_path)
    MemoryAdmin(memory).add("episodic", "The person's boat is called Tern.")
    event = recalled_event(memory.retrieve("the boat"))
    assert event.standing == (2, 1) and {e.store for e in event.entries} == {"episodic"}
    buffer = io.StringIO()
    ctx = SimpleNamespace(last_recall=event, info=Console(file=buffer, width=300), session=SimpleNamespace(persona_id="tess"))
    asyncio.run(why(ctx, ""))
    assert "the persona's identity, its 2 self facts and 1 view (`persona memory list` shows them) are always sent too" in buffer.getvalue()


def test_a_correction_counts_from_the_next_turn_whoever_made_it(tmp_path, memories) -> None:
    memory = memories.open(tmp_path)
    admin = MemoryAdmin(memory)
    fact = next(e for e in admin.list_entries() if "twenty years" in e.text)
    admin.edit(fact.id, "I have sailed for thirty years.")
    assert "thirty years" in _turns(memory, "hello").last_messages[0].content
    # Another process's change (its own store object): the store's record counts move.
    other = memories.open(tmp_path)
    MemoryAdmin(other).add("worldview", "Reefing early is never wrong.")
    system = _turns(memory, "hello again").last_messages[0].content
    assert "thirty years" in system and "Reefing early is never wrong. (belief)" in system and "twenty" not in system
    # One forgotten and one added here leave the counts as they were: this process says so itself.
    admin.forget([next(e.id for e in admin.list_entries() if "short answers" in e.text)])
    admin.add("self_facts", "I teach on Saturdays.")
    system = _turns(memory, "and now?").last_messages[0].content
    assert "I teach on Saturdays." in system and "short answers" not in system


def test_too_many_to_stand_are_recalled_per_message_as_before(tmp_path, memories) -> None:
    facts = "".join(f"  - fact: I have sailed on boat number {i}.\n" for i in range(STANDING_MAX_ENTRIES + 1))
    yaml = PERSONA_YAML.replace("self_facts:\n", "self_facts:\n" + facts)
    memory = memories.open(tmp_path, write_persona(tmp_path, yaml))
    assert memory.standing() is None
    backend = _turns(memory, "which boats?")
    assert "Facts about yourself" not in backend.last_messages[0].content
    assert "Relevant facts about yourself:\n- I have sailed on boat number" in backend.last_messages[-1].content


def test_the_next_launch_predicts_the_standing_memory_from_the_snapshot(tmp_path, memories) -> None:
    memory = memories.open(tmp_path)
    folder = tmp_path / "store"
    # Before any turn: what the YAML defines, and it is exactly what indexing stores.
    assert read_snapshot(snapshot_path(folder, "tess")) == (False, None)
    assert predict_standing(folder, memory.persona) == standing_from_persona(memory.persona) == TESS
    admin = MemoryAdmin(memory)
    admin.forget([next(e.id for e in admin.list_entries() if "short answers" in e.text)])
    _turns(memory, "hello")
    assert (folder / "standing-tess.json").stat().st_mode & 0o777 == 0o600
    predicted = predict_standing(folder, memory.persona)
    assert predicted == memory.standing() and predicted.facts == ("I have sailed for twenty years.",)
    # A snapshot that cannot be read is no prediction: the YAML's is used.
    (folder / "standing-tess.json").write_text("{not json", encoding="utf-8")
    assert predict_standing(folder, memory.persona) == TESS


def test_the_system_message_shows_standing_memory_and_fitting_recall_keeps_it(tmp_path) -> None:
    from persona_runtime.persona_file import load_persona

    persona = load_persona(write_persona(tmp_path))
    builder = PromptBuilder()
    plain = builder.system_message(persona).content
    standing = builder.system_message(persona, standing=TESS).content
    assert "Facts about yourself" not in plain and "- I prefer short answers." in standing
    assert standing.startswith(plain.split("\n\nStay in character")[0])  # identity first, as before
    context = fit_recall(RetrievedContext(standing=TESS), budget=16)
    assert context.standing == TESS
    built = builder.build(persona, context, [], "hi", max_tokens=4000)
    assert built.messages[0].content == standing and built.messages[-1].content == "hi"
