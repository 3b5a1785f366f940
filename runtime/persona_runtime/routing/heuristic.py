"""HeuristicRouter: a few ordered rules on top of layer 1. Deterministic and microseconds fast."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from persona_runtime.routing.layer1 import apply_constraint_filter
from persona_runtime.routing.types import AUTO_TIER, TIER_NAMES, RoutingContext, RoutingDecision

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.tier import TierRegistry

__all__ = ["DEFAULT_RULE_TIERS", "RULE_NAMES", "HeuristicRouter"]

#: Rule order: the first rule that fires and whose tier survived layer 1 wins.
RULE_NAMES: Final[tuple[str, ...]] = ("first_turn", "boilerplate", "identity", "default")
DEFAULT_RULE_TIERS: Final[Mapping[str, str]] = {
    "first_turn": "frontier",  # the first answer sets the persona's voice
    "boilerplate": "small",
    "identity": "frontier",  # identity and jailbreak probes need the strongest model
    "default": "mid",
}


class HeuristicRouter:
    """Rule-based router. ``overrides`` maps a rule name to a tier (e.g. ``{"default": "small"}``).

    ``fixed_tier`` pins every turn to one tier (a persona's ``routing.tier_for_generation``);
    if layer 1 filters that tier out, the ordinary rules decide instead of failing the turn.
    """

    def __init__(
        self,
        tier_registry: TierRegistry | None = None,
        *,
        overrides: Mapping[str, str] | None = None,
        fixed_tier: str | None = None,
    ) -> None:
        overrides = dict(overrides or {})
        unknown_rules = set(overrides) - set(RULE_NAMES)
        if unknown_rules:
            raise ValueError(f"unknown routing rule(s): {', '.join(sorted(unknown_rules))} (rules: {', '.join(RULE_NAMES)})")
        for tier in (*overrides.values(), *([fixed_tier] if fixed_tier is not None else [])):
            if tier not in TIER_NAMES:
                raise ValueError(f"unknown tier {tier!r} (tiers: {', '.join(TIER_NAMES)})")
        self._registry = tier_registry
        self._rule_tiers: dict[str, str] = {**DEFAULT_RULE_TIERS, **overrides}
        self.fixed_tier = fixed_tier

    @classmethod
    def for_persona(cls, persona: Persona, tier_registry: TierRegistry | None = None) -> HeuristicRouter:
        """Honour ``persona.routing.tier_for_generation`` (anything but ``auto`` pins the tier).

        ``preferred_model`` picks a model, not a tier; the turn loop handles it, so it is ignored here.
        """
        tier = persona.routing.tier_for_generation
        return cls(tier_registry, fixed_tier=None if tier == AUTO_TIER else tier)

    @property
    def rule_tiers(self) -> Mapping[str, str]:
        return dict(self._rule_tiers)

    def route(self, context: RoutingContext) -> RoutingDecision:
        survivors, reasons = apply_constraint_filter(context, self._registry)
        return self.decide(context, survivors, reasons)

    def decide(self, context: RoutingContext, survivors: tuple[str, ...], reasons: Mapping[str, str]) -> RoutingDecision:
        """The rules over an already computed layer-1 result (lets UnifiedRouter reuse its own)."""
        prefix = ""
        if self.fixed_tier is not None:
            if self.fixed_tier in survivors:
                return self._decision(self.fixed_tier, f"persona_override → {self.fixed_tier}", survivors, reasons)
            prefix = f"persona_override → {self.fixed_tier} filtered ({reasons.get(self.fixed_tier, 'unavailable')}); "
        fired = {
            "first_turn": context.is_first_turn,
            "boilerplate": context.is_boilerplate,
            "identity": context.is_identity_sensitive,
            "default": True,
        }
        for rule in RULE_NAMES:
            tier = self._rule_tiers[rule]
            if fired[rule] and tier in survivors:
                return self._decision(tier, f"{prefix}{rule} → {tier}", survivors, reasons)
        tier = survivors[0]
        return self._decision(tier, f"{prefix}first_survivor → {tier}", survivors, reasons)

    def _decision(
        self, tier: str, rationale: str, survivors: tuple[str, ...], reasons: Mapping[str, str]
    ) -> RoutingDecision:
        model = self._registry.model_name_for(tier) if self._registry is not None else ""
        return RoutingDecision(
            tier=tier,
            model=model,
            rationale=rationale,
            candidates_considered=tuple(survivors),
            layer1_filter_reasons=dict(reasons),
        )
