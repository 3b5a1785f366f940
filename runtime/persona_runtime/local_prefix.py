"""The start every request to a local model shares (the persona's system message), read once.

:meth:`LlamaCppBackend.prefill` computes it ahead of the first request and reads it while the
person types; a request that arrives first reads the rest itself, uninterrupted, so the work is
never lost. Either way, a prefix read in full is saved to the :class:`PromptCache`, and the next
launch loads it from disk instead of reading it again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.local_model import BATCH, read_cache, restore_cache
from persona_runtime.prompt_cache import PromptCache, model_identity

if TYPE_CHECKING:
    from llama_cpp import Llama

__all__ = ["CHUNK", "Prefix", "read_prefix"]

CHUNK = BATCH  # tokens per llama.cpp call when it may stop: a waiting request gets the model within ~0.3 s


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
    llm.n_tokens = common  # eval() drops the cache from here on before reading
    read = 0
    step = CHUNK if stop is not None else len(tokens)  # nothing to stop for: one call
    for start in range(common, len(tokens), step):
        if stop is not None and stop():
            return read, False
        chunk = tokens[start : start + step]
        llm.eval(chunk)
        read += len(chunk)
    if cache is not None:
        saved = read_cache(llm)
        if saved is not None:
            cache.save(identity, tokens, saved[0])
    return read, False
