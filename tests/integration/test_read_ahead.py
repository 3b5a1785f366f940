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
# What memory recalls for MESSAGE (astrid's own facts and views stand in the system message).
EPISODES = (
    "USER: I rent a flat in Grünerløkka in Oslo and paid a deposit of three months' rent into an account.\n"
    "ASSISTANT: Then the deposit must stand in an account in your name, and the landlord cannot take it alone.",
    "USER: My landlord says the walls need painting after I move out, and wants to keep the deposit for it.\n"
    "ASSISTANT: Normal wear and tear is the landlord's cost; ask for the claim in writing and say what you dispute.",
)
READ_AHEAD = LlamaCppBackend.read_ahead  # the real one, whatever a test patches


def reply_after(tmp_path, backend, draft: str | None, *, stop=lambda: False, **settings) -> tuple[int, str]:
    """(tokens read ahead for ``draft``, the reply to MESSAGE sent after it), starting from a KV
    cache that holds something else (the bundled model is shared by every test in the process)."""
    session = open_session(PERSONAS / "astrid.yaml", settings=Settings(data_dir=tmp_path / "home", embedder="hash", local_reply_tokens=24, **settings))
    elsewhere = [system_message("You count sheep."), user_message("One")]

    async def go() -> tuple[int, str]:
        try:
            loop = await session.loop()
            remember(loop.memory)
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


def remember(memory) -> None:
    for episode in EPISODES:
        memory.remember(episode, metadata={"conversation_id": "earlier"}, written_by="test")


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


def test_a_launch_reads_the_system_message_and_the_recalled_block_s_opening_before_memory_opens(
    tmp_path, backend, cached_prefixes
) -> None:
    """The second launch's prefill reads what its first turn starts with, standing memory included,
    before memory has opened: the turn reads only the recalled entries and the message."""
    from persona_runtime.local_model import draft_prefix_tokens, shared_prefix_tokens, template_formatter
    from persona_runtime.memory_open import memory_folder
    from persona_runtime.prefill import prefill_session
    from persona_runtime.prompt import PromptBuilder, recall_opening
    from persona_runtime.standing import predict_standing

    settings = Settings(data_dir=tmp_path / "home", embedder="hash", local_reply_tokens=8)

    async def launch(session, message: str, *, seed: bool = False) -> list:
        try:
            loop = await session.loop()
            if seed:
                remember(loop.memory)
            events = [e async for e in loop.turn(session.new_conversation(), message)]
            assert loop.memory.standing() == predict_standing(memory_folder(session), session.persona)
            return events
        finally:
            await session.aclose()

    asyncio.run(launch(open_session(PERSONAS / "astrid.yaml", settings=settings), "Hello", seed=True))
    session = open_session(PERSONAS / "astrid.yaml", settings=settings, start=False)
    standing = predict_standing(memory_folder(session), session.persona)  # the snapshot the first launch left
    assert standing is not None and len(standing.facts) == 5
    READ_AHEAD(backend, [system_message("You count sheep."), user_message("One")], lambda: False)  # as after a restart
    prefill_session(session)  # what start_background runs on a thread of its own, here to its end
    cached_prefixes.clear()
    events = asyncio.run(launch(session, MESSAGE))
    assert isinstance(events[-1], TurnFinished) and events[-1].status == "ok", events[-1]

    llm = backend._llm  # the loaded llama_cpp.Llama
    system = PromptBuilder().system_message(session.persona, standing=standing)
    read_early = draft_prefix_tokens(llm, template_formatter(llm), [system, user_message(recall_opening(standing))])
    [(prompt, reused)] = cached_prefixes
    assert reused >= len(read_early) > len(shared_prefix_tokens(llm, template_formatter(llm), [system]))
    assert prompt - reused < 200  # the two earlier conversations and the message


def test_reading_beside_a_loading_session_uses_one_thread_and_a_request_all_of_them(backend, monkeypatch) -> None:
    import llama_cpp

    calls: list[tuple[int, int]] = []
    real = llama_cpp.llama_set_n_threads
    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", lambda ctx, n, batch: (calls.append((n, batch)), real(ctx, n, batch))[1])
    from persona_runtime.local_model import bundled_model_path, open_llama

    one = open_llama(bundled_model_path(), 256, 1)  # PERSONA_LOCAL_THREADS=1 counts for prompts too
    assert (one.n_threads, one.context_params.n_threads_batch) == (1, 1)
    one.close()
    backend.wait_loaded()
    llm = backend._llm  # the loaded llama_cpp.Llama
    from persona_runtime.local_prefix import loading_beside

    with loading_beside():  # a session loading Python code beside it
        assert backend.read_ahead([system_message("You count sheep."), user_message("One, two")], lambda: False) > 0
    assert calls == [(llm.n_threads, 1), (llm.n_threads, llm.n_threads)]  # back to all for the next request
    calls.clear()
    assert backend.read_ahead([system_message("You count goats."), user_message("One, two")], lambda: False) > 0
    assert calls == [(llm.n_threads, llm.n_threads)] * 2  # nothing loading: every thread
