"""Tiers (frontier / mid / small), the models that serve them, and their lazy backends.

Configuration comes from the environment (see ``.env.example``; parsed by
:mod:`persona_runtime.tier_env`):

* ``PERSONA_<TIER>_PROVIDER`` / ``_MODEL`` / ``_API_KEY`` / ``_BASE_URL``: one model for a tier.
  ``BASE_URL`` is optional (any OpenAI-compatible endpoint). ``gguf`` and ``ollama`` need no key.
* ``PERSONA_<TIER>_MODELS=provider/model,provider/model``: an ordered list; a failing model
  falls back to the next. Keys come from ``PERSONA_<PROVIDER>_API_KEY`` (and ``_BASE_URL``).
* ``PERSONA_PROVIDER`` / ``_MODEL`` / ``_API_KEY`` / ``_BASE_URL``: one model for every tier,
  used only when no tier is configured.
* Nothing at all: every tier is the bundled local model (``gguf``), fully offline.
* Unset tiers resolve small -> mid -> frontier to the first configured one.

Backends are built on first use and cached per model; ``aclose()`` releases them. An
OpenAI-compatible server that rejects ``stream_options`` (usage in the stream) is asked again
without it, and remembered for the session (:mod:`persona_runtime.stream_usage`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from persona_runtime.errors import TierNotConfiguredError
from persona_runtime.pricing import DEFAULT_CONTEXT_WINDOW, context_window_for_model, price_for
from persona_runtime.routing.types import TIER_NAMES
from persona_runtime.stream_usage import StreamOptionsMemory, guard_stream_options

if TYPE_CHECKING:
    from collections.abc import Callable

    from persona.backends import ChatBackend

__all__ = [
    "BUNDLED_MODEL",
    "KNOWN_PROVIDERS",
    "ModelSlot",
    "TierConfig",
    "TierMetadata",
    "TierRegistry",
    "build_backend",
]

#: persona-core's providers plus ``gguf`` (a local GGUF file run in-process by llama.cpp).
KNOWN_PROVIDERS: tuple[str, ...] = (
    "anthropic", "openai", "deepseek", "groq", "together", "nvidia", "openrouter",
    "cloudflare", "ollama", "gguf",
)
KEYLESS_PROVIDERS = frozenset({"ollama", "gguf"})
#: The model name of the bundled SmolLM2-135M-Instruct (or ``PERSONA_LOCAL_MODEL``).
BUNDLED_MODEL = "bundled"
#: How fallback walks the other tiers after the routed tier's own models.
FALLBACK_ORDER: dict[str, tuple[str, ...]] = {
    "frontier": ("frontier", "mid", "small"),
    "mid": ("mid", "small", "frontier"),
    "small": ("small", "mid", "frontier"),
}


@dataclass(frozen=True, slots=True)
class TierMetadata:
    """What the UnifiedRouter scores a tier on. Costs are cents per 1k tokens."""

    cost_input_per_1k_tokens: float
    cost_output_per_1k_tokens: float
    first_token_latency_ms: float
    throughput_tokens_per_sec: float
    context_window: int
    tool_strength: Literal["weak", "medium", "strong"] = "medium"
    reasoning_capable: bool = False

    def __post_init__(self) -> None:
        if self.context_window <= 0:
            raise ValueError("context_window must be > 0")
        if self.tool_strength not in ("weak", "medium", "strong"):
            raise ValueError("tool_strength must be weak, medium or strong")


@dataclass(frozen=True, slots=True)
class ModelSlot:
    """One model that can serve a tier."""

    provider: str
    model: str
    base_url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    #: A ready backend (tests, embedding apps); skips construction.
    backend: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def key(self) -> tuple[str, str, str | None, int]:
        """Identity for caching and de-duplication; a ready backend is its own model."""
        return (self.provider, self.model, self.base_url, id(self.backend) if self.backend is not None else 0)

    @property
    def is_local(self) -> bool:
        return self.provider in KEYLESS_PROVIDERS


@dataclass(frozen=True, slots=True)
class TierConfig:
    name: str
    models: tuple[ModelSlot, ...]
    metadata: TierMetadata | None = None
    #: Context window override (``PERSONA_<TIER>_CONTEXT_WINDOW``) when full metadata is absent.
    context_window: int | None = None

    def __post_init__(self) -> None:
        if not self.models:
            raise ValueError(f"tier {self.name!r} has no models")

    @classmethod
    def from_backend(cls, name: str, backend: Any, metadata: TierMetadata | None = None) -> TierConfig:
        """A tier served by an already-built backend (e.g. ``ScriptedBackend``)."""
        slot = ModelSlot(provider=backend.provider_name, model=backend.model_name, backend=backend)
        return cls(name=name, models=(slot,), metadata=metadata)


BackendFactory = "Callable[[ModelSlot], ChatBackend]"


class TierRegistry:
    """Resolves tiers to models and builds each model's backend once, on first use."""

    def __init__(
        self,
        tiers: Iterable[TierConfig] | Mapping[str, TierConfig],
        *,
        backend_factory: Callable[[ModelSlot], ChatBackend] | None = None,
        request_timeout_s: float = 60.0,
        local_context: int | None = None,
        last_resort: ModelSlot | None = None,
    ) -> None:
        """``local_context``: the context size a GGUF model's backend will be built with, so the
        prompt budget follows it before the backend exists (None: ``PERSONA_LOCAL_CONTEXT``)."""
        self._local_context = local_context
        items = tiers.values() if isinstance(tiers, Mapping) else tiers
        self._tiers: dict[str, TierConfig] = {t.name: t for t in items}
        if not self._tiers:
            raise ValueError("at least one tier must be configured")
        self._factory = backend_factory or (lambda slot: build_backend(slot, request_timeout_s))
        self._cache: dict[tuple[str, str, str | None, int], ChatBackend] = {}
        #: A $0 local model a spend cap may fall back to even when no tier names it (the bundled
        #: GGUF, from Settings.tier_registry); its window is ``local_context``.
        self.last_resort = last_resort
        #: Servers that rejected ``stream_options`` (usage in the stream) this session.
        self.stream_options = StreamOptionsMemory()
        for tier in self._tiers.values():
            for slot in tier.models:
                if slot.backend is not None:
                    self._cache[slot.key] = slot.backend

    # -- resolution (never builds a backend) ---------------------------------------------

    @property
    def configured_tier_names(self) -> tuple[str, ...]:
        return tuple(self._tiers)

    def resolve(self, name: str) -> str:
        """The configured tier that serves ``name`` (exact, else small -> mid -> frontier)."""
        if name in self._tiers:
            return name
        for candidate in ("small", "mid", "frontier"):
            if candidate in self._tiers:
                return candidate
        raise TierNotConfiguredError(name, self.configured_tier_names)

    def config(self, name: str) -> TierConfig:
        return self._tiers[self.resolve(name)]

    def slots(self, name: str) -> tuple[ModelSlot, ...]:
        return self.config(name).models

    def model_name_for(self, name: str) -> str:
        return self.slots(name)[0].model

    def metadata_for(self, name: str) -> TierMetadata | None:
        return self.config(name).metadata

    def context_window_for(self, name: str) -> int:
        cfg = self.config(name)
        if cfg.metadata is not None:
            return cfg.metadata.context_window
        if cfg.context_window:
            return cfg.context_window
        slot = cfg.models[0]
        cached = self._cache.get(slot.key)
        window = getattr(cached, "context_window", None)
        if isinstance(window, int) and window > 0:
            return window
        if slot.provider == "gguf":
            return self._local_window()
        return context_window_for_model(slot.model) or DEFAULT_CONTEXT_WINDOW

    def _local_window(self) -> int:
        """A GGUF model not built yet: the size it will be built with (the backend's own default)."""
        if self._local_context is not None:
            return self._local_context
        from persona_runtime.settings import local_context_from_env

        return local_context_from_env()

    def window_of(self, tier: str, slot: ModelSlot) -> int:
        """The context window of one request to ``slot`` on behalf of ``tier``: the tier's, or the
        last-resort local model's own when ``slot`` is that model and no tier names it."""
        if slot == self.last_resort and slot not in self.slots(tier):
            window = getattr(self._cache.get(slot.key), "context_window", None)
            return window if isinstance(window, int) and window > 0 else self._local_window()
        return self.context_window_for(tier)

    def supports_vision_for(self, name: str) -> bool:
        slot = self.slots(name)[0]
        cached = self._cache.get(slot.key)
        if cached is not None:
            return bool(getattr(cached, "supports_vision", False))
        if slot.provider in KEYLESS_PROVIDERS:
            return False
        from persona.backends.openai_compat import vision_supported

        return vision_supported(slot.provider, slot.model)

    def price_for(self, tier: str, slot: ModelSlot) -> tuple[float, float] | None:
        meta = self._tiers.get(tier, None)
        if meta is not None and meta.metadata is not None and slot == meta.models[0]:
            return (meta.metadata.cost_input_per_1k_tokens, meta.metadata.cost_output_per_1k_tokens)
        return price_for(slot.provider, slot.model)

    def fallback_chain(self, tier: str) -> list[tuple[str, ModelSlot]]:
        """Every (tier, model) to try for ``tier``, in order, each model once."""
        chain: list[tuple[str, ModelSlot]] = []
        seen: set[tuple[str, str, str | None, int]] = set()
        for name in FALLBACK_ORDER.get(tier, (tier, *TIER_NAMES)):
            try:
                effective = self.resolve(name)
            except TierNotConfiguredError:
                continue
            for slot in self._tiers[effective].models:
                if slot.key not in seen:
                    seen.add(slot.key)
                    chain.append((effective, slot))
        return chain

    def describe(self) -> list[tuple[str, str, ModelSlot]]:
        """(tier, serving tier, first model) for each canonical tier."""
        return [(name, self.resolve(name), self.slots(name)[0]) for name in TIER_NAMES]

    @property
    def bundled_only(self) -> bool:
        return all(s.provider == "gguf" and s.model == BUNDLED_MODEL for t in self._tiers.values() for s in t.models)

    # -- backends ------------------------------------------------------------------------

    def backend_for(self, slot: ModelSlot) -> ChatBackend:
        backend = self._cache.get(slot.key)
        if backend is None:
            backend = self._factory(slot)
            guard_stream_options(backend, slot.base_url or slot.provider, self.stream_options)
            self._cache[slot.key] = backend
        return backend

    def get(self, name: str) -> ChatBackend:
        """The first model's backend for ``name`` (built now if needed)."""
        return self.backend_for(self.slots(name)[0])

    async def aclose(self) -> None:
        """Close every built backend; idempotent; errors are swallowed (closing must not fail)."""
        cache, self._cache = self._cache, {}
        preconstructed = {s.key for t in self._tiers.values() for s in t.models if s.backend is not None}
        for key, backend in cache.items():
            for attr in ("aclose", "close", "disconnect"):
                closer = getattr(backend, attr, None)
                if closer is None:
                    continue
                try:
                    result = closer()
                    if hasattr(result, "__await__"):
                        await result
                except Exception:  # noqa: BLE001 - best effort at shutdown
                    pass
                break
            if key in preconstructed:
                self._cache[key] = backend  # caller-owned: keep it resolvable


def build_backend(
    slot: ModelSlot,
    request_timeout_s: float = 60.0,
    *,
    local_context: int | None = None,
    local_repeat_penalty: float | None = None,
    local_threads: int | None = None,
) -> ChatBackend:
    """Construct the backend for one model. Construction never touches the network.
    ``local_*`` apply to a GGUF model (None: its ``PERSONA_LOCAL_*`` variable or default)."""
    if slot.provider == "gguf":
        from persona_runtime.local_backend import LlamaCppBackend

        return LlamaCppBackend.shared(
            None if slot.model == BUNDLED_MODEL else slot.model,
            context_window=local_context,
            repeat_penalty=local_repeat_penalty,
            n_threads=local_threads,
        )
    from persona.backends import BackendConfig, load_backend

    kwargs: dict[str, Any] = {
        "provider": slot.provider,
        "model": slot.model,
        "request_timeout_s": request_timeout_s,
    }
    if slot.api_key:
        kwargs["api_key"] = slot.api_key
    if slot.base_url:
        kwargs["base_url"] = slot.base_url
    backend = load_backend(BackendConfig(**kwargs))
    _disable_sdk_retries(backend)
    return backend


def _disable_sdk_retries(backend: Any) -> None:
    """The provider SDKs retry 429/5xx twice on their own, with their own sleeps.

    We own retries and fallback (with a visible countdown and a TurnLog entry per
    attempt), so the SDK clients inside persona-core's backend are set to 0 retries.
    """
    for attr in ("_openai", "_anthropic"):
        client = getattr(backend, attr, None)
        if client is not None and hasattr(client, "with_options"):
            setattr(backend, attr, client.with_options(max_retries=0))
