"""PromptCache: a local model's read of a system message, kept on disk between launches."""

from __future__ import annotations

import os
import stat

from persona_runtime.prompt_cache import MAGIC, PromptCache, model_identity

ID = b"m" * 32
TOKENS = [1, 17, 4242, 9]


def test_what_is_saved_comes_back_only_for_the_same_tokens_and_model(tmp_path) -> None:
    cache = PromptCache(tmp_path / "cache" / "prompt")
    assert cache.load(ID, TOKENS) is None  # nothing saved yet
    cache.save(ID, TOKENS, b"state-bytes")
    assert cache.load(ID, TOKENS) == b"state-bytes"
    assert cache.load(ID, [*TOKENS, 5]) is None
    assert cache.load(ID, TOKENS[:-1]) is None
    assert cache.load(b"n" * 32, TOKENS) is None


def test_the_folder_and_files_are_private(tmp_path) -> None:
    cache = PromptCache(tmp_path / "prompt")
    cache.save(ID, TOKENS, b"x")
    [saved] = list(cache.directory.iterdir())
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700


def test_a_torn_foreign_or_altered_file_is_ignored_and_replaced(tmp_path) -> None:
    cache = PromptCache(tmp_path)
    cache.save(ID, TOKENS, b"state")
    [saved] = list(tmp_path.glob("*.kv"))
    whole = saved.read_bytes()
    altered = whole[: -len(b"state")] + b"stale"  # the right size: llama.cpp would take it
    for bad in (whole[: len(MAGIC) + 10], b"not a cache" + whole[11:], whole[: -len(b"state")], altered):
        saved.write_bytes(bad)
        assert cache.load(ID, TOKENS) is None
    cache.save(ID, TOKENS, b"state")
    assert cache.load(ID, TOKENS) == b"state"


def test_the_oldest_files_go_first_when_the_folder_is_over_its_size(tmp_path) -> None:
    cache = PromptCache(tmp_path, max_bytes=3 * 1100)
    for n in range(5):
        cache.save(ID, [n], b"s" * 1000)
        os.utime(cache._file(ID, [n]), ns=(n * 10**9, n * 10**9))  # a clear order, whatever the clock
    cache.save(ID, [99], b"s" * 1000)
    kept = sorted(n for n in [0, 1, 2, 3, 4, 99] if cache.load(ID, [n]) is not None)
    assert kept == [3, 4, 99]


def test_a_folder_it_cannot_write_is_not_an_error(tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    cache = PromptCache(blocker / "prompt")  # a file where the folder should be
    cache.save(ID, TOKENS, b"state")
    assert cache.load(ID, TOKENS) is None


def test_the_model_identity_changes_with_the_file(tmp_path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF1")
    first = model_identity(model)
    assert first == model_identity(model)
    model.write_bytes(b"GGUF22")
    assert model_identity(model) != first
