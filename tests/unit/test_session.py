"""The session as a library object: persona files, router choice, background loading, one turn.

Only ``persona_runtime`` is imported here: what a library user (no CLI) can do."""

from __future__ import annotations


import pytest

from persona_runtime.errors import PersonaFileError, SetupError
from persona_runtime.persona_file import load_persona
from persona_runtime.routing import HeuristicRouter, UnifiedRouter
from persona_runtime.session import make_router, open_session
from persona_runtime.settings import Settings
from persona_runtime.tier_env import tier_registry_from_env
from tests.support.paths import REPO

PERSONAS = REPO / "personas"


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

    import persona_runtime.session as session_module

    entered, release = threading.Event(), threading.Event()
    real_load = session_module.load_heavy_parts

    def slow_load(session, memory=None):  # the loader thread waits until the test has cancelled the first wait
        entered.set()
        assert release.wait(60)
        return real_load(session, memory)

    monkeypatch.setattr(session_module, "load_heavy_parts", slow_load)
    settings = Settings(data_dir=tmp_path, embedder="hash")
    session = open_session(PERSONAS / "kai.yaml", settings=settings, start=False)

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


PLAIN_PERSONA = """\
schema_version: "1.0"
identity:
  name: Ola
  role: tide-table helper
  background: Knows the harbour.
"""


def test_a_library_user_builds_a_session_and_runs_one_turn(tmp_path) -> None:
    """No CLI, no environment: settings, tiers on a scripted model, one turn, the turn logged."""
    import asyncio

    from persona_runtime.events import TextDelta, TurnFinished
    from persona_runtime.testing import ScriptedBackend
    from persona_runtime.tier import TierConfig, TierRegistry

    persona_file = tmp_path / "ola.yaml"
    persona_file.write_text(PLAIN_PERSONA)
    backend = ScriptedBackend(["High tide is at 14:05."])
    settings = Settings(data_dir=tmp_path / "home", embedder="hash", reply_tokens=200)
    tiers = TierRegistry([TierConfig.from_backend("mid", backend)])
    session = open_session(persona_file, settings=settings, tiers=tiers)

    async def one_turn() -> list[object]:
        try:
            loop = await session.loop()
            conversation = session.new_conversation()
            return [event async for event in loop.turn(conversation, "When is high tide?")]
        finally:
            await session.aclose()

    events = asyncio.run(asyncio.wait_for(one_turn(), 120))
    finished = events[-1]
    assert isinstance(finished, TurnFinished) and finished.status == "ok"
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "High tide is at 14:05."
    assert session.persona_id == "ola"  # no persona_id in the file: the file's name
    assert backend.calls[-1].max_tokens == 200  # the settings reach the loop
    logged = (tmp_path / "home" / "logs" / "turns.jsonl").read_text().splitlines()
    assert len(logged) == 1 and '"persona_id":"ola"' in logged[0].replace(" ", "")


def test_a_loop_asked_for_twice_at_once_is_built_once(tmp_path) -> None:
    """A draft read ahead and the first turn may both ask for the loop before it exists."""
    import asyncio

    from persona_runtime.testing import ScriptedBackend
    from persona_runtime.tier import TierConfig, TierRegistry

    persona_file = tmp_path / "ola.yaml"
    persona_file.write_text(PLAIN_PERSONA)
    tiers = TierRegistry([TierConfig.from_backend("mid", ScriptedBackend(["Hi."]))])
    session = open_session(persona_file, settings=Settings(data_dir=tmp_path / "home", embedder="hash"), tiers=tiers)
    assert not session.ready

    async def both() -> tuple[object, object]:
        try:
            return tuple(await asyncio.gather(session.loop(), session.loop()))
        finally:
            await session.aclose()

    first, second = asyncio.run(asyncio.wait_for(both(), 120))
    assert first is second
    assert session.ready and session.built_loop is first


def test_new_conversations_are_empty_and_distinct(tmp_path) -> None:
    settings = Settings(data_dir=tmp_path, embedder="hash")
    session = open_session(PERSONAS / "kai.yaml", settings=settings, start=False)
    first, second = session.new_conversation(), session.new_conversation()
    assert first.conversation_id != second.conversation_id
    assert first.persona_id == second.persona_id == "kai" and first.messages == []


def test_a_bad_persona_file_is_one_line_setup_error(tmp_path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(PersonaFileError) as info:
        open_session(missing, settings=Settings(data_dir=tmp_path), start=False)
    assert isinstance(info.value, SetupError)
    assert str(info.value) == f"persona file not found: {missing}"


def test_an_unwritable_data_dir_is_one_line_setup_error(tmp_path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(SetupError) as info:
        open_session(PERSONAS / "kai.yaml", settings=Settings(data_dir=afile / "sub"), start=False)
    assert "not writable" in str(info.value) and "\n" not in str(info.value)


def test_offline_start_says_the_tools_are_off_when_the_persona_has_some(tmp_path) -> None:
    from types import SimpleNamespace

    from persona_cli.console import startup_lines
    from persona_runtime.tier_env import tier_registry_from_env

    bundled = tier_registry_from_env({})
    with_tools = SimpleNamespace(tiers=bundled, notices=[], persona=SimpleNamespace(tools=["file_read"]))
    without = SimpleNamespace(tiers=bundled, notices=[], persona=SimpleNamespace(tools=[]))
    assert any("tools are off" in line for line in startup_lines(with_tools))
    assert not any("tools are off" in line for line in startup_lines(without))
