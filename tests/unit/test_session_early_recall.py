"""A launch after a clean close recalls from the snapshot its predecessor left, before its own
store opens; the store opens once the first turn has finished, and the turn is remembered in it.
Real parts: embedded Chroma on a temp dir, the hash embedder; the model is scripted."""

from __future__ import annotations

import asyncio

from persona_runtime import events as ev
from persona_runtime.session import open_session
from persona_runtime.settings import Settings
from persona_runtime.testing import Reply, ScriptedBackend
from tests.support.paths import PERSONAS


def _launch(home, message: str, monkeypatch) -> tuple[list[str], list[ev.TurnEvent], list[str]]:
    """(what happened in order: "recalled", "open", "text"; the turn's events; the episodic texts after)."""
    import persona_runtime.memory_open as memory_open

    order: list[str] = []
    real_open = memory_open.open_memory

    def observed_open(session):
        order.append("open")
        return real_open(session)

    monkeypatch.setattr(memory_open, "open_memory", observed_open)
    # A turn asked for at once is waited for however slow the machine, and the store opens because it finished.
    monkeypatch.setattr(memory_open, "TURN_WAIT_S", 60)
    monkeypatch.setattr(memory_open, "ATTACH_GRACE_S", 60)
    settings = Settings(data_dir=home, embedder="hash")
    tiers = settings.tier_registry(backend_factory=lambda slot: ScriptedBackend([Reply(f"Noted: {message}")]))
    session = open_session(PERSONAS / "astrid.yaml", settings=settings, tiers=tiers)

    async def turn() -> tuple[list[ev.TurnEvent], list[str]]:
        try:
            loop = await session.loop()
            events = []
            async for event in loop.turn(session.new_conversation(), message):
                events.append(event)
                if isinstance(event, ev.MemoryRecalled):
                    order.append("recalled")
                elif isinstance(event, ev.TextDelta) and "text" not in order:
                    order.append("text")
            assert session.first_turn_done.is_set()  # set by the turn's end, not by the close
            return events, [c.text for c in loop.memory.stores["episodic"].get_all("astrid")]
        finally:
            await session.aclose()

    events, stored = asyncio.run(asyncio.wait_for(turn(), 120))
    return order, events, stored


def test_a_launch_recalls_from_the_last_close_before_its_store_opens(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    order, _events, stored = _launch(home, "I rent a flat in Oslo.", monkeypatch)
    assert order[:2] == ["open", "recalled"]  # the first launch: no snapshot, the store opens first
    assert any("I rent a flat in Oslo." in t for t in stored)

    order, events, stored = _launch(home, "Can my landlord keep my deposit?", monkeypatch)
    assert order == ["recalled", "text", "open"]  # recalled and replied before the store opened
    [recalled] = [e for e in events if isinstance(e, ev.MemoryRecalled)]
    assert [e.first_line for e in recalled.entries] == ["USER: I rent a flat in Oslo."]
    assert recalled.standing == (5, 5)
    assert isinstance(events[-1], ev.TurnFinished) and events[-1].status == "ok"
    assert any("Can my landlord keep my deposit?" in t for t in stored)  # held, and written once the store opened

    # The second launch's close left a new snapshot: the third recalls both, early again.
    order, events, _stored = _launch(home, "And the rent?", monkeypatch)
    assert order.index("recalled") < order.index("open")
    [recalled] = [e for e in events if isinstance(e, ev.MemoryRecalled)]
    assert len(recalled.entries) == 2


def test_while_nobody_has_asked_yet_the_store_opens_at_once(tmp_path, monkeypatch) -> None:
    import persona_runtime.memory_open as memory_open

    home = tmp_path / "home"
    _launch(home, "I rent a flat in Oslo.", monkeypatch)  # leaves the snapshot
    monkeypatch.setattr(memory_open, "TURN_WAIT_S", 0.05)
    monkeypatch.setattr(memory_open, "ATTACH_GRACE_S", 600)  # what a turn that had started would wait
    ready_at_open: list[bool] = []
    real_open = memory_open.open_memory
    monkeypatch.setattr(memory_open, "open_memory", lambda s: (ready_at_open.append(s.ready), real_open(s))[1])
    settings = Settings(data_dir=home, embedder="hash")
    session = open_session(PERSONAS / "astrid.yaml", settings=settings, tiers=settings.tier_registry(
        backend_factory=lambda slot: ScriptedBackend([Reply("Hi.")])))

    async def idle() -> None:
        try:
            loop = await session.loop()  # early: the person is still typing, no turn has started
            stores = await asyncio.wait_for(asyncio.to_thread(lambda: loop.memory.stores), 60)
            assert len(stores["episodic"].get_all("astrid")) == 1
            assert ready_at_open == [True]  # the session was ready (recalling early) before its store opened
        finally:
            await session.aclose()

    asyncio.run(idle())
