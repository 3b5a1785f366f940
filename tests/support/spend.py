"""Priced tiers on ScriptedBackend, and a spend cap, for the spend-cap tests."""

from __future__ import annotations

from persona_runtime.spend import SpendCap, SpendLimits
from persona_runtime.testing import ScriptedBackend
from persona_runtime.tier import TierConfig, TierMetadata, TierRegistry

#: Cents per 1k tokens (input, output).
PRICEY = (10.0, 10.0)
CHEAP = (0.1, 0.1)


def priced(name: str, backend: ScriptedBackend, price: tuple[float, float] | None, window: int = 32_000) -> TierConfig:
    """A tier on ``backend`` at ``price`` (None: unpriced, as a scripted model is)."""
    if price is None:
        return TierConfig.from_backend(name, backend)
    meta = TierMetadata(price[0], price[1], 100.0, 50.0, window)
    return TierConfig.from_backend(name, backend, meta)


def registry(*tiers: TierConfig) -> TierRegistry:
    return TierRegistry(list(tiers))


def cap(session_cents: float | None = None, *, day_cents: float | None = None, day_before: float = 0.0,
        allow_unpriced: bool = False) -> SpendCap:
    return SpendCap(SpendLimits(session_cents, day_cents, allow_unpriced), day_before_cents=day_before)
