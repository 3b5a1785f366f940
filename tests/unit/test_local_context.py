"""The prompt budget of a local (GGUF) tier follows PERSONA_LOCAL_CONTEXT, also before its backend
is built (it used to fall back to 8192 whatever the setting said)."""

from __future__ import annotations

import asyncio

from persona.schema.conversation import Conversation

from persona_runtime.loop import ConversationLoop
from persona_runtime.prompt import PromptBuilder
from persona_runtime.routing import HeuristicRouter
from persona_runtime.settings import Settings
from persona_runtime.testing import Reply, ScriptedBackend
from persona_runtime.tier_env import tier_registry_from_env
from persona_runtime.turnlog import MemoryTurnLogWriter
from tests.unit.test_loop import PERSONA


def test_unbuilt_local_tier_reports_the_configured_context() -> None:
    settings = Settings.from_env({"PERSONA_LOCAL_CONTEXT": "2048"})
    registry = settings.tier_registry()
    assert [registry.context_window_for(t) for t in ("small", "mid", "frontier")] == [2048] * 3
    assert tier_registry_from_env({"PERSONA_LOCAL_CONTEXT": "3000"}).context_window_for("mid") == 3000
    explicit = {"PERSONA_MID_PROVIDER": "gguf", "PERSONA_LOCAL_CONTEXT": "1024"}
    assert tier_registry_from_env(explicit).context_window_for("mid") == 1024


class _Recording(PromptBuilder):
    def __init__(self) -> None:
        super().__init__()
        self.budgets: list[int] = []

    def build(self, *args, max_tokens: int, **kwargs):  # type: ignore[override]
        self.budgets.append(max_tokens)
        return super().build(*args, max_tokens=max_tokens, **kwargs)


def test_first_turn_budget_follows_local_context_before_the_backend_exists() -> None:
    built: list[str] = []

    def factory(slot):
        built.append(slot.model)
        return ScriptedBackend([Reply("ok")], model_name="smol")

    settings = Settings.from_env({"PERSONA_LOCAL_CONTEXT": "1024"})
    tiers = settings.tier_registry(backend_factory=factory)
    builder = _Recording()
    loop = ConversationLoop(
        persona=PERSONA, tiers=tiers, memory=None, router=HeuristicRouter(tiers), toolbox=None,
        turn_log=MemoryTurnLogWriter(), prompt_builder=builder,
    )
    conversation = Conversation(conversation_id="c1", persona_id="tester")

    async def turn() -> None:
        async for _event in loop.turn(conversation, "hi"):
            pass

    asyncio.run(turn())
    assert built  # the backend was built by this turn, after the budget was taken
    slot = tiers.slots("mid")[0]
    tier = next(t for t in ("small", "mid", "frontier") if tiers.slots(t)[0] == slot)
    reply_tokens, _ = loop.engine.reply_budget(tier, slot)
    assert builder.budgets[0] == 1024 - reply_tokens


def test_context_to_open_doubles_fits_and_stops_at_the_maximum() -> None:
    from persona_runtime.local_model import context_to_open

    assert context_to_open(2048, 1500, 8192) == 2048  # fits: stays
    assert context_to_open(2048, 2049, 8192) == 4096  # at least double (one reopen, not many)
    assert context_to_open(2048, 5000, 8192) == 5120  # more than double: what it needs, in 256 steps
    assert context_to_open(2048, 9000, 8192) == 8192  # never past PERSONA_LOCAL_CONTEXT
    assert context_to_open(8192, 9000, 8192) == 8192
