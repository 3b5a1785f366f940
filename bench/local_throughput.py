"""Local model throughput: LlamaCppBackend.chat_stream vs raw llama-cpp-python streaming.

Same loaded model, prompt, max_tokens and greedy sampling; runs alternate between the two
paths (and swap order each round) so machine noise hits both alike. Delivered tokens/s is
content chunks received / time from the call to the end of the stream.

    uv run python bench/local_throughput.py [RUNS] [MAX_TOKENS]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from datetime import UTC, datetime

from persona_runtime import _offline

_offline.install()

from persona.schema.conversation import ConversationMessage  # noqa: E402

from persona_runtime.local_backend import LlamaCppBackend, to_llama_messages  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to bake bread."
GOAL = 0.97


def _raw(llm: object, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, float, float]:
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    for chunk in llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, stop=[]
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if tokens == 1:
                first = time.perf_counter() - started
    return tokens, time.perf_counter() - started, first


def _ours(backend: LlamaCppBackend, messages: list[ConversationMessage], max_tokens: int) -> tuple[int, float, float]:
    async def run() -> tuple[int, float, float]:
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async for chunk in backend.chat_stream(messages, max_tokens=max_tokens, temperature=0.0):
            if chunk.delta:
                tokens += 1
                if tokens == 1:
                    first = time.perf_counter() - started
        return tokens, time.perf_counter() - started, first

    return asyncio.run(run())


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    backend = LlamaCppBackend.shared(None)
    messages = [ConversationMessage(role="user", content=PROMPT, created_at=datetime.now(UTC))]
    llama_messages = to_llama_messages(messages)

    _ours(backend, messages, 8)  # loads the model; warms both paths' caches
    llm = backend._llm  # the same llama_cpp.Llama the backend drives; calls never overlap
    assert llm is not None
    _raw(llm, llama_messages, 8)

    results: dict[str, list[tuple[int, float, float]]] = {"raw": [], "ours": []}
    for i in range(runs):
        order = ("raw", "ours") if i % 2 == 0 else ("ours", "raw")
        for name in order:
            if name == "raw":
                results[name].append(_raw(llm, llama_messages, max_tokens))
            else:
                results[name].append(_ours(backend, messages, max_tokens))

    def rates(name: str) -> list[float]:
        return [n / t for n, t, _ in results[name]]

    print(f"model {backend.model_name}, {os.cpu_count()} threads, {runs} runs x {max_tokens} max tokens, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'path':<34}{'median tok/s':>13}{'first token':>13}{'tokens':>8}   runs (tok/s)")
    labels = {"raw": "raw Llama.create_chat_completion", "ours": "LlamaCppBackend.chat_stream"}
    for name in ("raw", "ours"):
        r = rates(name)
        ttft = statistics.median(f for _, _, f in results[name]) * 1000
        tokens = statistics.median(n for n, _, _ in results[name])
        print(f"{labels[name]:<34}{statistics.median(r):>13.1f}{ttft:>10.0f} ms{tokens:>8.0f}   "
              + " ".join(f"{x:.1f}" for x in r))
    ratio = statistics.median(rates("ours")) / statistics.median(rates("raw"))
    paired = statistics.median(o / r for o, r in zip(rates("ours"), rates("raw"), strict=True))
    print(f"ratio ours/raw (of medians) {ratio:.3f}, median of paired ratios {paired:.3f}; goal >= {GOAL}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
