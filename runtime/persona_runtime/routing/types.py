"""Routing value types shared by every router."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

__all__ = ["AUTO_TIER", "TIER_CHOICES", "TIER_NAMES", "Profile", "RoutingContext", "RoutingDecision", "TierName"]

TierName = Literal["frontier", "mid", "small"]
Profile = Literal["text_default", "voice"]
#: Canonical order, most capable first.
TIER_NAMES: tuple[TierName, ...] = ("frontier", "mid", "small")
#: Not a tier: the router picks one per turn.
AUTO_TIER = "auto"
#: What a person may pick (``--tier``, ``/tier``): auto first, then the tiers cheapest first.
TIER_CHOICES: tuple[str, ...] = (AUTO_TIER, *reversed(TIER_NAMES))


@dataclass(frozen=True, slots=True)
class RoutingContext:
    """What a router knows about the turn it is routing."""

    estimated_input_tokens: int = 0
    is_first_turn: bool = False
    is_identity_sensitive: bool = False
    is_boilerplate: bool = False
    requires_vision: bool = False
    requires_strong_tools: bool = False
    conversation_phase: Literal["opening", "middle", "closing"] = "middle"
    profile: Profile = "text_default"

    def __post_init__(self) -> None:
        if self.estimated_input_tokens < 0:
            raise ValueError("estimated_input_tokens must be >= 0")


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """Which tier (and model) answers, and why."""

    tier: str
    model: str = ""
    rationale: str = ""
    candidates_considered: tuple[str, ...] = ()
    layer1_filter_reasons: dict[str, str] = field(default_factory=dict)
    scores: dict[str, float] = field(default_factory=dict)
    layer2_score: float = 0.0
    fallback_triggered: bool = False
    fallback_reason: str | None = None

    def to_record(self) -> dict[str, object]:
        """A JSON-safe dict for the TurnLog."""
        return {
            "tier": self.tier,
            "model": self.model,
            "rationale": self.rationale,
            "candidates": list(self.candidates_considered),
            "filtered": dict(self.layer1_filter_reasons),
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "fallback_reason": self.fallback_reason,
        }
