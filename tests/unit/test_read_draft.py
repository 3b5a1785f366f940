"""read_draft: reads on from what the KV cache shares with a draft, in small chunks, and stops when told."""

from __future__ import annotations

import numpy as np
import pytest

from persona_runtime.local_prefix import DRAFT_CHUNK, read_draft


@pytest.fixture(autouse=True)
def threads(monkeypatch) -> list[tuple[int, int]]:
    """The (generation, prompt) thread counts read_draft sets, instead of a real llama.cpp context's."""
    import llama_cpp

    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(llama_cpp, "llama_set_n_threads", lambda ctx, n, batch: calls.append((n, batch)))
    return calls


class KvCache:
    """What read_draft uses of a llama_cpp.Llama: input_ids, n_tokens, eval(), ctx and n_threads."""

    ctx = None
    n_threads = 2

    def __init__(self, held: list[int]) -> None:
        self.input_ids = np.zeros(1024, dtype=np.intc)
        self.input_ids[: len(held)] = held
        self.n_tokens = len(held)
        self.calls: list[list[int]] = []

    def eval(self, tokens: list[int]) -> None:
        self.calls.append(list(tokens))
        self.input_ids[self.n_tokens : self.n_tokens + len(tokens)] = tokens
        self.n_tokens += len(tokens)

    def held(self) -> list[int]:
        return self.input_ids[: self.n_tokens].tolist()


def test_it_reads_only_past_what_the_cache_shares_in_draft_sized_chunks(threads) -> None:
    draft = list(range(1, 51))
    kv = KvCache([1, 2, 3, 99, 98])  # shares three tokens, then parts
    assert read_draft(kv, draft, stop=lambda: False) == 47
    assert kv.held() == draft
    assert [len(c) for c in kv.calls] == [DRAFT_CHUNK, DRAFT_CHUNK, 47 - 2 * DRAFT_CHUNK]
    assert threads == [(2, 2)] * 4  # every thread for each chunk, and after


def test_while_the_session_loads_beside_it_a_draft_is_read_on_one_thread(threads) -> None:
    from persona_runtime.local_prefix import loading_beside

    with loading_beside():
        assert read_draft(KvCache([]), list(range(1, 40)), stop=lambda: False) == 39
    assert threads == [(2, 1)] * 3 + [(2, 2)]  # all of them again for the next request


def test_it_stops_at_the_next_chunk_once_told() -> None:
    kv = KvCache([])
    asked: list[int] = []

    def stop() -> bool:
        asked.append(kv.n_tokens)
        return len(asked) > 1  # told during the first chunk

    assert read_draft(kv, list(range(1, 51)), stop) == DRAFT_CHUNK
    assert kv.held() == list(range(1, DRAFT_CHUNK + 1))


def test_a_draft_already_held_reads_nothing() -> None:
    kv = KvCache([5, 6, 7, 8])
    assert read_draft(kv, [5, 6, 7], stop=lambda: False) == 0
    assert kv.calls == []
