"""Local models read the persona's system message while the person types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime.prompt import PromptBuilder

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.prompt_cache import PromptCache
    from persona_runtime.tier import TierRegistry

__all__ = ["prefill_local_models"]


def prefill_local_models(
    persona: Persona, tiers: TierRegistry, prompt_builder: PromptBuilder | None = None, cache: PromptCache | None = None
) -> int:
    """Read the system message every turn will start with into each local model a tier uses
    (:meth:`LlamaCppBackend.prefill`), so the first reply does not wait for it. Local tiers get
    no tools, hence no skill index: exactly what :meth:`persona_runtime.loop.ConversationLoop.turn` sends them.
    With ``cache``, what an earlier launch read comes from disk. Blocking; run it on a thread of
    its own once the models are loading. Returns tokens read or loaded."""
    system = (prompt_builder or PromptBuilder()).system_message(persona)
    seen: set[int] = set()
    read = 0
    for _name, _serving, slot in tiers.describe():
        if slot.provider != "gguf":
            continue
        try:
            backend = tiers.backend_for(slot)
        except Exception:  # noqa: BLE001, S112 - a model that cannot load is reported by the turn that needs it
            continue
        prefill = getattr(backend, "prefill", None)
        if prefill is not None and id(backend) not in seen:
            seen.add(id(backend))
            read += prefill([system], cache)
    return read
