"""Benchmarks against the tools people would use instead (issue 8).

`uv run python -m bench` runs every comparison side by side in one run (see ``__main__``). Each
section module (startup, runtime_overhead, local_throughput, renderer, logs_tail, memory) also
runs on its own (`uv run python bench/startup.py`, ...) and exposes ``run()`` returning its raw
results, which ``__main__`` summarises; ``routing.py`` is a standalone script.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # persona, llm and friends, in the environment running the bench


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without PERSONA_* (so the bundled model is used), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERSONA_")}
    return env | extra


def rotations(names: Sequence[str], rounds: int) -> Iterator[str]:
    """Every name once per round, the order rotating round by round, so the contenders alternate
    and none always runs right after the same neighbour (these machines are shared and noisy)."""
    for i in range(rounds):
        shift = i % len(names)
        yield from [*names[shift:], *names[:shift]]
