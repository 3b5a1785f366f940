"""First reply from launch: `persona chat` piped against `llm -m SmolLM2`, to the first reply byte.

Each run launches the CLI with one message on stdin and times, from the launch, the first byte
on its stdout pipe (stdout carries only the reply for both) and the exit. The contenders
alternate run by run; medians.

* persona, already run once: astrid.yaml with a data directory copied, fresh for each run, from
  one made by a single earlier chat. So the persona's memory is indexed (its YAML unchanged),
  the system message is in the prompt cache, and memory holds that one earlier exchange
  (recalled, within the local recall budget), as on a person's second launch.
* persona, first ever: a new data directory (indexing, and the system message read, in the run).
* llm: `llm -m SmolLM2` with the same message (no system prompt: the plugin's 512-token
  context cannot take astrid's), a fresh LLM_USER_PATH.

Both run the same SmolLM2-135M GGUF file. persona also recalls memory and reads a system
message that llm does not have; that is the product, and it is part of the time.

    uv run python bench/first_reply.py [RUNS]
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench` when run as a script
from bench import BIN, REPO, clean_env, rotations  # noqa: E402

MESSAGE = "Can my landlord keep my deposit?"
WARM_UP = "Hello, I rent a flat in Oslo."
PERSONA = REPO / "personas" / "astrid.yaml"
GOAL = 1.5  # persona's first reply (already run once) <= 1.5x llm's


def launch(cmd: list[str], env: dict[str, str], stdin: str) -> dict[str, float]:
    """Seconds from launch to the first stdout byte, and to the exit."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(stdin.encode())
    proc.stdin.close()
    first = 0.0
    while os.read(proc.stdout.fileno(), 65536):
        first = first or time.perf_counter() - started
    if proc.wait() != 0 or not first:
        raise RuntimeError(f"{' '.join(cmd[:3])} exited {proc.returncode} with {'no' if not first else 'some'} output")
    return {"first_s": first, "exit_s": time.perf_counter() - started}


def run(runs: int = 5) -> dict[str, Any]:
    """name -> {"label", "samples": [{"first_s", "exit_s"}, ...]}."""
    persona_cmd = [str(BIN / "persona"), "chat", str(PERSONA)]
    with tempfile.TemporaryDirectory(prefix="persona-bench-first-") as scratch:
        template = Path(scratch) / "template"
        launch(persona_cmd, clean_env(PERSONA_HOME=str(template)), WARM_UP + "\n")

        def fresh(name: str) -> str:
            return tempfile.mkdtemp(prefix=name, dir=scratch)

        def warm() -> dict[str, float]:
            home = Path(fresh("home-")) / "home"
            shutil.copytree(template, home)
            return launch(persona_cmd, clean_env(PERSONA_HOME=str(home)), MESSAGE + "\n")

        contenders = {
            "persona": ("persona chat, piped, already run once", warm),
            "persona-first": ("persona chat, piped, first ever", lambda: launch(
                persona_cmd, clean_env(PERSONA_HOME=fresh("home-")), MESSAGE + "\n")),
            "llm": ("llm -m SmolLM2, piped", lambda: launch(
                [str(BIN / "llm"), "-m", "SmolLM2"], os.environ | {"LLM_USER_PATH": fresh("llm-")}, MESSAGE)),
        }
        out: dict[str, Any] = {name: {"label": label, "samples": []} for name, (label, _go) in contenders.items()}
        for name in rotations(list(contenders), runs):
            out[name]["samples"].append(contenders[name][1]())
    return out


def median_of(result: dict[str, Any], name: str, key: str = "first_s") -> float:
    return statistics.median(s[key] for s in result[name]["samples"])


def summarise(r: dict[str, Any], rep: Any) -> None:
    """Lines, README rows and losses (``rep`` is ``bench.__main__.Report``)."""
    from bench.__main__ import secs

    llm, warm, first = (median_of(r, n) for n in ("llm", "persona", "persona-first"))
    runs = len(r["llm"]["samples"])
    rep.say(f"first reply byte from launch, piped, median of {runs} alternating runs:")
    for name in r:
        rep.say(f"  {r[name]['label']:42} {secs(median_of(r, name))} (exit {secs(median_of(r, name, 'exit_s'))})")
    met = warm <= GOAL * llm
    rep.row("first reply byte, piped, from launch: Astrid, already run once (memory indexed, prompt cached)",
            f"`persona chat` {secs(warm)} ({warm / llm:.2f}×); first ever: {secs(first)} ({first / llm:.2f}×)",
            f"`llm -m SmolLM2` {secs(llm)}, no system prompt", f"≤ {GOAL}× llm", met)  # fmt: skip
    if not met:
        rep.lose(f"first reply byte, piped, from launch: `persona chat` {secs(warm)} against `llm`'s {secs(llm)} "
                 f"({warm / llm:.1f}×, goal ≤ {GOAL}×).")


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    result = run(runs)
    llm = median_of(result, "llm")
    for name, entry in result.items():
        first, exit_ = median_of(result, name), median_of(result, name, "exit_s")
        print(f"{entry['label']:42} first byte {first:5.2f} s ({first / llm:4.2f}x llm)   exit {exit_:5.2f} s")
    print(f"goal: already run once <= {GOAL}x llm: {'met' if median_of(result, 'persona') <= GOAL * llm else 'not met'}")


if __name__ == "__main__":
    main()
