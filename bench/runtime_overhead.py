"""Runtime overhead: time to first token through ConversationLoop vs the backend called directly.

Both talk to the same scripted OpenAI-compatible server on 127.0.0.1 through persona-core's
real openai backend, alternating run by run. Memory retrieval (embedding) is excluded, as the
issue asks: the loop gets no memory store. Also times PromptBuilder.build on a 200-message
history.

    uv run python bench/runtime_overhead.py [--runs 40]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from persona_runtime import _offline  # noqa: E402

_offline.install()
_offline.configure_core_logging(None)

from persona.schema.conversation import Conversation, ConversationMessage  # noqa: E402
from persona.schema.persona import Persona  # noqa: E402

from persona_runtime.events import TextDelta  # noqa: E402
from persona_runtime.loop import ConversationLoop  # noqa: E402
from persona_runtime.prompt import PromptBuilder, RetrievedContext, count_tokens  # noqa: E402
from persona_runtime.routing import HeuristicRouter  # noqa: E402
from persona_runtime.tier_env import tier_registry_from_env  # noqa: E402
from tests.support.openai_server import ScriptedOpenAIServer, Text  # noqa: E402

PERSONA = Persona.from_yaml(Path(__file__).resolve().parent.parent / "personas" / "kai.yaml")
REPLY = "The median is the middle value of a sorted sample."


async def ttft_direct(backend, messages) -> float:
    started = time.perf_counter()
    first = None
    async for chunk in backend.chat_stream(messages, max_tokens=1024):
        if chunk.delta and first is None:
            first = time.perf_counter() - started
    return first


async def ttft_loop(loop: ConversationLoop, text: str) -> float:
    conv = Conversation(conversation_id="bench", persona_id=PERSONA.persona_id)
    started = time.perf_counter()
    first = None
    async for event in loop.turn(conv, text, tier="mid"):
        if isinstance(event, TextDelta) and first is None:
            first = time.perf_counter() - started
    return first


async def measure(runs: int) -> tuple[list[float], list[float]]:
    with ScriptedOpenAIServer() as server:
        env = {
            "PERSONA_PROVIDER": "openai", "PERSONA_MODEL": "gpt-4o-mini",
            "PERSONA_API_KEY": "sk-bench", "PERSONA_BASE_URL": server.base_url,
        }
        tiers = tier_registry_from_env(env)
        loop = ConversationLoop(persona=PERSONA, tiers=tiers, router=HeuristicRouter(tiers))
        backend = tiers.get("mid")
        question = "What is a median?"
        # The same prompt the loop sends, built once for the direct calls.
        prompt = PromptBuilder().build(PERSONA, RetrievedContext(), [], question, max_tokens=100_000).messages
        direct, through = [], []
        for i in range(runs + 2):  # two warm-up rounds
            server.enqueue(Text(REPLY))
            server.enqueue(Text(REPLY))
            if i % 2:
                d = await ttft_direct(backend, prompt)
                t = await ttft_loop(loop, question)
            else:
                t = await ttft_loop(loop, question)
                d = await ttft_direct(backend, prompt)
            if i >= 2:
                direct.append(d)
                through.append(t)
        await tiers.aclose()
    return direct, through


def prompt_build_ms(n_messages: int = 200, repeats: int = 30, *, cold: bool = False) -> float:
    now = datetime.now(UTC)
    history = [
        ConversationMessage(role="user" if i % 2 == 0 else "assistant", content=f"Message {i}: " + "words " * 40, created_at=now)
        for i in range(n_messages)
    ]
    builder = PromptBuilder()
    builder.build(PERSONA, RetrievedContext(), history, "warm up", max_tokens=128_000)
    times = []
    for _ in range(repeats):
        if cold:
            count_tokens.cache_clear()  # every message tokenised again
        started = time.perf_counter()
        builder.build(PERSONA, RetrievedContext(), history, "What next?", max_tokens=128_000)
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def run(runs: int = 40) -> dict[str, Any]:
    """Raw samples: TTFT seconds ``direct`` and ``loop`` (paired by index), PromptBuilder medians in ms."""
    direct, through = asyncio.run(measure(runs))
    return {
        "runs": runs,
        "direct": direct,
        "loop": through,
        "prompt_build_cold_ms": prompt_build_ms(cold=True),
        "prompt_build_warm_ms": prompt_build_ms(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    result = run(args.runs)
    direct, through = result["direct"], result["loop"]
    d, t = statistics.median(direct) * 1000, statistics.median(through) * 1000
    diffs = sorted((b - a) * 1000 for a, b in zip(direct, through, strict=True))
    print(f"time to first token over loopback, {args.runs} alternating runs")
    print(f"  backend directly      median {d:7.2f} ms")
    print(f"  ConversationLoop      median {t:7.2f} ms")
    print(f"  overhead              median {statistics.median(diffs):7.2f} ms  (ratio {t / d:.2f}x; goal <= 15 ms)")
    print(
        f"PromptBuilder.build, 200-message history: median {result['prompt_build_cold_ms']:.2f} ms cold (every message"
        f" tokenised), {result['prompt_build_warm_ms']:.2f} ms warm (token counts cached) (goal <= 20 ms)"
    )


if __name__ == "__main__":
    main()
