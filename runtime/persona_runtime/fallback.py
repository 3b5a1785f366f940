"""Walking a tier's fallback chain: the same for chat turns and agent steps.

Each model is tried in ``TierRegistry.fallback_chain`` order. A model that fails with a
short ``Retry-After`` is waited for once (``RetryWaiting``) and tried again; otherwise the
next model is tried (``FallbackTriggered``). Every attempt is recorded on ``state``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from persona_runtime.events import FallbackTriggered, RetryWaiting
from persona_runtime.secrets import redact
from persona_runtime.turnlog.record import AttemptRecord

__all__ = ["AllModelsFailed", "AttemptFailed", "AttemptState", "walk_fallback_chain"]


class AttemptFailed(Exception):
    """Raised by an attempt: this model failed; carries the provider error."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


class AllModelsFailed(Exception):
    """Every model of the chain failed; ``state.attempts`` says how."""


class AttemptState(Protocol):
    tier: str | None
    slot: Any
    attempt_started: float | None
    attempts: list[AttemptRecord]


async def walk_fallback_chain(
    tiers: Any,
    tier: str,
    attempt: Callable[[str, Any], AsyncIterator[Any]],
    state: AttemptState,
    *,
    retry_after_max_s: float,
    is_output: Callable[[Any], bool] = lambda _item: True,
    on_failed: Callable[[], None] = lambda: None,
    sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
) -> AsyncIterator[Any]:
    """Yield the items of the first attempt that succeeds (plus retry/fallback events).

    ``is_output`` tells which items the person already saw (a fallback after them restarts
    the reply); ``on_failed`` resets per-attempt state. Raises ``AllModelsFailed``.
    """
    chain = tiers.fallback_chain(tier)
    for position, (tier_name, slot) in enumerate(chain):
        alone = len(chain) == 1
        state.tier, state.slot = tier_name, slot
        retried = False
        while True:
            started = state.attempt_started = time.perf_counter()
            shown = False
            try:
                async for item in attempt(tier_name, slot):
                    shown = shown or is_output(item)
                    yield item
            except AttemptFailed as failed:
                state.attempt_started = None
                err = failed.error
                # state.tier / state.slot: the model that was called (the spend cap may have swapped it).
                state.attempts.append(attempt_record(state.tier or tier_name, state.slot or slot, "error", started, err))
                wait = retry_after(err)
                if wait is not None and wait <= retry_after_max_s and not retried:
                    retried = True
                    yield RetryWaiting(wait, tier_name, slot.model, redact(short_error(err)))
                    await sleep(wait)
                    continue
                if alone and not retried and not shown and is_transient(err):
                    # With no other model to fall back to, a 5xx or a dropped connection gets one more try.
                    retried = True
                    yield RetryWaiting(SINGLE_MODEL_RETRY_S, tier_name, slot.model, redact(short_error(err)))
                    await sleep(SINGLE_MODEL_RETRY_S)
                    continue
                if position + 1 < len(chain):
                    next_tier, next_slot = chain[position + 1]
                    yield FallbackTriggered(
                        failed_tier=tier_name, failed_provider=slot.provider, failed_model=slot.model,
                        error=redact(short_error(err)), next_tier=next_tier, next_model=next_slot.model,
                        discarded_text=shown,
                    )
                on_failed()
                break
            else:
                state.attempt_started = None
                state.attempts.append(attempt_record(state.tier or tier_name, state.slot or slot, "ok", started))
                return
    raise AllModelsFailed


SINGLE_MODEL_RETRY_S = 1.0


def is_transient(err: BaseException) -> bool:
    """A fault that may not happen again: a server error (HTTP 5xx), a timeout, a dropped
    connection. Not a bad key, an unknown model, a rate limit (it says when) or a bad request."""
    from persona.backends.errors import BackendTimeoutError

    if isinstance(err, BackendTimeoutError | ConnectionError | TimeoutError):
        return True
    context = getattr(err, "context", None) or {}
    status = context.get("status_code") if isinstance(context, dict) else None
    return isinstance(status, str) and status.isdigit() and int(status) >= 500


def retry_after(err: BaseException) -> float | None:
    context = getattr(err, "context", None) or {}
    raw = context.get("retry_after_s") if isinstance(context, dict) else None
    try:
        return float(raw) if raw is not None else None
    except (TypeError, ValueError):
        return None


def short_error(err: BaseException) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return f"{type(err).__name__}: {text[:300]}"


def attempt_record(tier: str, slot: Any, outcome: str, started: float, err: BaseException | None = None) -> AttemptRecord:
    return AttemptRecord(
        tier=tier, provider=slot.provider, model=slot.model, outcome=outcome,  # type: ignore[arg-type]
        error_type=type(err).__name__ if err is not None else None,
        error=redact(short_error(err)) if err is not None else None,
        latency_ms=round((time.perf_counter() - started) * 1000, 3),
    )


def failure_message(attempts: list[AttemptRecord]) -> str:
    if not attempts:
        return "no model is configured for this turn"
    tried = "; ".join(f"{a.tier} {a.provider}/{a.model}: {a.error or a.outcome}" for a in attempts)
    count = f"{len(attempts)} attempt{'' if len(attempts) == 1 else 's'}"
    return f"every model failed ({count}): {tried}"
