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


def test_ctrl_c_while_the_first_turn_waits_for_loading_does_not_break_the_session(tmp_path, monkeypatch) -> None:
    """Cancelling the wait for the background load (Ctrl-C before the first reply) must leave the
    shared load untouched: the next turn gets a working loop."""
    import asyncio
    import threading

    import persona_cli.compose as compose

    monkeypatch.setenv("PERSONA_HOME", str(tmp_path))
    monkeypatch.setenv("PERSONA_EMBEDDER", "hash")
    entered, release = threading.Event(), threading.Event()
    real_build = compose._build_heavy

    def slow_build(session):  # the loader thread waits until the test has cancelled the first wait
        entered.set()
        assert release.wait(60)
        return real_build(session)

    monkeypatch.setattr(compose, "_build_heavy", slow_build)
    session = compose.open_session(PERSONAS / "kai.yaml", start=False)

    async def main() -> object:
        first = asyncio.ensure_future(session.loop())
        # Once the loader runs, ``first`` (which started it) is awaiting the shared load.
        assert await asyncio.to_thread(entered.wait, 60)
        assert not first.done()  # still loading
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        try:
            return await asyncio.wait_for(session.loop(), 60)
        finally:
            await session.aclose()

    from persona_runtime.loop import ConversationLoop

    assert isinstance(asyncio.run(main()), ConversationLoop)
