"""The offline promise, end to end: no network at all, no PERSONA_* variables, a fresh data dir.

`persona chat` runs under `unshare -n` (an empty network namespace) on the bundled SmolLM2 and
the bundled MiniLM embedder; a second run recalls the first through episodic memory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.support.env import clean_env
from tests.support.paths import REPO

PERSONA_BIN = Path(sys.executable).parent / "persona"


def no_network_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True) if unshare else None
    if probe is None or probe.returncode != 0:
        pytest.fail("this test needs `unshare -n` (util-linux, as root) to prove there is no network")
    return [unshare, "-n"]


@pytest.mark.slow
def test_chat_offline_answers_and_remembers(tmp_path) -> None:
    env = clean_env(tmp_path / "home", PERSONA_MAX_REPLY_TOKENS="48")
    command = [*no_network_prefix(), str(PERSONA_BIN), "chat", str(REPO / "personas" / "astrid.yaml")]
    for _ in range(2):
        proc = subprocess.run(command, input="Hei! Hvem er du?\n", capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stdout.strip(), f"no reply on stdout; stderr: {proc.stderr[-2000:]}"
        assert "bundled SmolLM2" in proc.stderr
    records = [json.loads(line) for line in (tmp_path / "home" / "logs" / "turns.jsonl").read_text().splitlines()]
    assert [(r["status"], r["provider"]) for r in records] == [("ok", "gguf"), ("ok", "gguf")]
    # The second run's prompt carried the first exchange back from episodic memory.
    assert records[1]["prompt_tokens"] > records[0]["prompt_tokens"] + 10
    memory_dirs = [p.name for p in (tmp_path / "home" / "memory").iterdir()]
    assert memory_dirs == ["minilm-l6-v2"]
