"""Prices and context windows we know, so cost is honest and the prompt budget is real.

Prices are cents per 1k tokens (input, output), checked against the providers'
published list prices in 2026-11. A model not listed is *unpriced*: its cost is
``None``, never an invented 0. Local models (gguf, ollama) cost 0 for real.
Tier metadata (``PERSONA_<TIER>_COST_*_PER_1K``) overrides this table.
"""

from __future__ import annotations

__all__ = ["DEFAULT_CONTEXT_WINDOW", "context_window_for_model", "cost_cents", "price_for"]

PRICE_TABLE_VERSION = "2026-11"
FREE_PROVIDERS = frozenset({"gguf", "ollama"})

# (provider, model prefix) -> (input, output) cents per 1k tokens. Longest prefix wins.
_PRICES: dict[tuple[str, str], tuple[float, float]] = {
    ("anthropic", "claude-opus-4"): (1.5, 7.5),
    ("anthropic", "claude-sonnet-4"): (0.3, 1.5),
    ("anthropic", "claude-haiku-4"): (0.1, 0.5),
    ("openai", "gpt-4o-mini"): (0.015, 0.06),
    ("openai", "gpt-4o"): (0.25, 1.0),
    ("openai", "gpt-4.1-mini"): (0.04, 0.16),
    ("openai", "gpt-4.1-nano"): (0.01, 0.04),
    ("openai", "gpt-4.1"): (0.2, 0.8),
    ("deepseek", "deepseek-chat"): (0.027, 0.11),
    ("deepseek", "deepseek-reasoner"): (0.055, 0.219),
    ("groq", "llama-3.1-8b-instant"): (0.005, 0.008),
    ("groq", "llama-3.3-70b-versatile"): (0.059, 0.079),
}

_CONTEXT_WINDOWS: dict[str, int] = {
    "claude": 200_000,
    "gpt-4o": 128_000,
    "gpt-4.1": 1_000_000,
    "deepseek": 64_000,
    "llama-3": 131_072,
    "gemma": 8_192,
    "qwen": 32_768,
}
DEFAULT_CONTEXT_WINDOW = 8_192


def price_for(provider: str, model: str) -> tuple[float, float] | None:
    if provider in FREE_PROVIDERS:
        return (0.0, 0.0)
    best: tuple[int, tuple[float, float]] | None = None
    for (prov, prefix), price in _PRICES.items():
        if prov == provider and model.startswith(prefix) and (best is None or len(prefix) > best[0]):
            best = (len(prefix), price)
    return best[1] if best else None


def cost_cents(
    price: tuple[float, float] | None, prompt_tokens: int, completion_tokens: int
) -> float | None:
    if price is None:
        return None
    return round(price[0] * prompt_tokens / 1000 + price[1] * completion_tokens / 1000, 6)


def context_window_for_model(model: str) -> int | None:
    name = model.rsplit("/", 1)[-1].lower()
    for prefix, window in _CONTEXT_WINDOWS.items():
        if name.startswith(prefix):
            return window
    return None
