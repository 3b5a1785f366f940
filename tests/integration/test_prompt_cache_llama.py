"""The system message a local model read, loaded from disk at the next launch (real SmolLM2)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from persona.schema.conversation import ConversationMessage
from persona_runtime.prompt_cache import PromptCache

pytestmark = pytest.mark.slow


def _msg(role: str, content: str) -> ConversationMessage:
    return ConversationMessage(role=role, content=content, created_at=datetime.now(UTC))  # type: ignore[arg-type]


SYSTEM = _msg("system", "You are Tess, a patient tutor who explains fractions with pizza. " * 12)
ASK = [SYSTEM, _msg("user", "What is a half of a half?")]


def _as_a_new_process_has_it(backend) -> None:
    import llama_cpp

    backend._llm.reset()
    llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(backend._llm.ctx), True)


def test_a_prefix_read_once_is_loaded_from_disk_and_answers_the_same(backend, cached_prefixes, tmp_path) -> None:
    cache = PromptCache(tmp_path / "prompt")
    backend.prefill([])  # waits for the load
    _as_a_new_process_has_it(backend)
    read = backend.prefill([SYSTEM], cache)
    assert read > 100
    assert len(list(cache.directory.glob("*.kv"))) == 1
    first = asyncio.run(backend.chat(ASK, max_tokens=12))

    _as_a_new_process_has_it(backend)
    backend.loaded_from_disk = 0
    assert backend.prefill([SYSTEM], cache) == read
    assert backend.loaded_from_disk == read
    second = asyncio.run(backend.chat(ASK, max_tokens=12))

    assert second.content == first.content  # the state loaded is the state that was read
    assert [reused for _prompt, reused in cached_prefixes] == [read, read]  # both requests read only the question


def test_a_cache_for_another_system_message_is_not_used(backend, tmp_path) -> None:
    cache = PromptCache(tmp_path / "prompt")
    backend.prefill([])
    _as_a_new_process_has_it(backend)
    backend.prefill([SYSTEM], cache)
    _as_a_new_process_has_it(backend)
    backend.loaded_from_disk = 0
    other = _msg("system", SYSTEM.content.replace("Tess", "Tove"))
    assert backend.prefill([other], cache) > 100
    assert backend.loaded_from_disk == 0  # read, not loaded
    assert len(list(cache.directory.glob("*.kv"))) == 2
