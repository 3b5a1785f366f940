"""The composition root's pure parts: bundled personas, router choice."""

from __future__ import annotations

from pathlib import Path

import pytest

from persona_cli.compose import load_persona, make_router
from persona_runtime.routing import HeuristicRouter, UnifiedRouter
from persona_runtime.tier import tier_registry_from_env

PERSONAS = Path(__file__).resolve().parent.parent / "personas"


@pytest.mark.parametrize("name", ["astrid", "kai", "maren"])
def test_bundled_personas_are_valid_and_substantial(name: str) -> None:
    persona = load_persona(PERSONAS / f"{name}.yaml")
    assert persona.persona_id == name
    assert len(persona.identity.constraints) >= 3
    assert any("fabricat" in c.lower() or "dikt" in c.lower() or "invent" in c.lower() for c in persona.identity.constraints)
    assert len(persona.self_facts) >= 4 and len(persona.worldview) >= 4
    assert any(w.epistemic != "fact" for w in persona.worldview)
    assert persona.tools  # an empty list would allow every tool in persona-core


def test_astrid_answers_in_norwegian() -> None:
    assert load_persona(PERSONAS / "astrid.yaml").identity.language_default == "nb"


def test_router_is_unified_only_when_a_tier_has_metadata() -> None:
    persona = load_persona(PERSONAS / "kai.yaml")
    base = {"PERSONA_MID_PROVIDER": "openai", "PERSONA_MID_MODEL": "gpt-4o-mini", "PERSONA_MID_API_KEY": "sk-abcdef12"}
    assert isinstance(make_router(persona, tier_registry_from_env(base)), HeuristicRouter)
    meta = {
        "PERSONA_MID_COST_INPUT_PER_1K": "0.015", "PERSONA_MID_COST_OUTPUT_PER_1K": "0.06",
        "PERSONA_MID_FIRST_TOKEN_LATENCY_MS": "400", "PERSONA_MID_THROUGHPUT_TOKENS_PER_SEC": "90",
        "PERSONA_MID_CONTEXT_WINDOW": "128000", "PERSONA_MID_TOOL_STRENGTH": "strong",
    }
    assert isinstance(make_router(persona, tier_registry_from_env(base | meta)), UnifiedRouter)


def test_public_runtime_names_import() -> None:
    import persona_runtime
    from persona_runtime.testing import ScriptedBackend  # noqa: F401

    names = [
        "ConversationLoop", "PromptBuilder", "RetrievedContext", "Router", "HeuristicRouter", "UnifiedRouter",
        "apply_constraint_filter", "RoutingContext", "RoutingDecision", "TierConfig", "TierMetadata", "TierRegistry",
        "tier_registry_from_env", "TurnLog", "TurnLogWriter", "JSONLTurnLogWriter", "MemoryTurnLogWriter",
    ]
    assert all(getattr(persona_runtime, n) is not None for n in names)
