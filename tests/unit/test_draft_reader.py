"""DraftReader: a pause in typing reads the text so far ahead; newer text stops the read before."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import persona_runtime.read_ahead
from persona_cli.draft_reader import DraftReader
from tests.support.prompt_keys import ENTER, read_all


def reader_with(monkeypatch, *, ready: bool = True, tier: str = "auto"):
    """A DraftReader over a fake session, and the read-ahead calls it makes: (text, tier, stop)."""
    calls: list[tuple[str, str | None, object]] = []
    started = asyncio.Event()

    async def fake_read_ahead(got_loop, conversation, text, *, tier, stop):
        assert got_loop == "the loop" and conversation == "the conversation"
        calls.append((text, tier, stop))
        started.set()
        return 0

    monkeypatch.setattr(persona_runtime.read_ahead, "read_ahead", fake_read_ahead)
    async def loop() -> str:
        return "the loop"

    session = SimpleNamespace(ready=ready, loop=loop)
    ctx = SimpleNamespace(conversation="the conversation", tier=tier)
    return DraftReader(session, ctx, pause=0), calls, started


def test_a_pause_reads_the_text_so_far_and_newer_text_stops_it(monkeypatch) -> None:
    async def main() -> list:
        reader, calls, started = reader_with(monkeypatch, tier="small")
        reader.changed("Can my")
        await started.wait()
        started.clear()
        [(_text, _tier, first_stop)] = calls
        assert first_stop() is False
        reader.changed("Can my landlord")
        assert first_stop() is True  # the older read stops at its next chunk
        await started.wait()
        return calls

    calls = asyncio.run(asyncio.wait_for(main(), timeout=10))
    assert [(text, tier) for text, tier, _stop in calls] == [("Can my", "small"), ("Can my landlord", "small")]
    assert calls[1][2]() is False


def test_nothing_is_read_for_a_slash_command_an_empty_line_or_before_the_models_are_up(monkeypatch) -> None:
    async def main() -> None:
        reader, calls, _started = reader_with(monkeypatch)
        for text in ("/why", "  ", ""):
            reader.changed(text)
            assert not reader.pending
        idle, _calls, _ = reader_with(monkeypatch, ready=False)
        idle.changed("Hello")
        assert not idle.pending
        reader.changed("Hello")
        assert reader.pending
        reader.stop()
        assert not reader.pending
        assert calls == []

    asyncio.run(main())


def test_the_prompt_passes_each_change_of_its_text() -> None:
    seen: list[str] = []
    assert read_all(["Hi", " there" + ENTER], max_reads=1, on_text=seen.append) == ["Hi there"]
    assert seen[-2:] == ["Hi there", ""]  # and, once sent, an empty line: what was read ahead stops
