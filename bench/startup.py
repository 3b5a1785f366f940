"""Startup: `persona --help` against persona-core's own CLI and `llm --help`, and launch-to-prompt in a pty.

Side by side in one run, alternating, medians and ratios (the machines are shared and noisy).

    uv run python bench/startup.py [--runs 15]

Bytecode: where PYTHONDONTWRITEBYTECODE is set (as on these machines) no .pyc is ever written,
so every start of every tool would compile its modules from source, which is not what a person
sees after an install (pip compiles on install; without the variable, the first run writes
them). :func:`compile_bytecode` therefore runs ``compileall`` once over our packages *and* the
venv's whole site-packages, so persona-core, llm, llama_cpp and every dependency start from
.pyc alike. compileall ignores PYTHONDONTWRITEBYTECODE, only writes missing or stale .pyc
files, and is a quick no-op once done. (`uv sync --compile-bytecode` does the same; it is not
set in pyproject because then every `uv run` re-checks ~19k files, about 2 s.)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import BIN, REPO, clean_env, rotations  # noqa: E402

GOAL_HELP_S = 0.25
GOAL_CORE_RATIO = 10.0
GOAL_PROMPT_S = 0.8


def compile_bytecode() -> None:
    """Write .pyc for our code and every installed package once (see the module docstring)."""
    import compileall

    for folder in (REPO / "persona_cli", REPO / "runtime", Path(sysconfig.get_paths()["purelib"])):
        # quiet=2: some packages ship deliberately broken test files; not our concern here.
        # One worker: a process pool costs ~15 s even when every .pyc is already up to date.
        compileall.compile_dir(str(folder), quiet=2)


def wall(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, check=False)
    return time.perf_counter() - started


def help_times(runs: int) -> dict[str, list[float]]:
    """Wall time of each tool's --help, the tools alternating run by run."""
    with tempfile.TemporaryDirectory() as llm_home:
        # llm keeps its config and logs.db in LLM_USER_PATH; a scratch one leaves the user's alone.
        env = clean_env(LLM_USER_PATH=llm_home)
        commands = {
            "persona --help": [str(BIN / "persona"), "--help"],
            "persona-core --help": [sys.executable, "-m", "persona.cli.main", "--help"],
            "llm --help": [str(BIN / "llm"), "--help"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():
            wall(cmd, env)  # warm the file cache
        for name in rotations(list(commands), runs):
            times[name].append(wall(commands[name], env))
    return times


def prompt_times(runs: int) -> list[float]:
    """Launch `persona chat` in a pty and time until the prompt glyph is drawn."""
    import pexpect

    out = []
    with tempfile.TemporaryDirectory() as home:
        env = clean_env(PERSONA_HOME=home, TERM="xterm-256color", PROMPT_TOOLKIT_NO_CPR="1")
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


def run(runs: int = 15, prompt_runs: int | None = None) -> dict[str, Any]:
    """Raw samples (seconds): ``help`` per command, and ``prompt`` (launch to chat prompt)."""
    return {
        "runs": runs,
        "help": help_times(runs),
        "prompt": prompt_times(prompt_runs if prompt_runs is not None else max(3, runs // 3)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    compile_bytecode()
    result = run(args.runs)
    med = {name: statistics.median(t) for name, t in result["help"].items()}
    ours = med["persona --help"]
    print(f"--help wall time, {args.runs} alternating runs (median)")
    print(f"  persona --help              {ours:6.3f} s   (goal <= {GOAL_HELP_S} s)")
    core, llm = med["persona-core --help"], med["llm --help"]
    print(f"  persona-core's CLI --help   {core:6.3f} s   ({core / ours:.1f}x ours; goal >= {GOAL_CORE_RATIO:g}x)")
    print(f"  llm --help                  {llm:6.3f} s   ({llm / ours:.1f}x ours)")
    prompt = statistics.median(result["prompt"])
    print(f"launch to chat prompt (pty, bundled model)   median {prompt:6.3f} s  (goal <= {GOAL_PROMPT_S} s)")


if __name__ == "__main__":
    main()
