"""While the person types, the bundled model reads the prompt their message will start, so Enter
leaves only its last tokens to read. Real parts: the bundled SmolLM2, embedded Chroma on a temp
dir, the hash embedder (fast and deterministic)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from persona_runtime.engine.messages import system_message, user_message
from persona_runtime.events import TextDelta, TurnFinished
from persona_runtime.local_backend import LlamaCppBackend
from persona_runtime.read_ahead import read_ahead
from persona_runtime.session import open_session
from persona_runtime.settings import Settings
from tests.support.paths import PERSONAS

pytestmark = pytest.mark.slow

MESSAGE = "Can my landlord keep my deposit?"
READ_AHEAD = LlamaCppBackend.read_ahead  # the real one, whatever a test patches


def reply_after(tmp_path, backend, draft: str | None, *, stop=lambda: False, **settings) -> tuple[int, str]:
    """(tokens read ahead for ``draft``, the reply to MESSAGE sent after it), starting from a KV
    cache that holds something else (the bundled model is shared by every test in the process)."""
    session = open_session(PERSONAS / "astrid.yaml", settings=Settings(data_dir=tmp_path / "home", embedder="hash", local_reply_tokens=24, **settings))
    elsewhere = [system_message("You count sheep."), user_message("One")]

    async def go() -> tuple[int, str]:
        try:
            loop = await session.loop()
            conversation = session.new_conversation()
            away = threading.Thread(target=lambda: READ_AHEAD(backend, elsewhere, lambda: False))
            away.start()
            away.join()
            read = 0 if draft is None else await read_ahead(loop, conversation, draft, stop=stop)
            events = [e async for e in loop.turn(conversation, MESSAGE)]
            assert isinstance(events[-1], TurnFinished) and events[-1].status == "ok", events[-1]
            return read, "".join(e.text for e in events if isinstance(e, TextDelta))
        finally:
            await session.aclose()

    return asyncio.run(go())


def test_a_message_read_ahead_leaves_only_its_last_tokens_and_gets_the_same_reply(tmp_path, backend, cached_prefixes) -> None:
    _read, fresh = reply_after(tmp_path / "fresh", backend, None)
    [(prompt, reused)] = cached_prefixes
    assert prompt - reused > 100  # without it: the recalled memory and the message, after Enter
    cached_prefixes.clear()

    read, reply = reply_after(tmp_path / "ahead", backend, MESSAGE)
    [(prompt, reused)] = cached_prefixes
    assert read > 100
    assert prompt - reused <= 8  # the message's closing tokens and the reply prompt
    assert reply == fresh


def test_the_model_reads_a_draft_on_a_thread_that_ends_with_it(tmp_path, backend, monkeypatch) -> None:
    # Not a pooled thread: one that has run llama.cpp and lives on slowed every later decode 3.5x.
    from persona_runtime.read_ahead import READ_AHEAD_THREAD_NAME

    threads: list[str] = []

    def observed(self, messages, stop):
        threads.append(threading.current_thread().name)
        return READ_AHEAD(self, messages, stop)

    monkeypatch.setattr(LlamaCppBackend, "read_ahead", observed)
    read, _reply = reply_after(tmp_path, backend, MESSAGE)
    assert read > 100
    assert threads[-1] == READ_AHEAD_THREAD_NAME


def test_a_fault_while_reading_ahead_reaches_the_caller(tmp_path, backend, monkeypatch) -> None:
    def broken(self, messages, stop):
        raise RuntimeError("the model is gone")

    monkeypatch.setattr(LlamaCppBackend, "read_ahead", broken)
    with pytest.raises(RuntimeError, match="the model is gone"):
        reply_after(tmp_path, backend, MESSAGE)


def test_a_draft_that_is_stopped_reads_nothing(tmp_path, backend, cached_prefixes) -> None:
    read, _reply = reply_after(tmp_path, backend, MESSAGE, stop=lambda: True)
    [(prompt, reused)] = cached_prefixes
    assert read == 0
    assert prompt - reused > 100


def test_memory_on_a_chroma_server_is_not_asked_for_a_draft(tmp_path, backend, cached_prefixes, chroma_server) -> None:
    # A failed query there would use up the one outage notice the turn gives.
    from persona_runtime.chroma_server import ChromaServer

    read, _reply = reply_after(tmp_path, backend, MESSAGE, chroma=ChromaServer.parse(chroma_server.url))
    [(prompt, reused)] = cached_prefixes
    assert read == 0
    assert prompt - reused > 100
