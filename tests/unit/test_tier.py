"""TierRegistry and tier_registry_from_env: resolution, fallback order, laziness, config errors."""

from __future__ import annotations

import asyncio

import pytest

from persona_runtime.errors import ConfigError, TierNotConfiguredError
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import BUNDLED_MODEL, ModelSlot, TierConfig, TierMetadata, TierRegistry
from persona_runtime.tier_env import tier_registry_from_env


def triple(tier: str, provider: str = "openai", model: str = "gpt-4o-mini", key: str = "sk-abcdef123") -> dict[str, str]:
    prefix = f"PERSONA_{tier.upper()}_"
    return {f"{prefix}PROVIDER": provider, f"{prefix}MODEL": model, f"{prefix}API_KEY": key}


def test_no_configuration_means_the_bundled_local_model_everywhere() -> None:
    reg = tier_registry_from_env({})
    assert [(t, s, slot.provider, slot.model) for t, s, slot in reg.describe()] == [
        ("frontier", "frontier", "gguf", BUNDLED_MODEL),
        ("mid", "mid", "gguf", BUNDLED_MODEL),
        ("small", "small", "gguf", BUNDLED_MODEL),
    ]
    assert reg.bundled_only
    assert len(reg.fallback_chain("frontier")) == 1  # one model, tried once


def test_local_model_path_replaces_the_bundled_one() -> None:
    reg = tier_registry_from_env({"PERSONA_LOCAL_MODEL": "/models/qwen.gguf"})
    assert reg.slots("mid")[0] == ModelSlot(provider="gguf", model="/models/qwen.gguf")
    assert not reg.bundled_only


def test_single_provider_serves_all_tiers_and_is_built_once() -> None:
    reg = tier_registry_from_env({"PERSONA_PROVIDER": "openai", "PERSONA_MODEL": "gpt-4o", "PERSONA_API_KEY": "sk-abcdef123"})
    assert {reg.model_name_for(t) for t in ("frontier", "mid", "small")} == {"gpt-4o"}
    assert reg._cache == {}  # lazy: nothing built yet
    assert reg.get("mid") is reg.get("small") is reg.get("frontier")


def test_unset_tiers_resolve_small_then_mid_then_frontier() -> None:
    reg = tier_registry_from_env(triple("frontier", model="big") | triple("mid", model="medium"))
    assert reg.resolve("small") == "mid"
    assert reg.model_name_for("small") == "medium"
    only_frontier = tier_registry_from_env(triple("frontier", model="big"))
    assert only_frontier.resolve("mid") == "frontier" and only_frontier.resolve("small") == "frontier"


def test_local_small_tier_beside_remote_tiers() -> None:
    env = triple("frontier", model="big") | triple("mid", model="medium") | {"PERSONA_SMALL_PROVIDER": "gguf"}
    reg = tier_registry_from_env(env)
    assert reg.slots("small")[0].provider == "gguf" and reg.slots("small")[0].model == BUNDLED_MODEL
    assert reg.slots("mid")[0].provider == "openai"


def test_models_list_gives_ordered_fallbacks_with_per_provider_keys() -> None:
    env = {
        "PERSONA_MID_MODELS": "deepseek/deepseek-chat, groq/llama-3.3-70b-versatile, ollama/llama3",
        "PERSONA_DEEPSEEK_API_KEY": "dk-123456789",
        "PERSONA_GROQ_API_KEY": "gk-123456789",
        "PERSONA_GROQ_BASE_URL": "http://127.0.0.1:9/v1",
    }
    reg = tier_registry_from_env(env)
    slots = reg.slots("mid")
    assert [s.label for s in slots] == ["deepseek/deepseek-chat", "groq/llama-3.3-70b-versatile", "ollama/llama3"]
    assert slots[1].base_url == "http://127.0.0.1:9/v1" and slots[2].api_key is None
    assert [label for _t, label in ((t, s.label) for t, s in reg.fallback_chain("mid"))][:3] == [s.label for s in slots]


def test_fallback_chain_walks_tiers_in_order_without_repeating_a_model() -> None:
    env = triple("frontier", model="big") | triple("mid", model="medium") | triple("small", model="medium")
    reg = tier_registry_from_env(env)
    assert [(t, s.model) for t, s in reg.fallback_chain("frontier")] == [("frontier", "big"), ("mid", "medium")]
    assert [(t, s.model) for t, s in reg.fallback_chain("small")] == [("small", "medium"), ("frontier", "big")]


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"PERSONA_MID_PROVIDER": "openai"}, "PERSONA_MID_MODEL"),
        ({"PERSONA_MID_PROVIDER": "openai", "PERSONA_MID_MODEL": "m"}, "PERSONA_MID_API_KEY"),
        ({"PERSONA_MID_MODEL": "m"}, "PERSONA_MID_PROVIDER"),
        ({"PERSONA_PROVIDER": "nope", "PERSONA_MODEL": "m", "PERSONA_API_KEY": "sk-123456"}, "PERSONA_PROVIDER"),
        ({"PERSONA_SMALL_MODELS": "openai"}, "PERSONA_SMALL_MODELS"),
        ({"PERSONA_SMALL_MODELS": "openai/gpt-4o,"}, "PERSONA_SMALL_MODELS"),
        ({"PERSONA_SMALL_MODELS": "openai/gpt-4o"}, "PERSONA_OPENAI_API_KEY"),
        (triple("mid") | {"PERSONA_MID_BASE_URL": "ftp://x"}, "PERSONA_MID_BASE_URL"),
        (triple("mid") | {"PERSONA_MID_BASE_URL": "http://127.0.0.1:notaport/v1"}, "PERSONA_MID_BASE_URL"),
        (triple("mid") | {"PERSONA_MID_CONTEXT_WINDOW": "big"}, "PERSONA_MID_CONTEXT_WINDOW"),
        (triple("mid") | {"PERSONA_MID_TOOL_STRENGTH": "mighty"}, "PERSONA_MID_TOOL_STRENGTH"),
        (triple("mid") | {"PERSONA_MID_COST_INPUT_PER_1K": "-1"}, "PERSONA_MID_COST_INPUT_PER_1K"),
        ({"PERSONA_REQUEST_TIMEOUT_S": "soon"}, "PERSONA_REQUEST_TIMEOUT_S"),
    ],
)
def test_config_errors_name_the_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        tier_registry_from_env(env)
    assert info.value.variable == variable and variable in str(info.value)


def test_metadata_all_six_or_context_window_alone() -> None:
    meta_env = {
        "PERSONA_MID_COST_INPUT_PER_1K": "0.1", "PERSONA_MID_COST_OUTPUT_PER_1K": "0.4",
        "PERSONA_MID_FIRST_TOKEN_LATENCY_MS": "500", "PERSONA_MID_THROUGHPUT_TOKENS_PER_SEC": "80",
        "PERSONA_MID_CONTEXT_WINDOW": "32000", "PERSONA_MID_TOOL_STRENGTH": "strong",
    }
    reg = tier_registry_from_env(triple("mid") | meta_env)
    meta = reg.metadata_for("mid")
    assert meta == TierMetadata(0.1, 0.4, 500.0, 80.0, 32000, "strong")
    assert reg.price_for("mid", reg.slots("mid")[0]) == (0.1, 0.4)
    only_window = tier_registry_from_env(triple("mid") | {"PERSONA_MID_CONTEXT_WINDOW": "16000"})
    assert only_window.metadata_for("mid") is None and only_window.context_window_for("mid") == 16000


def test_context_window_defaults_per_model_not_a_constant() -> None:
    assert tier_registry_from_env(triple("mid", model="gpt-4o-mini")).context_window_for("mid") == 128_000
    assert tier_registry_from_env(triple("mid", provider="anthropic", model="claude-sonnet-4-6")).context_window_for("mid") == 200_000
    assert tier_registry_from_env(triple("mid", model="some-unknown-model")).context_window_for("mid") == 8_192


def test_unknown_tier_with_nothing_configured_raises() -> None:
    reg = TierRegistry([TierConfig.from_backend("custom", ScriptedBackend())])
    with pytest.raises(TierNotConfiguredError):
        reg.resolve("mid")


def test_aclose_closes_built_backends_and_is_idempotent() -> None:
    closed: list[str] = []

    class Closable(ScriptedBackend):
        async def aclose(self) -> None:
            closed.append(self.model_name)

    reg = TierRegistry([TierConfig.from_backend("mid", Closable(model_name="a"))])
    asyncio.run(reg.aclose())
    asyncio.run(reg.aclose())
    assert closed == ["a", "a"]  # caller-owned backends stay resolvable after close
    assert reg.get("mid").model_name == "a"


def test_missing_key_at_construction_is_a_provider_error_not_a_crash() -> None:
    from persona.backends.errors import ProviderError

    reg = TierRegistry([TierConfig(name="mid", models=(ModelSlot(provider="openai", model="gpt-4o"),))])
    with pytest.raises(ProviderError):
        reg.get("mid")


def test_sdk_retries_are_disabled_on_built_backends() -> None:
    reg = tier_registry_from_env(triple("mid", key="sk-abcdef123") | {"PERSONA_MID_BASE_URL": "http://127.0.0.1:9/v1"})
    backend = reg.get("mid")
    assert backend._openai.max_retries == 0
