"""Layer 2: sweet-spot scoring. Each tier is scored on cost, quality fit and first-token latency.

"Quality fit" rewards the tier whose capability matches how demanding the turn looks, so an
easy turn does not pay frontier prices and a hard one does not get the small model.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Protocol

from persona_runtime.routing.types import RoutingContext

if TYPE_CHECKING:
    from persona_runtime.tier import TierMetadata

__all__ = [
    "PROFILE_WEIGHTS",
    "TIER_QUALITY",
    "ProfileWeights",
    "Scorer",
    "SweetSpotScorer",
    "quality_proxy",
]

#: How capable each tier is assumed to be, on the same 0..1 scale as :func:`quality_proxy`.
TIER_QUALITY: Final[Mapping[str, float]] = {"frontier": 1.0, "mid": 0.5, "small": 0.0}
#: Output tokens assumed per turn when estimating cost.
ASSUMED_OUTPUT_TOKENS: Final = 500
#: A turn costing this many cents (or more) gets a cost score of 0.
COST_CEILING_CENTS: Final = 5.0
#: A first token this slow (or slower) gets a latency score of 0.
LATENCY_CEILING_MS: Final = 5000.0
REASONING_BONUS: Final = 0.10


@dataclass(frozen=True, slots=True)
class ProfileWeights:
    cost: float
    quality: float
    latency: float

    def __post_init__(self) -> None:
        if min(self.cost, self.quality, self.latency) < 0:
            raise ValueError("profile weights must be >= 0")


PROFILE_WEIGHTS: Final[Mapping[str, ProfileWeights]] = {
    "text_default": ProfileWeights(cost=0.40, quality=0.50, latency=0.10),
    "voice": ProfileWeights(cost=0.10, quality=0.30, latency=0.60),
}


class Scorer(Protocol):
    """Scores one tier for one turn; higher is better. May raise (the router falls back)."""

    def __call__(self, tier: str, metadata: TierMetadata, context: RoutingContext) -> float: ...


def quality_proxy(ctx: RoutingContext) -> float:
    """How demanding the turn looks, 0 (trivial) .. 1 (needs the best model)."""
    proxy = (
        0.30 * ctx.is_first_turn
        + 0.30 * ctx.is_identity_sensitive
        + 0.15 * ctx.requires_strong_tools
        + 0.10 * ctx.requires_vision
        + 0.10 * min(1.0, ctx.estimated_input_tokens / 4000)
        + 0.05 * (ctx.conversation_phase in ("opening", "closing"))
    )
    return min(1.0, proxy)


class SweetSpotScorer:
    """The default :class:`Scorer`: a weighted sum of cost, quality fit and latency per profile."""

    def __init__(self, weights: Mapping[str, ProfileWeights] | None = None) -> None:
        self._weights: dict[str, ProfileWeights] = {**PROFILE_WEIGHTS, **(weights or {})}

    def weights_for(self, profile: str) -> ProfileWeights:
        return self._weights.get(profile, self._weights["text_default"])

    def __call__(self, tier: str, metadata: TierMetadata, context: RoutingContext) -> float:
        proxy = quality_proxy(context)
        fit = 1.0 - abs(proxy - TIER_QUALITY[tier])
        if metadata.reasoning_capable and proxy >= 0.5:
            fit += REASONING_BONUS
        cents = (
            metadata.cost_input_per_1k_tokens * context.estimated_input_tokens / 1000
            + metadata.cost_output_per_1k_tokens * ASSUMED_OUTPUT_TOKENS / 1000
        )
        cost = 1.0 - min(1.0, cents / COST_CEILING_CENTS)
        latency = 1.0 - min(1.0, metadata.first_token_latency_ms / LATENCY_CEILING_MS)
        w = self.weights_for(context.profile)
        score = w.cost * cost + w.quality * fit + w.latency * latency
        if not math.isfinite(score):
            raise ValueError(f"non-finite score for tier {tier!r}")
        return score
