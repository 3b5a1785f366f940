"""Startup: `persona --help` against persona-core's own CLI, and launch-to-prompt in a pty.

Side by side in one run, alternating, medians and ratios (the machines are shared and noisy).

    uv run python bench/startup.py [--runs 15]

Where PYTHONDONTWRITEBYTECODE is set (as on these machines), no .pyc is ever written and every
start compiles from source; run `uv sync --compile-bytecode` once first, as an install would.
(Not set in pyproject: with it, every `uv run` re-checks ~19k files, about 2 s.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - started


def help_times(runs: int) -> dict[str, list[float]]:
    commands = {
        "persona --help": [str(BIN / "persona"), "--help"],
        "persona-core --help": [sys.executable, "-m", "persona.cli.main", "--help"],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for name, cmd in commands.items():
        wall(cmd)  # warm the file cache and .pyc files
    for _ in range(runs):
        for name, cmd in commands.items():
            times[name].append(wall(cmd))
    return times


def prompt_times(runs: int) -> list[float]:
    """Launch `persona chat` in a pty and time until the prompt glyph is drawn."""
    import pexpect

    out = []
    with tempfile.TemporaryDirectory() as home:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
        env |= {"PERSONA_HOME": home, "TERM": "xterm-256color", "PROMPT_TOOLKIT_NO_CPR": "1"}
        for i in range(runs + 1):
            started = time.perf_counter()
            child = pexpect.spawn(str(BIN / "persona"), ["chat", str(REPO / "personas" / "astrid.yaml")], env=env, encoding="utf-8", timeout=60)
            child.expect_exact("›")
            elapsed = time.perf_counter() - started
            child.sendcontrol("d")
            child.expect(pexpect.EOF)
            child.close()
            if i:  # the first run creates the data directory
                out.append(elapsed)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    # A person's first run writes .pyc files; where PYTHONDONTWRITEBYTECODE is set (as on
    # these machines) they are never written, so compile our own packages once, like an install.
    import compileall

    for package in ("persona_cli", "runtime"):
        compileall.compile_dir(str(REPO / package), quiet=1)
    times = help_times(args.runs)
    ours = statistics.median(times["persona --help"])
    core = statistics.median(times["persona-core --help"])
    print(f"--help wall time, {args.runs} alternating runs (median)")
    print(f"  persona --help              {ours:6.3f} s   (goal <= 0.25 s)")
    print(f"  persona-core's CLI --help   {core:6.3f} s   ({core / ours:.1f}x slower than ours; goal >= 10x)")
    prompt = prompt_times(max(3, args.runs // 3))
    print(f"launch to chat prompt (pty, bundled model)   median {statistics.median(prompt):6.3f} s  (goal <= 0.8 s)")


if __name__ == "__main__":
    main()
