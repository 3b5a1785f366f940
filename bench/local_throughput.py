"""Local model throughput: ConversationLoop and LlamaCppBackend vs raw llama-cpp-python.

Same loaded model, prompt, max_tokens and greedy sampling; runs rotate between the paths
(changing order each round) so machine noise hits all alike. Delivered tokens/s is content
chunks received / time from the call to the end of the stream.

Raw is measured twice: on the main thread (what a plain script does) and on a fresh
thread per call (what the backend does). They differ: with llama.cpp's OpenMP build, on a
busy machine, generating on the main thread was several times slower here. The goal
ratio is taken against the faster of the two.

    uv run python bench/local_throughput.py [RUNS] [MAX_TOKENS] [THREADS]

THREADS defaults to os.cpu_count(), as the backend does. On a machine where other work
holds a core, llama.cpp's threads wait on each other and every path gets noisy; a run
with THREADS=1 shows the backend's own overhead more steadily.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import threading
import time
from collections.abc import Callable

from persona_runtime import _offline

_offline.install()

from persona.schema.conversation import ConversationMessage  # noqa: E402

from persona.schema.conversation import Conversation  # noqa: E402
from persona.schema.persona import Persona  # noqa: E402

from persona_runtime.events import TextDelta  # noqa: E402
from persona_runtime.local_backend import DEFAULT_REPEAT_PENALTY, LlamaCppBackend, to_llama_messages  # noqa: E402
from persona_runtime.loop import ConversationLoop  # noqa: E402
from persona_runtime.prompt import PromptBuilder, RetrievedContext  # noqa: E402
from persona_runtime.tier import TierConfig, TierRegistry  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to bake bread."
GOAL = 0.97


def _raw(llm: object, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, float, float]:
    started = time.perf_counter()
    first = 0.0
    tokens = 0
    for chunk in llm.create_chat_completion(  # type: ignore[attr-defined]
        messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, stop=[],
        repeat_penalty=DEFAULT_REPEAT_PENALTY,  # the backend's sampling, so both do the same work
    ):
        if chunk["choices"][0]["delta"].get("content"):
            tokens += 1
            if tokens == 1:
                first = time.perf_counter() - started
    return tokens, time.perf_counter() - started, first


def _raw_in_thread(llm: object, messages: list[dict[str, str]], max_tokens: int) -> tuple[int, float, float]:
    out: list[tuple[int, float, float]] = []
    worker = threading.Thread(target=lambda: out.append(_raw(llm, messages, max_tokens)))
    worker.start()
    worker.join()
    return out[0]


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


PERSONA = Persona.model_validate(
    {"persona_id": "bench", "identity": {"name": "Bard", "role": "storyteller", "background": "Tells stories."}}
)


def _loop(loop: ConversationLoop, max_tokens: int) -> tuple[int, float, float]:
    """A whole ConversationLoop turn (routing, prompt, write-back, TurnLog-free), no memory."""

    async def run() -> tuple[int, float, float]:
        conv = Conversation(conversation_id="bench", persona_id="bench")
        started = time.perf_counter()
        first = 0.0
        tokens = 0
        async for event in loop.turn(conv, PROMPT, tier="mid"):
            if isinstance(event, TextDelta):
                tokens += 1
                if tokens == 1:
                    first = time.perf_counter() - started
        return tokens, time.perf_counter() - started, first

    return asyncio.run(run())


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 128
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else (os.cpu_count() or 1)
    backend = LlamaCppBackend(None, n_threads=threads)
    # Every path sends the exact messages ConversationLoop builds for this persona and prompt.
    messages = PromptBuilder().build(PERSONA, RetrievedContext(), [], PROMPT, max_tokens=4096).messages
    llama_messages = to_llama_messages(messages)
    tiers = TierRegistry([TierConfig.from_backend(t, backend) for t in ("frontier", "mid", "small")])
    loop = ConversationLoop(persona=PERSONA, tiers=tiers, reply_tokens=max_tokens)

    _ours(backend, messages, 8)  # loads the model; warms both paths' caches
    llm = backend._llm  # the same llama_cpp.Llama the backend drives; calls never overlap
    assert llm is not None
    _raw(llm, llama_messages, 8)

    paths: dict[str, tuple[str, Callable[[], tuple[int, float, float]]]] = {
        "raw": ("raw, main thread", lambda: _raw(llm, llama_messages, max_tokens)),
        "raw-thread": ("raw, fresh thread per call", lambda: _raw_in_thread(llm, llama_messages, max_tokens)),
        "ours": ("LlamaCppBackend.chat_stream", lambda: _ours(backend, messages, max_tokens)),
        "loop": ("ConversationLoop.turn", lambda: _loop(loop, max_tokens)),
    }
    names = list(paths)
    results: dict[str, list[tuple[int, float, float]]] = {name: [] for name in names}
    for i in range(runs):
        for name in names[i % len(names):] + names[: i % len(names)]:
            results[name].append(paths[name][1]())

    def rates(name: str) -> list[float]:
        return [n / t for n, t, _ in results[name]]

    print(f"model {backend.model_name}, {threads} threads, {runs} runs x {max_tokens} max tokens, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'path':<30}{'median tok/s':>13}{'first token':>13}{'tokens':>8}   runs (tok/s)")
    for name in names:
        r = rates(name)
        ttft = statistics.median(f for _, _, f in results[name]) * 1000
        tokens = statistics.median(n for n, _, _ in results[name])
        print(f"{paths[name][0]:<30}{statistics.median(r):>13.1f}{ttft:>10.0f} ms{tokens:>8.0f}   "
              + " ".join(f"{x:.1f}" for x in r))
    base = max(("raw", "raw-thread"), key=lambda name: statistics.median(rates(name)))
    for ours in ("ours", "loop"):
        ratio = statistics.median(rates(ours)) / statistics.median(rates(base))
        paired = statistics.median(o / r for o, r in zip(rates(ours), rates(base), strict=True))
        verdict = "ok" if ratio >= GOAL else "BELOW GOAL"
        print(f"{paths[ours][0]} / {paths[base][0]}: {ratio:.3f} (medians), {paired:.3f} (median of paired runs); "
              f"goal >= {GOAL}: {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
