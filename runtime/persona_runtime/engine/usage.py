"""Token usage and cost that add up: ``Usage + Usage``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from persona_runtime.pricing import cost_cents

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one or more model requests.

    ``cost_cents`` is None when any request in the sum had no known price ("unpriced"),
    never a 0 that was not measured.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cents: float | None = 0.0
    requests: int = 0

    def __add__(self, other: Usage) -> Usage:
        if self.cost_cents is None or other.cost_cents is None:
            cost = None
        else:
            cost = round(self.cost_cents + other.cost_cents, 6)
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost_cents=cost,
            requests=self.requests + other.requests,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def reported(cls, usage: Any, price: tuple[float, float] | None) -> Usage:
        """One request, as its provider reported it (persona-core ``TokenUsage`` or None)."""
        if usage is None:
            return cls(requests=1)
        prompt, completion = int(usage.prompt_tokens), int(usage.completion_tokens)
        return cls(prompt, completion, cost_cents(price, prompt, completion), 1)
