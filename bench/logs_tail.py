"""`persona logs` speed: `tail -n 20` on 10 MB / 100 MB / 1 GB logs, and `stats` over 1M records.

Side by side per log size: `persona --help`, `persona logs tail -n 20` (PERSONA_HOME at the log)
and coreutils `tail -n 20 FILE`; medians, and tail's overhead over `--help` (goal <= 0.1 s).
The commands alternate run by run (the machines are shared and noisy); `--hyperfine` uses
hyperfine instead when installed (`apt-get install -y hyperfine`), which is more precise per
command but runs each command's runs back to back.
The logs are built once from realistic TurnLog records and cached (default: $TMPDIR/persona-bench-logs).

    uv run python bench/logs_tail.py [--sizes 10M,100M,1G] [--runs 15] [--stats-records 1000000] [--hyperfine]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import BIN, REPO, rotations  # noqa: E402

PERSONA = str(BIN / "persona")
# What the entry point would run before Typer: same imports as `persona --help`, then fast_tail.
FAST_PATH = """import sys
from persona_cli import app
from persona_cli.commands.logs import fast_tail
sys.exit(fast_tail(sys.argv[1:]))
"""
UNITS = {"K": 2**10, "M": 2**20, "G": 2**30}


def parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("B")
    return int(float(text[:-1]) * UNITS[text[-1]]) if text[-1] in UNITS else int(text)


def record_pool(n: int = 512) -> list[dict[str, object]]:
    """Varied records made by the real TurnLog model, so field names and shapes are exact."""
    sys.path.insert(0, str(REPO / "runtime"))
    from persona_runtime.turnlog import AttemptRecord, ToolCallRecord, TurnLog

    rng = random.Random(6)
    routes = [("fast", "openai", "gpt-4o-mini", 0.015), ("smart", "anthropic", "claude-sonnet-4", 0.3),
              ("local", "gguf", "smollm2-135m-instruct", 0.0), ("cheap", "deepseek", "deepseek-chat", 0.027),
              ("groq", "groq", "llama-3.3-70b-versatile", None)]  # fmt: skip
    pool = []
    for i in range(n):
        tier, provider, model, price = rng.choice(routes)
        prompt, completion = rng.randint(200, 6000), rng.randint(10, 900)
        attempts = [AttemptRecord(tier=tier, provider=provider, model=model, outcome="ok", latency_ms=rng.uniform(200, 4000))]
        if rng.random() < 0.1:
            attempts.insert(0, AttemptRecord(tier="smart", provider="anthropic", model="claude-opus-4", outcome="error",
                                             error_type="RateLimitError", error="429: rate limited", latency_ms=150.0))
        status = "error" if rng.random() < 0.02 else "interrupted" if rng.random() < 0.02 else "ok"
        agent = rng.random() < 0.2
        pool.append(
            TurnLog(
                kind="agent" if agent else "chat",
                conversation_id="x",
                turn_index=0,
                persona_id=rng.choice(["astrid", "bruno", "coder", "tutor"]),
                run_id="r" if agent else None,
                step=rng.randint(1, 12) if agent else None,
                tier=tier, provider=provider, model=model,
                prompt_tokens=prompt, completion_tokens=completion,
                cost_cents=None if price is None else (prompt + completion) / 1000 * price,
                latency_ms=sum(a.latency_ms for a in attempts), ttft_ms=rng.uniform(80, 900),
                tool_calls=tuple(ToolCallRecord(name=rng.choice(["read_file", "search", "shell"]), ok=True,
                                                duration_ms=rng.uniform(1, 300)) for _ in range(rng.randint(0, 2))),
                routing={"router": "heuristic", "tier": tier, "reason": rng.choice(["short question", "code", "long context"]),
                         "score": round(rng.random(), 3)},
                attempts=tuple(attempts), status=status, error="provider failed" if status == "error" else None,
            ).model_dump(mode="json")
        )  # fmt: skip
    return pool


def build_log(path: Path, *, size: int | None = None, records: int | None = None) -> Path:
    """Write a log of ``size`` bytes or ``records`` lines once; reuse it afterwards."""
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    pool = record_pool()
    total = records if records is not None else size // 700 + 1  # a first guess: records are ~700 bytes
    start = datetime.now(UTC) - timedelta(days=30)
    step = timedelta(days=30) / max(total, 1)
    tmp = path.with_suffix(".partial")
    written = count = 0
    started = time.perf_counter()
    with open(tmp, "w", encoding="utf-8") as out:
        while (records is not None and count < records) or (records is None and written < size):
            rec = dict(pool[count % len(pool)])
            rec["turn_id"] = f"{count:032x}"
            rec["conversation_id"] = f"{count // 8:031x}c"
            rec["turn_index"] = count % 8
            if rec["run_id"] is not None:
                rec["run_id"] = f"{count // 8:031x}r"
            rec["timestamp"] = (start + step * count).isoformat().replace("+00:00", "Z")
            line = json.dumps(rec, separators=(",", ":")) + "\n"
            out.write(line)
            written += len(line)
            count += 1
    tmp.rename(path)
    print(f"  built {path} ({written / 2**20:.0f} MiB, {count:,} records) in {time.perf_counter() - started:.0f} s")
    return path


# A command: argv and extra environment variables.
Command = tuple[list[str], dict[str, str]]
# name -> (median wall s, mean CPU user+sys s, wall samples)
Timings = dict[str, tuple[float, float, list[float]]]


def hyperfine(commands: dict[str, Command], runs: int) -> Timings:
    with tempfile.NamedTemporaryFile(suffix=".json") as export:
        cmd = ["hyperfine", "-N", "--warmup", "3", "--runs", str(runs), "--export-json", export.name, "--style", "none"]
        for name, (argv, extra) in commands.items():
            prefix = ["env", *(f"{k}={v}" for k, v in extra.items())] if extra else []
            cmd += ["-n", name, " ".join([*prefix, *argv])]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        results = json.loads(Path(export.name).read_text())["results"]
    return {r["command"]: (r["median"], r["user"] + r["system"], r["times"]) for r in results}


def loop(commands: dict[str, Command], runs: int) -> Timings:
    walls: dict[str, list[float]] = {name: [] for name in commands}
    cpus: dict[str, list[float]] = {name: [] for name in commands}
    for i, name in enumerate(rotations(list(commands), runs + 2)):  # the first two rounds warm up
        argv, extra = commands[name]
        before = os.times()
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ | extra, check=False)
        wall = time.perf_counter() - started
        after = os.times()
        if i >= 2 * len(commands):
            walls[name].append(wall)
            cpus[name].append(after.children_user - before.children_user + after.children_system - before.children_system)
    return {name: (statistics.median(walls[name]), statistics.mean(cpus[name]), walls[name]) for name in commands}


def bench_tail(cache: Path, sizes: list[str], runs: int, *, use_hyperfine: bool = False) -> dict[str, Any]:
    """size label -> {"bytes", "timer", "results": {command: {"wall_s", "cpu_s", "walls"}}}."""
    timer = hyperfine if use_hyperfine and shutil.which("hyperfine") else loop
    script = cache / "fast_tail.py"
    out: dict[str, Any] = {}
    for label in sizes:
        home = cache / f"tail-{label}"
        log = build_log(home / "logs" / "turns.jsonl", size=parse_size(label))
        script.write_text(FAST_PATH)
        at_log = {"PERSONA_HOME": str(home)}
        commands: dict[str, Command] = {
            "persona --help": ([PERSONA, "--help"], {}),
            "persona logs tail -n 20": ([PERSONA, "logs", "tail", "-n", "20"], at_log),
            "fast_tail (entry-point fast path)": ([sys.executable, str(script), "logs", "tail", "-n", "20"], at_log),
            "tail -n 20 FILE": (["tail", "-n", "20", str(log)], {}),
        }
        for name in ("persona logs tail -n 20", "fast_tail (entry-point fast path)"):
            argv, extra = commands[name]
            check = subprocess.run(argv, capture_output=True, text=True, check=True, env=os.environ | extra)
            assert len(check.stdout.splitlines()) == 20, check.stdout[-500:] + check.stderr
        results = timer(commands, runs)
        out[label] = {
            "bytes": log.stat().st_size, "timer": timer.__name__, "runs": runs,
            "results": {name: {"wall_s": w, "cpu_s": c, "walls": ws} for name, (w, c, ws) in results.items()},
        }  # fmt: skip
    return out


def print_tail(result: dict[str, Any]) -> None:
    for label, size in result.items():
        print(f"persona logs tail -n 20, {label} log ({size['bytes'] / 2**20:,.0f} MiB; {size['timer']}, {size['runs']} runs;"
              " median wall, mean CPU user+sys)")
        help_wall, help_cpu = size["results"]["persona --help"]["wall_s"], size["results"]["persona --help"]["cpu_s"]
        for name, r in size["results"].items():
            line = f"    {name:36} {r['wall_s']:7.3f} s   cpu {r['cpu_s']:6.3f} s"
            if name not in ("persona --help", "tail -n 20 FILE"):
                line += f"   over --help: {r['wall_s'] - help_wall:+.3f} s wall, {r['cpu_s'] - help_cpu:+.3f} s CPU"
            print(line)


# `logs list` with filters over the stats log: (label, argv after `persona logs list`).
LIST_QUERIES = (
    ("--conversation ID (8 turns)", ["--conversation", "0000000000000000000000000001e84c", "--json"]),
    ("--errors -n 50", ["--errors", "-n", "50", "--json"]),
    ("--persona --tier --since 1d", ["--persona", "astrid", "--tier", "local", "--since", "1d", "--json"]),
)


CPU: dict[str, list[float]] = {}  # label -> CPU seconds (user + sys) of each timed command


def _timed(argv: list[str], env: dict[str, str], label: str = "") -> float:
    """Wall seconds of one run; its CPU seconds go to CPU[label] (a busy machine inflates the
    wall time, far less the CPU time)."""
    before = os.times()
    started = time.perf_counter()
    subprocess.run(argv, env=env, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = os.times()
    cpu = after.children_user - before.children_user + after.children_system - before.children_system
    CPU.setdefault(label, []).append(cpu)
    return wall


def bench_stats(cache: Path, records: int, runs: int) -> dict[str, Any]:
    """`logs stats` and filtered `logs list` over ``records`` records: from the SQLite index
    (built once from scratch, timed), then warm, alternating with the full scan (index off)."""
    home = cache / f"stats-{records}"
    log = build_log(home / "logs" / "turns.jsonl", records=records)
    env = {**os.environ, "PERSONA_HOME": str(home)}
    scan_env = {**env, "PERSONA_LOG_INDEX": "0"}
    sys.path.insert(0, str(REPO / "runtime"))
    from persona_runtime.turnlog.index import index_path
    from persona_runtime.turnlog.query import iter_records
    from persona_runtime.turnlog.stats import stats

    for suffix in ("", "-journal"):
        Path(f"{index_path(log)}{suffix}").unlink(missing_ok=True)
    CPU.clear()
    build = _timed([PERSONA, "logs", "stats"], env, "build")  # builds the index from nothing
    walls: list[float] = []
    scans: list[float] = []
    lists: dict[str, dict[str, list[float]]] = {label: {"index": [], "scan": []} for label, _ in LIST_QUERIES}
    for i in range(runs):
        order = [(walls, env, "stats"), (scans, scan_env, "stats scan")]
        for samples, e, name in order if i % 2 == 0 else order[::-1]:
            samples.append(_timed([PERSONA, "logs", "stats"], e, name))
        for label, argv in LIST_QUERIES:
            for key, e in (("index", env), ("scan", scan_env)):
                lists[label][key].append(_timed([PERSONA, "logs", "list", *argv], e, f"{label} {key}"))
        _timed([PERSONA, "--help"], env, "--help")
    started = time.perf_counter()
    parsed = sum(1 for _ in iter_records(log))
    parse = time.perf_counter() - started
    started = time.perf_counter()
    rows = stats(iter_records(log), "tier", total=True)
    total = time.perf_counter() - started
    assert rows[-1].turns == parsed == records
    return {"records": records, "bytes": log.stat().st_size, "runs": runs, "walls": walls,
            "wall_s": statistics.median(walls), "parse_s": parse, "aggregate_s": total,
            "index_build_s": build, "index_bytes": index_path(log).stat().st_size, "scan_walls": scans,
            "list": lists, "cpu": dict(CPU)}  # fmt: skip


def print_stats(r: dict[str, Any]) -> None:
    print(f"persona logs stats over {r['records']:,} records ({r['bytes'] / 2**20:,.0f} MiB), {r['runs']} runs")
    print(f"    persona logs stats (wall, median)      {r['wall_s']:7.2f} s")
    if "scan_walls" in r:
        print(f"    same, index off (full scan)            {statistics.median(r['scan_walls']):7.2f} s")
        print(f"    first query, building the index        {r['index_build_s']:7.2f} s  ({r['index_bytes'] / 2**20:,.0f} MiB)")
        for label, got in r["list"].items():
            print(f"    logs list {label:28} {statistics.median(got['index']):7.2f} s   scan {statistics.median(got['scan']):7.2f} s")
    print(f"    in process: read + json.loads          {r['parse_s']:7.2f} s   ({r['parse_s'] / r['records'] * 1e6:.1f} us/record)")
    print(f"    in process: read + parse + aggregate   {r['aggregate_s']:7.2f} s")


def run(
    sizes: list[str], runs: int = 15, stats_records: int = 1_000_000, stats_runs: int = 3,
    cache: Path = Path(tempfile.gettempdir()) / "persona-bench-logs", use_hyperfine: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """{"tail": bench_tail(...), "stats": bench_stats(...) or None}."""
    return {
        "tail": bench_tail(cache, sizes, runs, use_hyperfine=use_hyperfine) if sizes else {},
        "stats": bench_stats(cache, stats_records, stats_runs) if stats_records else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10M,100M,1G")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--stats-records", type=int, default=1_000_000)
    parser.add_argument("--stats-runs", type=int, default=3)
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "persona-bench-logs")
    parser.add_argument("--hyperfine", action="store_true", help="time with hyperfine (not alternating) if installed")
    args = parser.parse_args()
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        print("note: PYTHONDONTWRITEBYTECODE is set: every run recompiles the project's modules")
    sizes = [s for s in args.sizes.split(",") if s]
    result = run(sizes, args.runs, args.stats_records, args.stats_runs, args.cache, args.hyperfine)
    print_tail(result["tail"])
    if result["stats"]:
        print_stats(result["stats"])


if __name__ == "__main__":
    main()
