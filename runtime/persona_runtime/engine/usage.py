"""Token usage and cost that add up: ``Usage + Usage``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persona_runtime.pricing import cost_cents

__all__ = ["Usage"]


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens and cost of one or more model requests.

    ``cost_cents`` is None when any request in the sum had no known price ("unpriced"),
    never a 0 that was not measured. ``estimated`` is True when any request in the sum
    reported no token usage and we counted it ourselves (``engine.tokens``); the cost of
    estimated tokens is an estimate too.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cents: float | None = 0.0
    requests: int = 0
    estimated: bool = False

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
            estimated=self.estimated or other.estimated,
        )

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    @classmethod
    def measured_or_estimated(
        cls,
        usage: Any,
        price: tuple[float, float] | None,
        *,
        prompt_estimate: Callable[[], int],
        completion_estimate: Callable[[], int],
    ) -> Usage:
        """One request: the provider's counts where it reported them, our own where it did not.

        A prompt of 0 tokens is never a measurement (every request sends something), so a
        missing usage and persona-core's stand-in ``TokenUsage(0, 0, 0)`` are both counted
        here. A completion of 0 is kept only when the reply really was empty.
        """
        prompt = int(getattr(usage, "prompt_tokens", 0) or 0) if usage is not None else 0
        completion = int(getattr(usage, "completion_tokens", 0) or 0) if usage is not None else 0
        estimated = False
        if prompt <= 0:
            prompt, estimated = prompt_estimate(), True
        if completion <= 0:
            guess = completion_estimate()
            if guess > 0:
                completion, estimated = guess, True
        return cls(prompt, completion, cost_cents(price, prompt, completion), 1, estimated)
