"""The start every request to a local model shares (the persona's system message), read once.

:meth:`LlamaCppBackend.prefill` computes it ahead of the first request and reads it while the
person types; a request that arrives first reads the rest itself, uninterrupted, so the work is
never lost. Either way, a prefix read in full is saved to the :class:`PromptCache`, and the next
launch loads it from disk instead of reading it again.

:func:`read_draft` goes further while the person types: the start of the request their message
will make (:meth:`LlamaCppBackend.read_ahead`), so Enter finds most of the prompt already read.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.local_model import BATCH, read_cache, restore_cache
from persona_runtime.prompt_cache import PromptCache, model_identity

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["CHUNK", "DRAFT_CHUNK", "Prefix", "loading_beside", "read_draft", "read_prefix"]

CHUNK = BATCH  # tokens per llama.cpp call when it may stop: a waiting request gets the model within ~0.3 s
# A draft is read while the person types, and Enter should find the model free at once: ~0.1 s.
DRAFT_CHUNK = 16


@dataclass(frozen=True)
class Prefix:
    """``tokens``: the rendered start of any request whose first messages are ``messages``
    (llama-cpp-python message dicts)."""

    messages: list[dict[str, Any]]
    tokens: list[int]
    cache: PromptCache | None = None

    def starts(self, request_messages: list[dict[str, Any]]) -> bool:
        return request_messages[: len(self.messages)] == self.messages


def cached_tokens(llm: Llama, tokens: list[int]) -> int:
    """How many of ``tokens`` ``llm``'s KV cache already holds, from the start."""
    common = 0
    for have, want in zip(llm.input_ids[: llm.n_tokens].tolist(), tokens, strict=False):
        if have != want:
            break
        common += 1
    return common


def read_prefix(llm: Llama, prefix: Prefix, model_path: Path, stop: Callable[[], bool] | None = None) -> tuple[int, bool]:
    """Under the model lock: make ``llm`` hold ``prefix`` (loaded from disk when saved there, else
    read, ``CHUNK`` tokens at a time while ``stop()`` is false). Returns (tokens read or loaded,
    whether they came from disk)."""
    tokens = prefix.tokens
    common = cached_tokens(llm, tokens)
    if common == len(tokens):
        return 0, False
    cache = prefix.cache
    identity = model_identity(model_path) if cache is not None else b""
    if cache is not None and common == 0:
        state = cache.load(identity, tokens)
        if state is not None and restore_cache(llm, (state, tokens)) == len(tokens):
            return len(tokens), True
    read = _read_from(llm, tokens, common, CHUNK if stop is not None else len(tokens), stop)  # nothing to stop for: one call
    if read < len(tokens) - common:
        return read, False
    if cache is not None:
        saved = read_cache(llm)
        if saved is not None:
            cache.save(identity, tokens, saved[0])
    return read, False


def read_draft(llm: Llama, tokens: list[int], stop: Callable[[], bool]) -> int:
    """Under the model lock: make ``llm`` hold ``tokens``, the start of a request for a message
    the person is still typing, reading on from what its KV cache already shares with them,
    ``DRAFT_CHUNK`` tokens at a time while ``stop()`` is false. Nothing is saved to disk (the
    message is not sent yet). Returns tokens read."""
    return _read_from(llm, tokens, cached_tokens(llm, tokens), DRAFT_CHUNK, stop)


_loading = 0  # sessions loading Python code in this process now (see loading_beside)
_loading_lock = threading.Lock()


@contextmanager
def loading_beside() -> Iterator[None]:
    """Say that this process is loading Python code (a session's background load) meanwhile: a
    read that may be stopped then uses one llama.cpp thread. Next to a busy Python thread, two
    llama.cpp threads read 68 tokens/s and one reads 100, with the Python thread as fast either
    way; alone, two read 165 (measured, 500 tokens)."""
    global _loading
    with _loading_lock:
        _loading += 1
    try:
        yield
    finally:
        with _loading_lock:
            _loading -= 1


def _read_from(llm: Llama, tokens: list[int], common: int, step: int, stop: Callable[[], bool] | None) -> int:
    """Read ``tokens[common:]``, ``step`` at a time while ``stop()`` is false; the thread count
    is chosen per step (see :func:`loading_beside`)."""
    import llama_cpp

    llm.n_tokens = common  # eval() drops the cache from here on before reading
    read = 0
    try:
        for start in range(common, len(tokens), step):
            if stop is not None and stop():
                break
            reading = 1 if stop is not None and _loading else llm.n_threads
            llama_cpp.llama_set_n_threads(llm.ctx, llm.n_threads, reading)
            chunk = tokens[start : start + step]
            llm.eval(chunk)
            read += len(chunk)
    finally:
        llama_cpp.llama_set_n_threads(llm.ctx, llm.n_threads, llm.n_threads)  # a request reads on every thread
    return read
