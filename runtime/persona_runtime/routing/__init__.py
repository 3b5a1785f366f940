"""Routing: which tier answers a turn, and why. No UI imports, never builds a backend."""

from persona_runtime.routing.classify import MessageTraits, classify_message
from persona_runtime.routing.heuristic import HeuristicRouter
from persona_runtime.routing.layer1 import RoutingConstraintError, apply_constraint_filter
from persona_runtime.routing.protocol import Router
from persona_runtime.routing.types import AUTO_TIER, TIER_CHOICES, TIER_NAMES, RoutingContext, RoutingDecision
from persona_runtime.routing.unified import UnifiedRouter

__all__ = [
    "AUTO_TIER",
    "TIER_CHOICES",
    "TIER_NAMES",
    "HeuristicRouter",
    "MessageTraits",
    "Router",
    "RoutingConstraintError",
    "RoutingContext",
    "RoutingDecision",
    "UnifiedRouter",
    "apply_constraint_filter",
    "classify_message",
]
