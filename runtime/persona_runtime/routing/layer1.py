"""Layer 1: hard constraints (vision, context window, strong tools). Shared by every router.

A violated constraint is an error, never a fallback: no amount of scoring makes a text-only
model read an image or fit 200k tokens into an 8k window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from persona_runtime.errors import RuntimeFault, TierNotConfiguredError
from persona_runtime.routing.types import TIER_NAMES, RoutingContext

if TYPE_CHECKING:
    from collections.abc import Callable

    from persona_runtime.tier import TierRegistry

__all__ = ["RoutingConstraintError", "apply_constraint_filter"]


class RoutingConstraintError(RuntimeFault):
    """No tier satisfies the turn's hard constraints. ``reason`` is a stable code."""

    def __init__(self, reason: str, filtered: dict[str, str] | None = None) -> None:
        self.reason = reason
        self.filtered = dict(filtered or {})
        detail = "; ".join(f"{t}: {why}" for t, why in self.filtered.items())
        super().__init__(f"no tier can serve this turn ({reason})" + (f": {detail}" if detail else ""))


def apply_constraint_filter(
    ctx: RoutingContext, registry: TierRegistry | None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """The canonical tiers that can serve ``ctx`` (most capable first) and why the others cannot.

    A canonical tier is judged by the configured tier it resolves to.
    """
    if registry is None:
        return TIER_NAMES, {}
    reasons: dict[str, str] = {}
    survivors: list[str] = []
    for name in TIER_NAMES:
        try:
            registry.resolve(name)
        except TierNotConfiguredError:
            reasons[name] = "not_configured"
        else:
            survivors.append(name)
    if not survivors:
        raise RoutingConstraintError("no_tier_configured", reasons)

    def narrow(check: Callable[[str], str | None], error_reason: str) -> None:
        nonlocal survivors
        kept: list[str] = []
        for name in survivors:
            why = check(name)
            if why is None:
                kept.append(name)
            else:
                reasons[name] = why
        if not kept:
            raise RoutingConstraintError(error_reason, reasons)
        survivors = kept

    if ctx.requires_vision:
        narrow(lambda t: None if registry.supports_vision_for(t) else "no_vision", "no_vision_tier")

    tokens = ctx.estimated_input_tokens

    def window_check(t: str) -> str | None:
        window = registry.context_window_for(t)
        return None if window >= tokens else f"context_window_exceeded ({window} < {tokens} tokens)"

    narrow(window_check, "context_window_exceeded")

    if ctx.requires_strong_tools:

        def tools_check(t: str) -> str | None:
            meta = registry.metadata_for(t)
            if meta is None or meta.tool_strength == "strong":
                return None
            return f"tool_strength={meta.tool_strength}"

        narrow(tools_check, "no_strong_tools_tier")
    return tuple(survivors), reasons
