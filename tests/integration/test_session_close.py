"""Closing what a session opened: a library user who opens and closes many sessions in one
process must not run out of file descriptors (an embedded Chroma store alone holds ~17: SQLite,
HNSW files, chromadb's runtime). Real parts: embedded Chroma on a temp dir, a scripted model."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from pathlib import Path

import pytest

from persona_runtime.session import Session, open_session
from persona_runtime.settings import Settings
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import TierConfig, TierRegistry

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts descriptors in /proc/self/fd")

PERSONA = """\
schema_version: "1.0"
persona_id: ola
identity:
  name: Ola
  role: Harbour guide
  background: Knows the tides.
self_facts:
  - fact: I check the tide table every morning.
"""
SESSIONS = 6
SLACK = 4  # descriptors that may come and go between counts (a log file reopened, a GC'd socket)


def fd_count() -> int:
    gc.collect()  # count what is still held, not garbage waiting for the collector
    return len(os.listdir("/proc/self/fd"))


def persona_beside(home: Path) -> Path:
    home.parent.mkdir(parents=True, exist_ok=True)
    persona = home.parent / "ola.yaml"
    persona.write_text(PERSONA, encoding="utf-8")
    return persona


def session_in(home: Path, reply: str = "High tide is at 14:05.", *, start: bool = True) -> Session:
    tiers = TierRegistry([TierConfig.from_backend("mid", ScriptedBackend([reply]))])
    return open_session(persona_beside(home), settings=Settings(data_dir=home, embedder="hash"), tiers=tiers, start=start)


async def one_turn(session: Session, message: str = "When is high tide?") -> str:
    from persona_runtime.events import TextDelta, TurnFinished

    loop = await session.loop()
    events = [e async for e in loop.turn(session.new_conversation(), message)]
    assert isinstance(events[-1], TurnFinished) and events[-1].status == "ok"
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def open_turn_close(home: Path) -> None:
    session = session_in(home)

    async def main() -> None:
        try:
            await one_turn(session)
        finally:
            await session.aclose()

    asyncio.run(asyncio.wait_for(main(), 120))


def test_opening_and_closing_sessions_leaves_no_descriptors_behind(tmp_path: Path) -> None:
    open_turn_close(tmp_path / "warm" / "home")  # imports, the log sink, chromadb's own one-off files
    before = fd_count()
    for n in range(SESSIONS):
        open_turn_close(tmp_path / f"s{n}" / "home")  # each its own data dir: chromadb shares one per path
    grown = fd_count() - before
    assert grown <= SLACK, f"{SESSIONS} sessions opened and closed left {grown} more descriptors open"


def test_closing_one_of_two_sessions_on_one_store_leaves_the_other_working(tmp_path: Path) -> None:
    """chromadb shares one store per path: the first session to close must not stop it under the other."""
    home = tmp_path / "shared" / "home"
    first, second = session_in(home, "First."), session_in(home, "Second.")

    async def main() -> str:
        await one_turn(first)
        await second.loop()
        assert not first.take_notices() and not second.take_notices()  # both opened the store
        await first.aclose()
        try:
            reply = await one_turn(second)
            assert (await second.loop()).memory.retrieve("tide").episodic  # still reads and writes
            return reply
        finally:
            await second.aclose()

    before = fd_count()
    assert asyncio.run(asyncio.wait_for(main(), 120)) == "Second."
    assert fd_count() - before <= SLACK


def test_closing_while_memory_still_loads_closes_it_once_loaded(tmp_path: Path, monkeypatch) -> None:
    import persona_runtime.session as session_module

    entered, release = threading.Event(), threading.Event()
    real_load = session_module.load_heavy_parts

    def held_load(session: Session, memory=None) -> session_module.HeavyParts:
        entered.set()
        assert release.wait(60)
        return real_load(session, memory)

    monkeypatch.setattr(session_module, "load_heavy_parts", held_load)
    session = session_in(tmp_path / "early" / "home")

    async def main() -> session_module.HeavyParts:
        assert await asyncio.to_thread(entered.wait, 60)
        await session.aclose()  # the person quit before memory was ready
        release.set()
        return await asyncio.wrap_future(session._heavy)  # its callbacks (the close) ran first

    heavy = asyncio.run(asyncio.wait_for(main(), 120))
    assert heavy.memory is not None
    with pytest.raises(RuntimeError, match="is closed"):
        heavy.memory.retrieve("tide")


def test_memory_admins_and_stores_that_fail_to_load_are_closed(tmp_path: Path, monkeypatch) -> None:
    """`persona memory` (open_admin) closes its store; a store whose load fails (memory off for
    the session) is closed at once, since no one else holds it."""
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.memory_admin import open_admin
    from persona_runtime.memory_open import MEMORY_OFF, open_memory

    def admin_in(home: Path) -> None:
        with open_admin(persona_beside(home), settings=Settings(data_dir=home, embedder="hash")) as admin:
            assert admin.list_entries()

    def failed_load(self: PersonaMemory) -> None:
        self.stores["identity"].get_all(self.persona_id)  # the store is open and in use ...
        raise RuntimeError("disk I/O error")  # ... when the load fails

    admin_in(tmp_path / "warm" / "home")
    before = fd_count()
    for n in range(SESSIONS):
        admin_in(tmp_path / f"a{n}" / "home")
    monkeypatch.setattr(PersonaMemory, "load", failed_load)
    for n in range(SESSIONS):
        memory, notices = open_memory(session_in(tmp_path / f"f{n}" / "home", start=False))
        assert memory is None and notices[-1].startswith(MEMORY_OFF)
    assert fd_count() - before <= SLACK
