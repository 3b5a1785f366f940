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
* **The spend cap** (:mod:`persona_runtime.spend`). Before every request (replies, tool rounds,
  agent steps, summaries) its worst case is checked against the session's ``SpendCap``; a
  model that could cross it is swapped for the cheapest configured model that fits
  (``SpendCapRerouted``, recorded in the TurnLog's ``routing.spend_cap``), or the call is
  refused (``SpendCapReached``). What each request cost is then charged to the cap.
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
from persona_runtime.events import ReplyCut, SpendCapRerouted, TextDelta, ThinkingDelta
from persona_runtime.fallback import AttemptFailed, walk_fallback_chain
from persona_runtime.spend import SpendCapReached, usd, worst_case_cents

if TYPE_CHECKING:
    from persona.schema.conversation import ConversationMessage

    from persona_runtime.cancel import CancelToken
    from persona_runtime.engine.account import CallAccount
    from persona_runtime.spend import SpendCap
    from persona_runtime.tier import ModelSlot, TierRegistry

__all__ = ["DEFAULT_LOCAL_REPLY_TOKENS", "EngineOptions", "ModelEngine", "Summary"]

DEFAULT_LOCAL_REPLY_TOKENS = 384  # Settings.local_reply_tokens' default too
DEFAULT_LOCAL_RECALL_TOKENS = 192  # Settings.local_recall_tokens' default too
REPLY_TOKENS_SETTING = "PERSONA_MAX_REPLY_TOKENS"
LOCAL_REPLY_TOKENS_SETTING = "PERSONA_LOCAL_REPLY_TOKENS"
MIN_REPLY_TOKENS = 64


@dataclass(frozen=True)
class EngineOptions:
    """How chat turns and agent steps call models and run tools. Every field has the app's
    default; :class:`persona_runtime.settings.Settings` fills them from the environment."""

    reply_tokens: int = 1024
    local_reply_tokens: int = DEFAULT_LOCAL_REPLY_TOKENS
    #: What memory may add to a local GGUF model's prompt, in tokens (it reads prompts slowly).
    local_recall_tokens: int = DEFAULT_LOCAL_RECALL_TOKENS
    temperature: float = 0.0
    retry_after_max_s: float = 10.0
    tool_timeout_s: float = 60.0
    tool_result_max_chars: int = 20_000
    #: The loop guard: the n-th identical tool call in a turn or run is not run (0: off).
    loop_guard: int = 3
    #: The session's spend cap (one ledger for every loop of the session); None: no cap.
    spend: SpendCap | None = None

    def build(self, tiers: TierRegistry, toolbox: Any) -> tuple[ModelEngine, ToolRunner]:
        engine = ModelEngine(
            tiers, reply_tokens=self.reply_tokens, local_reply_tokens=self.local_reply_tokens,
            local_recall_tokens=self.local_recall_tokens, temperature=self.temperature,
            retry_after_max_s=self.retry_after_max_s, spend=self.spend,
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
        local_recall_tokens: int = DEFAULT_LOCAL_RECALL_TOKENS,
        temperature: float = 0.0,
        retry_after_max_s: float = 10.0,
        spend: SpendCap | None = None,
    ) -> None:
        self.tiers = tiers
        self.reply_tokens = reply_tokens
        self.local_reply_tokens = local_reply_tokens
        self.local_recall_tokens = local_recall_tokens
        self.temperature = temperature
        self.retry_after_max_s = retry_after_max_s
        self.spend = spend

    @property
    def capped(self) -> bool:
        return self.spend is not None and self.spend.active

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

    def recall_budget(self, slot: ModelSlot) -> int | None:
        """Tokens memory may add to a prompt for this model (None: only the window limits it)."""
        return self.local_recall_tokens if slot.provider == "gguf" else None

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
        """One streamed request; its deltas, a ``ReplyCut`` if the budget cut it, then the reply.
        Under a spend cap, first a ``SpendCapRerouted`` when a cheaper model must answer."""
        worst: float | None = None
        if self.capped:
            tier, slot, worst, rerouted = self.within_cap(account, tier, slot, tokens.prompt_tokens(messages, tools))
            if rerouted is not None:
                account.tier, account.slot = tier, slot
                tools = None if slot.provider == "gguf" else tools
                yield rerouted
        backend = self.backend(slot)
        max_tokens, setting = self.reply_budget(tier, slot)
        price = self.tiers.price_for(tier, slot)
        received: list[str] = []  # what streamed in, for an interrupted reply's estimate
        finished = started = False
        try:
            async for item in stream_reply(
                backend, messages, tools=tools, temperature=self.temperature, max_tokens=max_tokens,
                price=price, cancel=cancel, accept_calls=accept_calls, allow_empty=allow_empty,
            ):
                if isinstance(item, ModelReply):
                    finished = True
                    account.add(item.usage)
                    if self.spend is not None:
                        self.spend.charge(item.usage, worst)
                    if item.cut:
                        yield ReplyCut(item.max_tokens, setting)
                else:
                    started = True
                    if isinstance(item, TextDelta | ThinkingDelta):
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
        finally:
            if started and not finished and self.capped:
                self.spend.charge_estimate(worst)  # type: ignore[union-attr]  # cut off mid-reply: it may have cost it all

    # -- the spend cap ----------------------------------------------------------------------

    def within_cap(
        self, account: CallAccount, tier: str, slot: ModelSlot, prompt_tokens: int, *, reply_cap: int | None = None
    ) -> tuple[str, ModelSlot, float | None, SpendCapRerouted | None]:
        """(tier, model, worst case in cents, the reroute event or None) for one request of
        ``prompt_tokens``: ``slot`` itself when its worst case fits the cap, else the cheapest
        configured model that fits (and whose context window holds the request), ending with the
        registry's last resort (the bundled local model, $0) when no tier names a local one. Raises
        :class:`SpendCapReached` when none does. ``reply_cap``: the request's max_tokens when it
        is not the reply budget (summaries)."""
        spend = self.spend
        cap = reply_cap if reply_cap is not None else self.reply_budget(tier, slot)[0]
        worst = worst_case_cents(prompt_tokens, cap, self.tiers.price_for(tier, slot))
        if spend is None or spend.fits(worst):
            return tier, slot, worst, None
        best: tuple[tuple[bool, bool, float], str, ModelSlot, float | None] | None = None
        for name, other in self._every_model():
            other_cap = reply_cap if reply_cap is not None else self.reply_budget(name, other)[0]
            if prompt_tokens + other_cap > self.tiers.window_of(name, other):
                continue
            other_worst = worst_case_cents(prompt_tokens, other_cap, self.tiers.price_for(name, other))
            if not spend.fits(other_worst):
                continue
            # A configured model first (the bundled last resort only when none fits), priced
            # before unpriced, cheapest first.
            rank = (other == self.tiers.last_resort, other_worst is None, other_worst or 0.0)
            if best is None or rank < best[0]:
                best = (rank, name, other, other_worst)
        if best is None:
            raise SpendCapReached(spend.refusal(worst, f"{tier} {slot.label}"), worst_case_cents=worst)
        _rank, name, other, other_worst = best
        cost = "is unpriced" if worst is None else f"could cost up to {usd(worst)}"
        left = spend.headroom_cents()
        reason = f"{tier} {slot.label} {cost}, over what is left under the cap ({usd(left or 0.0)})"
        event = SpendCapRerouted(tier, slot.model, name, other.model, reason)
        record = {"from": f"{tier} {slot.label}", "to": f"{name} {other.label}", "worst_case_cents": worst,
                  "to_worst_case_cents": other_worst, "headroom_cents": left}
        if any(r["from"] == record["from"] and r["to"] == record["to"] for r in account.spend_reroutes):
            return name, other, other_worst, None  # said once per turn or step (tool rounds repeat it)
        account.spend_reroutes.append(record)
        return name, other, other_worst, event

    def _every_model(self) -> list[tuple[str, ModelSlot]]:
        seen: set[Any] = set()
        out: list[tuple[str, ModelSlot]] = []
        for name in self.tiers.configured_tier_names:
            for slot in self.tiers.slots(name):
                if slot.key not in seen:
                    seen.add(slot.key)
                    out.append((name, slot))
        last = self.tiers.last_resort
        if last is not None and not any(slot.provider == "gguf" for _name, slot in out):
            out.append((out[-1][0], last))  # the bundled model, $0: the end of the line under a cap
        return out

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
        prompt_tokens = tokens.prompt_tokens(request) if self.capped else 0
        tried: set[Any] = set()
        for tier_name, slot in self.tiers.fallback_chain("small"):
            worst: float | None = None
            if self.capped:
                try:
                    tier_name, slot, worst, _ = self.within_cap(account, tier_name, slot, prompt_tokens, reply_cap=max_tokens)
                except SpendCapReached:
                    return Summary(None, None, None)  # no summary: the budget reducer trims instead
            if slot.key in tried:
                continue
            tried.add(slot.key)
            try:
                backend = self.tiers.backend_for(slot)
                response = await cancellable(
                    backend.chat(request, temperature=0.0, max_tokens=max_tokens), cancel
                )
            except (ProviderError, OSError, ValueError, RuntimeError):
                continue
            content = response.content or ""
            usage = Usage.measured_or_estimated(
                response.usage, self.tiers.price_for(tier_name, slot),
                prompt_estimate=lambda: tokens.prompt_tokens(request),
                completion_estimate=lambda: tokens.completion_tokens(content),  # noqa: B023 - used at once
            )
            account.add(usage)
            if self.spend is not None:
                self.spend.charge(usage, worst)
            if content.strip():
                return Summary(content.strip(), tier_name, slot.model)
        return Summary(None, None, None)
