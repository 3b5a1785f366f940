"""ModelEngine: how chat turns and agent steps call models.

* **Reply budgets.** A reply may use ``reply_tokens`` (``PERSONA_MAX_REPLY_TOKENS``), at most a
  quarter of the tier's context window, and on a local GGUF model at most
  ``local_reply_tokens`` (``PERSONA_LOCAL_REPLY_TOKENS``, 384): small local models ramble, at
  tens of tokens a second. A reply that reaches its budget is followed by ``ReplyCut``.
* **Requests.** ``request`` makes one streamed request to one model (``stream_reply``) and adds
  what it cost to the turn's :class:`CallAccount`.
* **Fallback.** ``walk`` tries a tier's models in order (``walk_fallback_chain``); a
  ``Retry-After`` wait can be cancelled.
* **Summaries.** ``summarise`` asks the small tier (then its fallbacks) to fold old messages;
  every request it makes is counted, and any fault of a model just moves on to the next.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from persona_runtime.engine import tokens
from persona_runtime.engine.messages import system_message, user_message
from persona_runtime.engine.reply import ModelReply, stream_reply
from persona_runtime.engine.stream import Cancelled, cancellable
from persona_runtime.engine.tools import ToolRunner
from persona_runtime.engine.usage import Usage
from persona_runtime.events import ReplyCut, TextDelta, ThinkingDelta
from persona_runtime.fallback import AttemptFailed, walk_fallback_chain

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage

    from persona_runtime.cancel import CancelToken
    from persona_runtime.engine.account import CallAccount
    from persona_runtime.tier import ModelSlot, TierRegistry

__all__ = ["DEFAULT_LOCAL_REPLY_TOKENS", "EngineOptions", "ModelEngine", "Summary"]

DEFAULT_LOCAL_REPLY_TOKENS = 384  # Settings.local_reply_tokens' default too
REPLY_TOKENS_SETTING = "PERSONA_MAX_REPLY_TOKENS"
LOCAL_REPLY_TOKENS_SETTING = "PERSONA_LOCAL_REPLY_TOKENS"
MIN_REPLY_TOKENS = 64


@dataclass(frozen=True)
class EngineOptions:
    """How chat turns and agent steps call models and run tools. Every field has the app's
    default; :class:`persona_runtime.settings.Settings` fills them from the environment."""

    reply_tokens: int = 1024
    local_reply_tokens: int = DEFAULT_LOCAL_REPLY_TOKENS
    temperature: float = 0.0
    retry_after_max_s: float = 10.0
    tool_timeout_s: float = 60.0
    tool_result_max_chars: int = 20_000
    #: The loop guard: the n-th identical tool call in a turn or run is not run (0: off).
    loop_guard: int = 3

    def build(self, tiers: TierRegistry, toolbox: Any) -> tuple[ModelEngine, ToolRunner]:
        engine = ModelEngine(
            tiers, reply_tokens=self.reply_tokens, local_reply_tokens=self.local_reply_tokens,
            temperature=self.temperature, retry_after_max_s=self.retry_after_max_s,
        )
        tools = ToolRunner(toolbox, timeout_s=self.tool_timeout_s, max_chars=self.tool_result_max_chars, loop_guard=self.loop_guard)
        return engine, tools


@dataclass(frozen=True)
class Summary:
    text: str | None
    tier: str | None
    model: str | None


class ModelEngine:
    def __init__(
        self,
        tiers: TierRegistry,
        *,
        reply_tokens: int = 1024,
        local_reply_tokens: int = DEFAULT_LOCAL_REPLY_TOKENS,
        temperature: float = 0.0,
        retry_after_max_s: float = 10.0,
    ) -> None:
        self.tiers = tiers
        self.reply_tokens = reply_tokens
        self.local_reply_tokens = local_reply_tokens
        self.temperature = temperature
        self.retry_after_max_s = retry_after_max_s

    # -- budgets --------------------------------------------------------------------------

    def window_budget(self, tier: str) -> int:
        """Reply tokens a tier's context window leaves room for (before any local cap)."""
        window = self.tiers.context_window_for(tier)
        return max(MIN_REPLY_TOKENS, min(self.reply_tokens, window // 4))

    def reply_budget(self, tier: str, slot: ModelSlot) -> tuple[int, str]:
        """(max reply tokens, the variable that sets it) for one model of ``tier``."""
        budget = self.window_budget(tier)
        if slot.provider == "gguf" and self.local_reply_tokens < budget:
            return max(1, self.local_reply_tokens), LOCAL_REPLY_TOKENS_SETTING
        return budget, REPLY_TOKENS_SETTING

    # -- one request ------------------------------------------------------------------------

    def backend(self, slot: ModelSlot) -> Any:
        from persona.backends.errors import ProviderError

        try:
            return self.tiers.backend_for(slot)
        except ProviderError as exc:
            raise AttemptFailed(exc) from exc

    async def request(
        self,
        account: CallAccount,
        tier: str,
        slot: ModelSlot,
        messages: Sequence[ConversationMessage],
        *,
        tools: list[Any] | None,
        cancel: CancelToken | None = None,
        accept_calls: bool = True,
        allow_empty: bool = False,
    ) -> AsyncIterator[TextDelta | ThinkingDelta | ReplyCut | ModelReply]:
        """One streamed request; its deltas, a ``ReplyCut`` if the budget cut it, then the reply."""
        backend = self.backend(slot)
        max_tokens, setting = self.reply_budget(tier, slot)
        price = self.tiers.price_for(tier, slot)
        received: list[str] = []  # what streamed in, for an interrupted reply's estimate
        finished = False
        try:
            async for item in stream_reply(
                backend, messages, tools=tools, temperature=self.temperature, max_tokens=max_tokens,
                price=price, cancel=cancel, accept_calls=accept_calls, allow_empty=allow_empty,
            ):
                if isinstance(item, ModelReply):
                    finished = True
                    account.add(item.usage)
                    if item.cut:
                        yield ReplyCut(item.max_tokens, setting)
                elif isinstance(item, TextDelta | ThinkingDelta):
                    received.append(item.text)
                    if isinstance(item, TextDelta) and account.ttft_ms is None:
                        account.ttft_ms = account.elapsed_ms()
                yield item
        except (asyncio.CancelledError, GeneratorExit, Cancelled):
            if not finished and received:
                # Interrupted mid-reply: the server read the prompt and sent these tokens, but no
                # usage will come. Our own count, marked estimated, rather than a false 0.
                account.add(Usage.measured_or_estimated(
                    None, price,
                    prompt_estimate=lambda: tokens.prompt_tokens(messages, tools),
                    completion_estimate=lambda: tokens.completion_tokens("".join(received)),
                ))
            raise

    # -- fallback ---------------------------------------------------------------------------

    def walk(
        self,
        account: CallAccount,
        tier: str,
        attempt: Callable[[str, ModelSlot], AsyncIterator[Any]],
        *,
        cancel: CancelToken | None = None,
        is_output: Callable[[Any], bool] = lambda _item: True,
        on_failed: Callable[[], None] = lambda: None,
    ) -> AsyncIterator[Any]:
        """The items of the first model of ``tier``'s chain that succeeds; raises ``AllModelsFailed``."""
        return walk_fallback_chain(
            self.tiers, tier, attempt, account, retry_after_max_s=self.retry_after_max_s,
            is_output=is_output, on_failed=on_failed,
            sleep=lambda seconds: cancellable(asyncio.sleep(seconds), cancel),
        )

    # -- summaries --------------------------------------------------------------------------

    async def summarise(
        self,
        account: CallAccount,
        transcript: str,
        *,
        instructions: str,
        max_tokens: int,
        cancel: CancelToken | None = None,
    ) -> Summary:
        """Fold ``transcript`` on the small tier; ``Summary(None, ...)`` if no model could."""
        from persona.backends.errors import ProviderError

        request = [system_message(instructions), user_message(transcript)]
        for tier_name, slot in self.tiers.fallback_chain("small"):
            try:
                backend = self.tiers.backend_for(slot)
                response = await cancellable(
                    backend.chat(request, temperature=0.0, max_tokens=max_tokens), cancel
                )
            except (ProviderError, OSError, ValueError, RuntimeError):
                continue
            content = response.content or ""
            account.add(Usage.measured_or_estimated(
                response.usage, self.tiers.price_for(tier_name, slot),
                prompt_estimate=lambda: tokens.prompt_tokens(request),
                completion_estimate=lambda: tokens.completion_tokens(content),  # noqa: B023 - used at once
            ))
            if content.strip():
                return Summary(content.strip(), tier_name, slot.model)
        return Summary(None, None, None)
