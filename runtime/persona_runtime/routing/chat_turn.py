"""Which tier answers one chat turn: a forced tier, the persona's override, or the router."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from persona_runtime.routing.types import RoutingContext, RoutingDecision

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation
    from persona.schema.persona import Persona

    from persona_runtime.tier import TierRegistry

__all__ = ["route_chat_turn"]


def route_chat_turn(
    persona: Persona, tiers: TierRegistry, router: Any, conversation: Conversation, user_text: str, forced: str | None
) -> RoutingDecision:
    def decided(tier: str, rationale: str) -> RoutingDecision:
        return RoutingDecision(tier=tier, model=tiers.model_name_for(tier), rationale=rationale, candidates_considered=(tier,))

    if forced and forced != "auto":
        return decided(forced, f"forced → {forced}")
    override = getattr(getattr(persona, "routing", None), "tier_for_generation", "auto")
    if override != "auto":
        return decided(override, f"persona_override → {override}")
    if router is None:
        return decided("mid", "no router → mid")
    from persona_runtime.routing import classify_message

    traits = classify_message(user_text, persona)
    ctx = RoutingContext(
        estimated_input_tokens=len(user_text) // 4,
        is_first_turn=conversation.turn_count == 0,
        is_identity_sensitive=traits.is_identity_sensitive,
        is_boilerplate=traits.is_boilerplate,
        conversation_phase="opening" if conversation.turn_count < 2 else "middle",
    )
    return router.route(ctx)
