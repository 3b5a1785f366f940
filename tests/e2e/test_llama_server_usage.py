"""The real `persona` command against llama-cpp-python's own OpenAI-compatible server on the
bundled GGUF (127.0.0.1; the test starts and stops it): a piped chat turn and an agent run.
That server sends no usage in its streams, so the TurnLog's tokens are our own count, non-zero
and marked estimated, and `persona logs stats` says so."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.support.env import clean_env
from tests.support.llama_server import LLAMA_API_KEY, LLAMA_MODEL, LlamaServer

PERSONA_BIN = Path(sys.executable).parent / "persona"
# A short persona with one tool: a short prompt keeps the small model's turns to seconds.
BRIEF = """\
schema_version: "1.0"
persona_id: brief
identity: {name: Brief, role: terse assistant, background: Answers in one short sentence.}
tools: [calculator]
"""


def persona(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PERSONA_BIN), *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd, timeout=300
    )


def test_chat_and_agent_on_llama_cpp_server_log_estimated_non_zero_tokens(llama_server: LlamaServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = clean_env(home, PERSONA_EMBEDDER="hash", NO_COLOR="1", **llama_server.tier_env("MID"))
    brief = tmp_path / "brief.yaml"
    brief.write_text(BRIEF)

    chat = persona(["chat", str(brief)], env, tmp_path, "What is the capital of France?\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.strip() and "Traceback" not in chat.stderr
    usage_line = next(line for line in chat.stderr.splitlines() if LLAMA_MODEL in line and " in · " in line)
    assert "~" in usage_line and "tokens estimated" in usage_line, usage_line

    agent = persona(["agent", str(brief), "Name one primary colour.", "--max-steps", "2"], env, tmp_path)
    assert agent.returncode in (0, 4), agent.stderr  # completed, or the step limit with a best-effort answer
    assert "Traceback" not in agent.stderr and "tokens estimated" in agent.stderr

    records = [json.loads(line) for line in (home / "logs" / "turns.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in records]
    assert kinds[0] == "chat" and kinds.count("chat") == 1 and kinds.count("agent") >= 2
    for record in records:
        assert record["status"] == "ok" and record["model"] == LLAMA_MODEL
        assert record["prompt_tokens"] > 0 and record["completion_tokens"] > 0, record
        assert record["usage_estimated"] is True  # the server sent no usage

    stats = persona(["logs", "stats"], env, tmp_path)
    assert stats.returncode == 0, stats.stderr
    assert "~" in stats.stdout and f"provider reported no token usage for {len(records)} turns" in stats.stdout
    [total] = [json.loads(line) for line in persona(["logs", "stats", "--json"], env, tmp_path).stdout.splitlines()][-1:]
    assert total["estimated"] == total["turns"] == len(records) and total["prompt_tokens"] > 0
    assert LLAMA_API_KEY not in chat.stderr + agent.stderr + stats.stdout
