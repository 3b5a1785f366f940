"""Tiers from ``PERSONA_*`` variables (see :mod:`persona_runtime.tier` for what they mean):
the per-tier triples, ``_MODELS`` lists, the shared triple, routing metadata, and the bundled
model when nothing is set. A bad variable is a :class:`ConfigError` that names it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from persona_runtime.errors import ConfigError
from persona_runtime.routing.types import TIER_NAMES
from persona_runtime.settings import local_context_from_env, request_timeout_from_env
from persona_runtime.tier import (
    BUNDLED_MODEL,
    KEYLESS_PROVIDERS,
    KNOWN_PROVIDERS,
    ModelSlot,
    TierConfig,
    TierMetadata,
    TierRegistry,
)

__all__ = ["tier_configs_from_env", "tier_registry_from_env"]

_META_VARS = {
    "COST_INPUT_PER_1K": float,
    "COST_OUTPUT_PER_1K": float,
    "FIRST_TOKEN_LATENCY_MS": float,
    "THROUGHPUT_TOKENS_PER_SEC": float,
    "CONTEXT_WINDOW": int,
    "TOOL_STRENGTH": str,
}


def tier_registry_from_env(env: Mapping[str, str] | None = None, **kwargs: Any) -> TierRegistry:
    """Build the registry from ``PERSONA_*`` variables; :class:`ConfigError` names a bad one."""
    source = dict(os.environ if env is None else env)
    tiers = tier_configs_from_env(source)
    kwargs.setdefault("local_context", local_context_from_env(source))
    return TierRegistry(tiers, request_timeout_s=request_timeout_from_env(source), **kwargs)


def tier_configs_from_env(env: Mapping[str, str]) -> list[TierConfig]:
    """The tiers the per-tier variables describe (the bundled model on every tier when none
    is set); :class:`ConfigError` names a bad variable. Builds no backend."""
    tiers: list[TierConfig] = []
    for name in TIER_NAMES:
        prefix = f"PERSONA_{name.upper()}_"
        slots = _slots_from_env(env, prefix, name)
        if slots:
            metadata, window = _metadata_from_env(env, prefix)
            tiers.append(TierConfig(name=name, models=slots, metadata=metadata, context_window=window))
    if not tiers:
        slots = _slots_from_env(env, "PERSONA_", "all tiers") or (_bundled_slot(env),)
        tiers = [TierConfig(name=name, models=slots) for name in TIER_NAMES]
    return tiers


def _bundled_slot(env: Mapping[str, str]) -> ModelSlot:
    local = env.get("PERSONA_LOCAL_MODEL", "").strip()
    return ModelSlot(provider="gguf", model=local or BUNDLED_MODEL)


def _slots_from_env(env: Mapping[str, str], prefix: str, where: str) -> tuple[ModelSlot, ...]:
    models_var = f"{prefix}MODELS"
    raw_list = env.get(models_var, "").strip() if prefix != "PERSONA_" else ""
    if raw_list:
        return tuple(_parse_models_list(env, models_var, raw_list))
    provider = env.get(f"{prefix}PROVIDER", "").strip().lower()
    model = env.get(f"{prefix}MODEL", "").strip()
    api_key = env.get(f"{prefix}API_KEY", "").strip()
    base_url = env.get(f"{prefix}BASE_URL", "").strip()
    if not (provider or model or api_key or base_url):
        return ()
    if not provider:
        present = next(v for v in ("MODEL", "API_KEY", "BASE_URL") if env.get(f"{prefix}{v}", "").strip())
        raise ConfigError(
            f"{prefix}PROVIDER is missing ({prefix}{present} is set); set it or unset the others",
            variable=f"{prefix}PROVIDER",
        )
    _check_provider(provider, f"{prefix}PROVIDER")
    if provider == "gguf":
        model = model or env.get("PERSONA_LOCAL_MODEL", "").strip() or BUNDLED_MODEL
    elif not model:
        raise ConfigError(f"{prefix}MODEL is missing ({prefix}PROVIDER={provider})", variable=f"{prefix}MODEL")
    if provider not in KEYLESS_PROVIDERS and not api_key:
        raise ConfigError(
            f"{prefix}API_KEY is missing ({prefix}PROVIDER={provider} needs a key)", variable=f"{prefix}API_KEY"
        )
    if base_url:
        _check_url(base_url, f"{prefix}BASE_URL")
    return (ModelSlot(provider=provider, model=model, base_url=base_url or None, api_key=api_key or None),)


def _parse_models_list(env: Mapping[str, str], var: str, raw: str) -> list[ModelSlot]:
    entries: list[tuple[str, str, str]] = []
    for position, entry in enumerate(raw.split(","), start=1):  # the whole list's shape first
        entry = entry.strip()
        provider, sep, model = entry.partition("/")
        provider, model = provider.strip().lower(), model.strip()
        if not entry or not sep or not provider or not model:
            raise ConfigError(
                f"{var} entry {position} ({entry!r}) is not provider/model, e.g. openai/gpt-4o-mini",
                variable=var,
            )
        _check_provider(provider, var)
        entries.append((entry, provider, model))
    slots: list[ModelSlot] = []
    for entry, provider, model in entries:
        key_var, url_var = f"PERSONA_{provider.upper()}_API_KEY", f"PERSONA_{provider.upper()}_BASE_URL"
        api_key = env.get(key_var, "").strip()
        if provider not in KEYLESS_PROVIDERS and not api_key:
            raise ConfigError(f"{key_var} is missing (needed by {var} entry {entry!r})", variable=key_var)
        base_url = env.get(url_var, "").strip()
        if base_url:
            _check_url(base_url, url_var)
        slots.append(ModelSlot(provider=provider, model=model, base_url=base_url or None, api_key=api_key or None))
    return slots


def _check_provider(provider: str, var: str) -> None:
    if provider not in KNOWN_PROVIDERS:
        raise ConfigError(
            f"{var}: unknown provider {provider!r} (known: {', '.join(KNOWN_PROVIDERS)})", variable=var
        )


def _check_url(url: str, var: str) -> None:
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise ConfigError(f"{var} is not an http(s) URL: {url!r}", variable=var)
    try:
        parsed.port  # noqa: B018 - raises on a malformed port
    except ValueError:
        raise ConfigError(f"{var} has a malformed port: {url!r}", variable=var) from None


def _number(env: Mapping[str, str], var: str, kind: type, *, default: Any = None) -> Any:
    raw = env.get(var, "").strip()
    if not raw:
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigError(f"{var} must be a {kind.__name__} number, got {raw!r}", variable=var) from None
    if value < 0:
        raise ConfigError(f"{var} must not be negative, got {raw!r}", variable=var)
    return value


def _metadata_from_env(env: Mapping[str, str], prefix: str) -> tuple[TierMetadata | None, int | None]:
    present = {k: env[f"{prefix}{k}"].strip() for k in _META_VARS if env.get(f"{prefix}{k}", "").strip()}
    window = _number(env, f"{prefix}CONTEXT_WINDOW", int) if "CONTEXT_WINDOW" in present else None
    if window == 0:
        raise ConfigError(f"{prefix}CONTEXT_WINDOW must be > 0", variable=f"{prefix}CONTEXT_WINDOW")
    numeric = {k: _number(env, f"{prefix}{k}", kind) for k, kind in _META_VARS.items() if kind is not str and k in present}
    strength = present.get("TOOL_STRENGTH", "").lower()
    if strength and strength not in ("weak", "medium", "strong"):
        raise ConfigError(f"{prefix}TOOL_STRENGTH must be weak, medium or strong", variable=f"{prefix}TOOL_STRENGTH")
    if len(present) < len(_META_VARS):
        return None, window
    meta = TierMetadata(
        cost_input_per_1k_tokens=numeric["COST_INPUT_PER_1K"],
        cost_output_per_1k_tokens=numeric["COST_OUTPUT_PER_1K"],
        first_token_latency_ms=numeric["FIRST_TOKEN_LATENCY_MS"],
        throughput_tokens_per_sec=numeric["THROUGHPUT_TOKENS_PER_SEC"],
        context_window=numeric["CONTEXT_WINDOW"],
        tool_strength=strength,  # type: ignore[arg-type]
        reasoning_capable=env.get(f"{prefix}REASONING_CAPABLE", "").strip().lower() in ("1", "true", "yes"),
    )
    return meta, window
