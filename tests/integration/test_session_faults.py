"""A session on real parts that meets a fault goes on, and says so once, in one line: memory store
faults on the real Chroma store, tools the persona names that do not exist."""

from __future__ import annotations

import asyncio
import errno
from pathlib import Path

from persona_runtime import events as ev
from persona_runtime.memory_guard import DATABASE_FILE
from persona_runtime.session import open_session
from persona_runtime.settings import Settings
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import TierConfig, TierRegistry
from tests.support.paths import PERSONAS


def chat_once(home: Path, *replies: str) -> tuple[list[object], list[str], object]:
    backend = ScriptedBackend(list(replies))
    session = open_session(
        PERSONAS / "kai.yaml", settings=Settings(data_dir=home, embedder="hash"),
        tiers=TierRegistry([TierConfig.from_backend("mid", backend)]),
    )

    async def turn() -> tuple[list[object], list[str], object]:
        try:
            loop = await session.loop()
            notices = session.take_notices()
            events = [e async for e in loop.turn(session.new_conversation(), "Remember: my cat is Pus.")]
            return events, notices, loop
        finally:
            await session.aclose()

    return asyncio.run(asyncio.wait_for(turn(), 120))


def store_of(home: Path) -> Path:
    return home / "memory" / "hash"


def test_an_empty_database_file_is_set_aside_not_silently_replaced(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_of(home).mkdir(parents=True)
    (store_of(home) / DATABASE_FILE).write_bytes(b"")
    events, notices, loop = chat_once(home, "Noted.")
    assert events[-1].status == "ok"
    assert len(notices) == 1 and "was empty" in notices[0] and ".broken-" in notices[0]
    assert any(p.name.startswith("hash.broken-") for p in (home / "memory").iterdir())
    assert loop.memory is not None  # a fresh store, and memory works


def test_a_corrupt_database_turns_memory_off_and_the_chat_goes_on(tmp_path: Path) -> None:
    home = tmp_path / "home"
    store_of(home).mkdir(parents=True)
    (store_of(home) / DATABASE_FILE).write_bytes(b"SQLite format 3\x00" + b"\xde\xad" * 4096)
    events, notices, loop = chat_once(home, "Noted anyway.")
    assert events[-1].status == "ok" and events[-1].text == "Noted anyway."
    assert len(notices) == 1 and notices[0].startswith("memory is off for this session")
    assert str(store_of(home) / DATABASE_FILE) in notices[0] and "\n" not in notices[0]
    assert loop.memory is None
    assert (home / "logs" / "turns.jsonl").read_text().count("\n") == 1  # the turn is logged


def test_a_full_disk_at_write_back_keeps_the_turn_and_says_so(tmp_path: Path, monkeypatch) -> None:
    from persona_runtime.memory import PersonaMemory

    def disk_full(*_args: object, **_kwargs: object) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PersonaMemory, "remember_turn", disk_full)
    events, _notices, _loop = chat_once(tmp_path / "home", "Noted.")
    notices = [e.text for e in events if isinstance(e, ev.Notice)]
    assert events[-1].status == "ok" and len(notices) == 1 and "full" in notices[0]
    assert (tmp_path / "home" / "logs" / "turns.jsonl").read_text().count('"status":"ok"') == 1


def test_a_store_that_fails_mid_session_answers_without_memory(tmp_path: Path, monkeypatch) -> None:
    from persona_runtime.memory import PersonaMemory

    def gone(*_args: object, **_kwargs: object) -> object:
        raise RuntimeError("no such table: collections")

    monkeypatch.setattr(PersonaMemory, "retrieve", gone)
    events, _notices, _loop = chat_once(tmp_path / "home", "Still here.")
    notices = [e.text for e in events if isinstance(e, ev.Notice)]
    assert events[-1].status == "ok" and events[-1].text == "Still here."
    assert len(notices) == 1 and notices[0].startswith("memory could not recall")


def test_unknown_tools_in_the_persona_are_named_once(tmp_path: Path) -> None:
    persona = tmp_path / "typo.yaml"
    persona.write_text((PERSONAS / "kai.yaml").read_text().replace("tools: [", "tools: [web_serch, "), encoding="utf-8")
    assert "web_serch" in persona.read_text()
    session = open_session(
        persona, settings=Settings(data_dir=tmp_path / "home", embedder="hash"),
        tiers=TierRegistry([TierConfig.from_backend("mid", ScriptedBackend(["ok"]))]),
    )

    async def build() -> list[str]:
        try:
            await session.loop()
            return session.take_notices()
        finally:
            await session.aclose()

    notices = asyncio.run(asyncio.wait_for(build(), 120))
    assert len(notices) == 1 and "web_serch" in notices[0] and "ignored" in notices[0]


def test_a_persona_with_more_facts_than_one_chroma_batch_is_indexed_once(tmp_path: Path, memories) -> None:
    from persona.schema.persona import Persona
    from persona.stores import HashEmbedder

    from persona_runtime.memory import PersonaMemory

    big = Persona.model_validate({
        "persona_id": "big", "identity": {"name": "Big", "role": "tester", "background": "Knows a lot."},
        "self_facts": [{"fact": f"Fact number {n} about me."} for n in range(6_000)],  # Chroma takes 5,461 a call
    })

    def open_memory() -> PersonaMemory:
        return memories.keep(PersonaMemory.open(big, root=tmp_path / "store", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))

    first = open_memory()
    first.load()
    assert len(first.stores["self_facts"].get_all("big")) == 6_000

    again = open_memory()
    loads: list[object] = []
    again._registry.load_persona = loads.append  # a spy: the same content is not indexed again
    again.load()
    assert loads == []
    assert again.retrieve("Fact number 42").self_facts  # and memory still answers

    changed = Persona.model_validate(big.model_dump() | {"self_facts": [{"fact": "Only one fact now."}]})
    third = memories.keep(PersonaMemory.open(changed, root=tmp_path / "store", embedder=HashEmbedder(), audit_root=tmp_path / "audit"))
    third._registry.load_persona = loads.append
    third.load()
    assert loads == [changed]  # new content is indexed
