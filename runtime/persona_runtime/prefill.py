"""Local models read the persona's system message while the session loads and the person types."""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime.prompt import PromptBuilder

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.prompt_cache import PromptCache
    from persona_runtime.session import Session
    from persona_runtime.standing import Standing
    from persona_runtime.tier import TierRegistry

__all__ = ["prefill_local_models", "prefill_session", "preload_local_models"]


def prefill_session(session: Session) -> None:
    """The session's head start, on a thread of its own from launch: the prompt budget's
    tokenizer, then the system message the first turn will most likely send (its standing memory
    predicted without opening the store), read or loaded from the prompt cache. Once memory has
    been used (a snapshot is there), the opening of the recalled block follows: a first turn's
    prompt goes on with it whenever memory recalls anything. Never raises."""
    try:
        from persona_runtime.memory_open import memory_folder
        from persona_runtime.prompt import count_tokens, recall_opening
        from persona_runtime.prompt_cache import PromptCache
        from persona_runtime.standing import predict_standing, read_snapshot, snapshot_path

        count_tokens("")  # loads the prompt budget's tokenizer (~0.25 s) while the models load
        folder = memory_folder(session)
        standing = predict_standing(folder, session.persona)
        used, _ = read_snapshot(snapshot_path(folder, session.persona.persona_id or "persona"))  # as memory names it
        prefill_local_models(
            session.persona, session.tiers, cache=PromptCache(session.paths.prompt_cache), standing=standing,
            opening=recall_opening(standing) if used else None,
        )
    except Exception:  # noqa: BLE001, S110 - only a head start; the first turn reads it anyway
        pass


def prefill_local_models(
    persona: Persona,
    tiers: TierRegistry,
    prompt_builder: PromptBuilder | None = None,
    cache: PromptCache | None = None,
    standing: Standing | None = None,
    opening: str | None = None,
) -> int:
    """Read the system message every turn will start with into each local model a tier uses
    (:meth:`LlamaCppBackend.prefill`), so the first reply does not wait for it. Local tiers get
    no tools, hence no skill index: exactly what :meth:`persona_runtime.loop.ConversationLoop.turn` sends them.
    With ``cache``, what an earlier launch read comes from disk. Blocking; run it on a thread of
    its own once the models are loading. ``standing``: the persona's standing memory the turn
    will find (:func:`persona_runtime.standing.predict_standing`); ``opening``: how the first
    user message most likely begins, read after it (a guess: a request that goes on otherwise
    drops it). Returns tokens read or loaded (the system message's)."""
    from persona.schema.conversation import ConversationMessage

    system = (prompt_builder or PromptBuilder()).system_message(persona, standing=standing)
    draft = [system, ConversationMessage(role="user", content=opening, created_at=system.created_at)] if opening else None
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
            if draft is not None:
                backend.read_ahead(draft, stop=lambda: False)
    return read


def preload_local_models(tiers: TierRegistry, *, wait: bool = True) -> None:
    """Start loading every local GGUF model a tier uses (each on its loader thread), and with
    ``wait`` wait for them (blocking: a loader thread's job)."""
    for _name, _serving, slot in tiers.describe():
        if slot.provider == "gguf":
            try:
                backend = tiers.backend_for(slot)
            except Exception:  # noqa: BLE001 - the first turn reports it (and falls back)
                continue
            preload = getattr(backend, "preload", None)
            wait_loaded = getattr(backend, "wait_loaded", None)
            if preload is not None and wait_loaded is not None:
                preload()
                if wait:
                    wait_loaded()
