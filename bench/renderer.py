"""Benchmark: persona_cli.render.MarkdownStream vs a naive ``Live(Markdown(full_text))``.

Run: ``uv run python bench/renderer.py``

Synthetic markdown replies of ~1k, 5k and 10k tokens (~4 chars/token) are fed in 4-char deltas
into a force_terminal Console writing to /dev/null. Three regimes:

* arrival: deltas "arrive" at a simulated 100 tokens/s and both renderers repaint only when their
  throttle allows, as in real use: the naive one at clamp(last_render_seconds * 10, 1/20 s, 2 s);
  ours extends the open paragraph's last line in place up to 20 times a second and re-renders the
  open block at clamp(last_render_seconds * 150, 1/20 s, 2 s) (persona_cli.mdstream.RENDER_PACE).
  The simulated clock advances with the real time spent rendering, so a slow renderer gets
  throttled exactly as it would live. Fewer paints for the naive renderer means a choppier
  display, so ms/paint is the fairer comparison here.
* burst: the same throttle on the real clock with deltas fed back to back (a replay, or a
  model faster than the terminal): nearly everything is rendered once, at the end.
* every delta: both renderers repaint on every delta (the worst case). The naive renderer is
  quadratic here, so it only runs at the smallest size.

Reported numbers are CPU seconds (time.process_time), the median of 3 runs; the two renderers
alternate run by run, so both see the same machine state.
"""

from __future__ import annotations

import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.markdown import Markdown

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import rotations  # noqa: E402
from persona_cli.render import MarkdownStream  # noqa: E402

TOKENS_PER_SECOND = 100
DELTA_CHARS = 4
SIZES = (1_000, 5_000, 10_000)
NAIVE_EVERY_DELTA_MAX = 1_000  # beyond this the naive every-delta run takes minutes
RUNS = 3
MIN_REFRESH, MAX_REFRESH = 1 / 20, 2.0

WORDS = (
    "the model streams tokens into a terminal while the renderer keeps scrollback clean and "
    "prints each stable line once so users can read long answers without flicker or duplicated "
    "output persona runtime tier fallback latency budget"
).split()


def synthetic_reply(tokens: int, seed: int = 7) -> str:
    rnd = random.Random(seed)

    def sentence() -> str:
        words = rnd.choices(WORDS, k=rnd.randint(6, 16))
        if rnd.random() < 0.3:
            words[rnd.randrange(len(words))] = f"**{rnd.choice(WORDS)}**"
        if rnd.random() < 0.3:
            words[rnd.randrange(len(words))] = f"`{rnd.choice(WORDS)}()`"
        return " ".join(words).capitalize() + "."

    def code() -> str:
        body = [
            f"    {rnd.choice(WORDS)} = {rnd.choice(WORDS)}({rnd.randint(0, 99)})  # note"
            for _ in range(rnd.randint(4, 20))
        ]
        return "```python\ndef handler(event):\n" + "\n".join(body) + "\n    return event\n```"

    blocks: list[str] = []
    size = 0
    while size < tokens * 4:
        kind = rnd.random()
        if kind < 0.12:
            block = f"## {sentence()[:40]}"
        elif kind < 0.5:
            block = " ".join(sentence() for _ in range(rnd.randint(2, 6)))
        elif kind < 0.65:
            block = "\n".join(f"- {sentence()}" for _ in range(rnd.randint(3, 6)))
        elif kind < 0.75:
            block = "\n\n".join(f"{i}. {sentence()}" for i in range(1, rnd.randint(3, 5)))
        elif kind < 0.8:
            rows = "\n".join(f"| {rnd.choice(WORDS)} | {rnd.randint(1, 999)} |" for _ in range(4))
            block = f"| name | value |\n|------|-------|\n{rows}"
        else:
            block = code()
        blocks.append(block)
        size += len(block) + 2
    return "\n\n".join(blocks) + "\n"


class SimClock:
    """Deltas arrive at a fixed rate; the consumer's clock also advances by real render time."""

    def __init__(self) -> None:
        self.now = 0.0
        self._started = time.perf_counter()

    def arrive(self, at: float) -> None:
        self.now = max(self.now, at)
        self._started = time.perf_counter()

    def __call__(self) -> float:
        return self.now + (time.perf_counter() - self._started)

    def done(self) -> None:
        self.now = self()


class RealClock:
    """Deltas arrive back to back (a replay, or a model faster than the terminal)."""

    def arrive(self, at: float) -> None:
        pass

    def __call__(self) -> float:
        return time.monotonic()

    def done(self) -> None:
        pass


def make_console() -> Console:
    return Console(
        file=open(os.devnull, "w"),  # noqa: SIM115
        force_terminal=True,
        width=100,
        height=40,
        color_system="truecolor",
        legacy_windows=False,
    )


def deltas(text: str) -> list[str]:
    return [text[i : i + DELTA_CHARS] for i in range(0, len(text), DELTA_CHARS)]


def run_ours(text: str, regime: str) -> int:
    console = make_console()
    if regime == "every delta":
        stream = MarkdownStream(console, min_refresh=0.0, max_refresh=0.0)
    else:
        stream = MarkdownStream(console, min_refresh=MIN_REFRESH, max_refresh=MAX_REFRESH)
    clock = SimClock() if regime == "arrival" else RealClock()
    stream._clock = clock  # benchmark hook: the throttle reads this clock
    for i, delta in enumerate(deltas(text)):
        clock.arrive(i / TOKENS_PER_SECOND)
        stream.update(delta)
        clock.done()
    stream.finish()
    return stream.paints


def run_naive(text: str, regime: str) -> int:
    console = make_console()
    clock = SimClock() if regime == "arrival" else RealClock()
    interval, last, paints, buf = 0.0, float("-inf"), 0, ""
    with Live(console=console, auto_refresh=False, vertical_overflow="visible") as live:
        for i, delta in enumerate(deltas(text)):
            clock.arrive(i / TOKENS_PER_SECOND)
            buf += delta
            if regime == "every delta" or clock() - last >= interval:
                started = clock()
                live.update(Markdown(buf), refresh=True)
                paints += 1
                last = clock()
                interval = min(max((last - started) * 10, MIN_REFRESH), MAX_REFRESH)
            clock.done()
        live.update(Markdown(buf), refresh=True)
    return paints


def measure(fns: dict[str, Callable[[str, str], int]], text: str, regime: str, runs: int = RUNS) -> dict[str, tuple[float, int]]:
    """name -> (median CPU s, paints); the renderers alternate run by run, order swapping each round."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    paints: dict[str, int] = {}
    for name in rotations(list(fns), runs):
        start = time.process_time()
        paints[name] = fns[name](text, regime)
        times[name].append(time.process_time() - start)
    return {name: (statistics.median(times[name]), paints[name]) for name in fns}


REGIMES = {
    "arrival": f"throttled, deltas arriving at a simulated {TOKENS_PER_SECOND} tok/s",
    "burst": "throttled (real clock), deltas fed back to back",
    "every delta": "no throttle: repaint on every delta",
}


def run(sizes: tuple[int, ...] = SIZES, runs: int = RUNS, every_delta_max: int | None = None) -> dict[str, Any]:
    """regime -> size -> {"ours_s", "ours_paints", "naive_s", "naive_paints"} (CPU s, medians).

    ``every_delta_max``: sizes above it skip the (slow) every-delta regime entirely."""
    replies = {n: synthetic_reply(n) for n in sizes}
    out: dict[str, Any] = {"runs": runs, "sizes": list(sizes), "regimes": {}}
    for regime in REGIMES:
        rows: dict[str, dict[str, float | int | None]] = {}
        for n, text in replies.items():
            if regime == "every delta" and every_delta_max is not None and n > every_delta_max:
                continue
            fns = {"ours": run_ours}
            if regime != "every delta" or n <= NAIVE_EVERY_DELTA_MAX:
                fns["naive"] = run_naive
            got = measure(fns, text, regime, runs)
            ours, ours_paints = got["ours"]
            naive, naive_paints = got.get("naive", (None, None))
            rows[str(n)] = {"chars": len(text), "ours_s": ours, "ours_paints": ours_paints,
                            "naive_s": naive, "naive_paints": naive_paints}
        out["regimes"][regime] = rows
    return out


def main() -> None:
    result = run()
    print(f"CPU seconds, median of {result['runs']}; {DELTA_CHARS}-char deltas; width 100, truecolor")
    for regime, title in REGIMES.items():
        print(f"\n{title}")
        print(
            f"{'tokens':>7} {'chars':>6} | {'ours s':>7} {'paints':>6} {'ms/paint':>8} | "
            f"{'naive s':>7} {'paints':>6} {'ms/paint':>8} | {'naive/ours':>10}"
        )
        previous: float | None = None
        for n, row in result["regimes"][regime].items():
            ours, ours_paints = row["ours_s"], row["ours_paints"]
            cols = f"{ours:7.3f} {ours_paints:6d} {ours / ours_paints * 1000:8.2f}"
            if row["naive_s"] is not None:
                naive, naive_paints = row["naive_s"], row["naive_paints"]
                cols += f" | {naive:7.3f} {naive_paints:6d} {naive / naive_paints * 1000:8.2f}"
                cols += f" | {naive / ours:9.1f}x"
            else:
                cols += f" | {'skipped (quadratic)':>24} |"
            growth = f"  ours x{ours / previous:.2f} vs previous size" if previous else ""
            print(f"{int(n):7d} {row['chars']:6d} | {cols}{growth}")
            previous = ours


if __name__ == "__main__":
    main()
