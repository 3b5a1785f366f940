"""Reading a message's prompt into the local model while the person is still typing it.

On the bundled model, what memory recalls for a message (≤ ``PERSONA_LOCAL_RECALL_TOKENS``) and
the message itself are ~250 tokens the model reads after Enter, ~1.4 s on two cores before the
first word. :func:`read_ahead` builds the prompt a turn would send for the text typed so far (the
same recall, history, routing and budgets as :meth:`ConversationLoop.turn`) and has the local
model read it up to the end of that text. When the message is sent, the model finds that start
in its KV cache and reads only what changed: nothing but the last few tokens if the person paused
before pressing Enter. Nothing is recorded, logged or sent anywhere; a remote model, memory on a
Chroma server, or a turn about to compact its history means there is nothing to do.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from persona_runtime.loop import sendable_history
from persona_runtime.own_thread import on_own_thread
from persona_runtime.prompt import RetrievedContext, fit_recall
from persona_runtime.routing.chat_turn import route_chat_turn

if TYPE_CHECKING:
    from persona.schema.conversation import Conversation

    from persona_runtime.loop import ConversationLoop

__all__ = ["READ_AHEAD_THREAD_NAME", "read_ahead"]

READ_AHEAD_THREAD_NAME = "persona-read-ahead"


async def read_ahead(
    loop: ConversationLoop, conversation: Conversation, draft: str, *, tier: str | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> int:
    """Have the local model that would answer ``draft`` read the prompt it would get, up to the
    end of ``draft``. Returns the tokens read (0: nothing to do). Stops soon after ``stop()``
    turns true, or once a request wants the model."""
    text = draft  # exactly as the turn will get it, so the prompts agree up to its end
    if not text.strip() or loop.history_window.due(conversation.messages, conversation.compacted_up_to) is not None:
        return 0
    decision = route_chat_turn(loop.persona, loop.tiers, loop.router, conversation, text, tier)
    tier_name, slot = loop.tiers.fallback_chain(decision.tier)[0]
    window = loop.tiers.context_window_for(tier_name)
    # Memory on a Chroma server is not asked for a draft: a failed query there would use up the
    # outage notice the turn gives, and every pause would be a round trip.
    on_server = loop.memory is not None and loop.memory.server is not None
    if slot.provider != "gguf" or loop.tools.specs_for(slot) or len(text) // 4 >= window or on_server:
        return 0
    backend = loop.tiers.backend_for(slot)
    if not hasattr(backend, "read_ahead"):
        return 0
    context = RetrievedContext()
    if loop.memory is not None:
        context = await asyncio.to_thread(loop.memory.retrieve, text)
    if stop():
        return 0
    budget = loop.engine.recall_budget(slot)
    if budget is not None:
        context = fit_recall(context, budget)
    reply_tokens, _setting = loop.engine.reply_budget(tier_name, slot)
    prompt = loop.prompt_builder.build(
        loop.persona, context, sendable_history(loop.history_window.visible(conversation)), text,
        max_tokens=window - reply_tokens,
    )
    # On a thread that ends with it, not ``asyncio.to_thread``: once a thread that lives on (a
    # pooled one) has run llama.cpp, libgomp keeps that thread's OpenMP workers and throttles
    # spin-waiting for every other thread's, so each later generation ran 3.5x slower (19 against
    # 69 tokens/s, measured; ``bench/local_throughput.py`` met the same effect).
    return await on_own_thread(lambda: backend.read_ahead(prompt.messages, stop), name=READ_AHEAD_THREAD_NAME)
