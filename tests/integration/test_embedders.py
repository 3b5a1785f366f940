"""Embedders: the bundled MiniLM (our numpy encoder, checked against sentence-transformers)
and PERSONA_EMBEDDER."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from persona.stores.embedder import Embedder, HashEmbedder, SentenceTransformerEmbedder

from persona_runtime.embedders import EmbedderChoice, MiniLMEmbedder, embedder_from_env
from persona_runtime.errors import ConfigError
from tests.support import minilm_reference
from tests.support.minilm_reference import CAT, FINANCE, KITTEN

def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / (math.hypot(*a) * math.hypot(*b))


@pytest.fixture(scope="module")
def minilm() -> MiniLMEmbedder:
    embedder = MiniLMEmbedder()
    embedder.start_loading()
    embedder.start_loading()  # idempotent
    return embedder


def test_minilm_gives_normalised_384_dim_vectors(minilm: MiniLMEmbedder) -> None:
    assert isinstance(minilm, Embedder)
    vectors = minilm.encode([CAT, KITTEN])
    assert minilm.is_loaded
    assert minilm.dimension == 384
    assert [len(v) for v in vectors] == [384, 384]
    assert all(isinstance(x, float) for x in vectors[0])
    assert all(abs(math.hypot(*v) - 1.0) < 1e-4 for v in vectors)
    assert minilm.encode([]) == []


def test_minilm_similarity_is_meaningful(minilm: MiniLMEmbedder) -> None:
    cat, kitten, finance = minilm.encode([CAT, KITTEN, FINANCE])
    related, unrelated = _cos(cat, kitten), _cos(cat, finance)
    assert related > 0.4
    assert unrelated < 0.2
    assert related - unrelated > 0.3


def test_a_query_encoded_again_is_not_run_through_the_model_again(minilm: MiniLMEmbedder, monkeypatch: pytest.MonkeyPatch) -> None:
    [first] = minilm.encode([CAT])  # one recall asks three stores with the same message
    calls: list[list[str]] = []
    real = minilm._model.encode
    monkeypatch.setattr(minilm._model, "encode", lambda texts: calls.append(texts) or real(texts))
    assert minilm.encode([CAT]) == [first]
    assert calls == []
    [kitten] = minilm.encode([KITTEN])
    assert calls == [[KITTEN]] and kitten != first
    minilm.encode([CAT, KITTEN])  # a batch (memory writes) always runs
    assert len(calls) == 2


def test_the_warm_up_text_is_encoded_as_the_model_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session waits on it after Chroma's import; encoded on the load thread, it costs nothing then.
    import threading

    from persona_runtime.embedders import WARM_UP_TEXT
    from persona_runtime.minilm import MiniLMEncoder

    ran_on: list[str] = []
    real = MiniLMEncoder.encode
    monkeypatch.setattr(MiniLMEncoder, "encode", lambda self, texts: ran_on.append(threading.current_thread().name) or real(self, texts))
    embedder = MiniLMEmbedder()
    embedder.start_loading()
    [warm] = embedder.encode([WARM_UP_TEXT])  # waits for the load
    assert embedder.encode([WARM_UP_TEXT]) == [warm] and len(warm) == 384
    assert ran_on == ["persona-minilm-load"]


@pytest.mark.slow
def test_minilm_matches_sentence_transformers(minilm: MiniLMEmbedder) -> None:
    """The reference: the same model folder through sentence-transformers (torch), computed once
    and stored (tests/support/minilm_reference.py says how), since the install carries no torch."""
    texts, expected = minilm_reference.load()
    assert texts == minilm_reference.TEXTS and len(expected) == len(texts)
    ours = minilm.encode(texts)
    for text, got, want in zip(texts, ours, expected, strict=True):
        # The weights are kept as float16 (persona_runtime.minilm): measured, the worst text is
        # at cosine 0.9999997 and 1.2e-4 per component from the float32 reference.
        assert _cos(got, want) >= 0.99999, text[:40]
        assert max(abs(g - w) for g, w in zip(got, want, strict=True)) < 2e-4, text[:40]
    # Batching (texts sorted and grouped by length) does not change a text's vector.
    alone = [minilm.encode([text])[0] for text in texts]
    for got, single in zip(ours, alone, strict=True):
        assert max(abs(g - s) for g, s in zip(got, single, strict=True)) < 1e-5


@pytest.mark.subprocess
def test_minilm_loads_without_torch() -> None:
    script = textwrap.dedent(
        """
        import sys
        from persona_runtime.embedders import MiniLMEmbedder
        vector = MiniLMEmbedder().encode(["hello"])[0]
        heavy = [m for m in ("torch", "transformers", "sentence_transformers") if m in sys.modules]
        print(len(vector), heavy)
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.split("\n")[0] == "384 []"


def test_minilm_load_failure_is_reraised_from_encode(tmp_path: Path) -> None:
    broken = MiniLMEmbedder(model_path=tmp_path / "no-such-model")
    with pytest.raises(RuntimeError, match="failed to load") as info:
        broken.encode(["hello"])
    assert "no-such-model" in str(info.value)
    assert not broken.is_loaded


def test_default_choice_is_minilm_without_loading_it() -> None:
    choice = embedder_from_env({})
    assert isinstance(choice, EmbedderChoice)
    assert choice.key == "minilm-l6-v2"
    assert isinstance(choice.embedder, MiniLMEmbedder)
    assert choice.embedder.dimension == 384
    assert not choice.embedder.is_loaded
    assert choice.notice is None
    assert embedder_from_env({"PERSONA_EMBEDDER": " MiniLM "}).key == "minilm-l6-v2"


def test_hash_choice_is_quiet_and_carries_the_notice(capfd: pytest.CaptureFixture[str]) -> None:
    choice = embedder_from_env({"PERSONA_EMBEDDER": "hash"})
    assert choice.key == "hash"
    assert isinstance(choice.embedder, HashEmbedder)
    assert choice.notice is not None and "arbitrary" in choice.notice
    assert len(choice.embedder.encode(["x"])[0]) == 384
    out, err = capfd.readouterr()
    assert out == "" and err == ""


def test_sentence_transformers_without_the_package_says_how_to_add_it() -> None:
    """The install leaves sentence-transformers (and PyTorch) out: a config error, not a crash."""
    assert importlib.util.find_spec("sentence_transformers") is None, "the light install must not carry it"
    with pytest.raises(ConfigError) as info:
        embedder_from_env({"PERSONA_EMBEDDER": "sentence-transformers"})
    assert info.value.variable == "PERSONA_EMBEDDER"
    assert "uv run --with sentence-transformers persona chat" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.fixture
def sentence_transformers_present(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Stands in for the package being installed: only its presence is checked, nothing imports it."""
    (tmp_path / "sentence_transformers").mkdir()
    (tmp_path / "sentence_transformers" / "__init__.py").write_text("raise ImportError('not for import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))


@pytest.mark.usefixtures("sentence_transformers_present")
def test_sentence_transformers_choice_is_core_bge_and_not_loaded() -> None:
    choice = embedder_from_env({"PERSONA_EMBEDDER": "sentence-transformers"})
    assert choice.key == "bge-small-en-v1.5"
    assert isinstance(choice.embedder, SentenceTransformerEmbedder)
    assert choice.embedder.model_name == "BAAI/bge-small-en-v1.5"
    assert choice.embedder._model is None  # lazy: nothing downloaded or loaded here


def test_bad_value_is_a_config_error_naming_the_variable() -> None:
    with pytest.raises(ConfigError) as info:
        embedder_from_env({"PERSONA_EMBEDDER": "openai"})
    assert info.value.variable == "PERSONA_EMBEDDER"
    assert "openai" in str(info.value)


@pytest.mark.usefixtures("sentence_transformers_present")
def test_keys_differ_per_embedder_and_are_filesystem_safe() -> None:
    keys = [embedder_from_env({"PERSONA_EMBEDDER": k}).key for k in ("minilm", "sentence-transformers", "hash")]
    assert len(set(keys)) == 3
    assert all(k and all(c.isalnum() or c in "-._" for c in k) for k in keys)


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERSONA_EMBEDDER", "hash")
    assert embedder_from_env().key == "hash"
