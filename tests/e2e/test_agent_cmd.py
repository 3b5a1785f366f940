"""`persona agent`: CliRunner against the loopback server, and real pseudo-terminal runs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pexpect
import pytest
from typer.testing import CliRunner

from persona_cli.commands.agent import PROCEED_ANSWER
from persona_cli.app import app
from tests.support.openai_server import (
    ScriptedOpenAIServer,
    SlowFirstByte,
    Status,
    Text,
    ToolCall,
)
from tests.support.pty import persona_in_pty
from tests.support.cli import invoke
from tests.support.paths import REPO

KAI = REPO / "personas" / "kai.yaml"
KEY = "sk-test-agent-SECRET-7777"


@pytest.fixture
def home(server, tmp_path, monkeypatch) -> Path:
    for key in [k for k in os.environ if k.startswith("PERSONA_")]:
        monkeypatch.delenv(key)
    env = {
        "PERSONA_HOME": str(tmp_path / "home"),
        "PERSONA_PROVIDER": "openai",
        "PERSONA_MODEL": "gpt-4o-mini",
        "PERSONA_API_KEY": KEY,
        "PERSONA_BASE_URL": server.base_url,
        "PERSONA_EMBEDDER": "hash",
        "PERSONA_REQUEST_TIMEOUT_S": "10",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "home"


def runs(home: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in sorted((home / "runs").glob("*.json"))]


def turn_log(home: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (home / "logs" / "turns.jsonl").read_text().splitlines()]


# -- runs ----------------------------------------------------------------------------------


def test_json_prints_one_event_per_line_ending_with_status_usage_and_cost(server, home) -> None:
    server.enqueue(Text("Plan: compare the two engines."))
    server.enqueue(ToolCall("calculator", {"expression": "2*1024"}, text="Sizing."))
    server.enqueue(Text("[FINAL] Use **DuckDB** for 2048 MB of analytics."))
    code, result = invoke(["agent", str(KAI), "Compare SQLite and DuckDB", "--json"])
    assert code == 0, result.output
    events = [json.loads(line) for line in result.stdout.splitlines()]
    types = [e["type"] for e in events]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert types.count("step_started") == 3 and types.count("step_finished") == 3
    assert {"thinking_delta", "answer_delta", "tool_call_started", "tool_call_finished", "final_answer"} <= set(types)
    last = events[-1]
    assert last["status"] == "completed" and last["output"] == "Use **DuckDB** for 2048 MB of analytics."
    assert last["usage"]["prompt_tokens"] > 0 and last["usage"]["completion_tokens"] > 0
    assert last["cost_cents"] is not None and last["cost_cents"] > 0  # gpt-4o-mini has a known price
    tool_done = next(e for e in events if e["type"] == "tool_call_finished")
    assert tool_done["content"] == "2048" and not tool_done["is_error"]
    assert KEY not in result.stdout + result.stderr
    # Tools went to the model; the tool result came back in the next request.
    assert "calculator" in {t["function"]["name"] for t in server.requests[0].body["tools"]}
    assert any(m.get("role") == "tool" and m.get("content") == "2048" for m in server.requests[2].body["messages"])
    [saved] = runs(home)
    assert saved["status"] == "completed" and saved["id"] == last["run_id"]
    assert (home / "runs" / f"{saved['id']}.json").stat().st_mode & 0o777 == 0o600
    log = turn_log(home)
    assert [(r["kind"], r["run_id"], r["step"]) for r in log] == [("agent", saved["id"], i) for i in (1, 2, 3)]


def test_answers_file_and_piped_output_is_only_the_answer(server, home, tmp_path) -> None:
    (tmp_path / "answers.txt").write_text("duckdb\n")
    server.enqueue(Text("[ASK_USER] Which database do you already use?"))
    server.enqueue(Text("[FINAL] Stay with DuckDB."))
    code, result = invoke(["agent", str(KAI), "Pick a database", "--answers", str(tmp_path / "answers.txt")])
    assert code == 0, result.output
    assert result.stdout == "Stay with DuckDB.\n"
    assert "Which database do you already use?" in result.stderr and "step 2/8" in result.stderr
    assert "\x1b" not in result.stdout + result.stderr
    assert server.requests[1].body["messages"][-1] == {"role": "user", "content": "duckdb"}
    [saved] = runs(home)
    assert saved["steps"][0]["question"] == "Which database do you already use?"
    assert saved["steps"][0]["answer"] == "duckdb"


def test_task_from_stdin(server, home) -> None:
    server.enqueue(Text("[FINAL] done"))
    code, result = invoke(["agent", str(KAI)], input="Summarise the plan\n")
    assert code == 0, result.output
    assert runs(home)[0]["task"] == "Summarise the plan"
    # What memory recalled (if anything) comes first; the task ends the message.
    assert server.requests[0].body["messages"][1]["content"].endswith("TASK: Summarise the plan")


def test_on_ask_fail_exits_3_and_resume_answers_and_completes(server, home, tmp_path) -> None:
    server.enqueue(Text("[ASK_USER] Which database?"))
    code, result = invoke(["agent", str(KAI), "Pick a database", "--on-ask", "fail"])
    assert code == 3, result.output
    [paused] = runs(home)
    assert paused["status"] == "needs_input" and paused["pending_question"] == "Which database?"
    assert f"--resume {paused['id']}" in result.stderr

    (tmp_path / "answers.yaml").write_text("- duckdb\n")
    server.enqueue(Text("[FINAL] Use DuckDB."))
    # The persona file is taken from the stored run; a unique prefix of the id is enough.
    code, result = invoke(["agent", "--resume", paused["id"][:8], "--answers", str(tmp_path / "answers.yaml")])
    assert code == 0, result.output
    assert result.stdout == "Use DuckDB.\n"
    [done] = runs(home)
    assert done["id"] == paused["id"] and done["status"] == "completed"
    assert done["steps"][0]["answer"] == "duckdb" and done["output"] == "Use DuckDB."
    sent = server.requests[-1].body["messages"]
    assert [m["content"] for m in sent[-2:]] == ["[ASK_USER] Which database?", "duckdb"]

    code, result = invoke(["agent", "--resume", paused["id"]])
    assert code == 2 and "completed" in str(result.exception)


def test_on_ask_proceed_lets_the_agent_continue(server, home) -> None:
    server.enqueue(Text("[ASK_USER] Which one?"))
    server.enqueue(Text("[FINAL] I assumed DuckDB."))
    code, result = invoke(["agent", str(KAI), "Pick", "--on-ask", "proceed"])
    assert code == 0, result.output
    assert server.requests[1].body["messages"][-1]["content"] == PROCEED_ANSWER


def test_max_steps_exits_4_with_a_labelled_best_effort_answer(server, home) -> None:
    server.enqueue(Text("Thinking about storage engines."))
    server.enqueue(Text("Probably DuckDB, but I did not verify it."))
    code, result = invoke(["agent", str(KAI), "Pick a database", "--max-steps", "1"])
    assert code == 4, result.output
    assert result.stdout == "Probably DuckDB, but I did not verify it.\n"
    assert "best-effort" in result.stderr and "best effort" in result.stderr
    assert "tools" not in server.requests[1].body  # the best-effort call has no tools
    [saved] = runs(home)
    assert saved["status"] == "max_steps_reached" and saved["best_effort"] is True

    server.enqueue(Text("[FINAL] DuckDB, verified."))
    code, result = invoke(["agent", "--resume", saved["id"], "--max-steps", "2"])
    assert code == 0, result.output
    [resumed] = runs(home)
    assert resumed["status"] == "completed" and resumed["best_effort"] is False and len(resumed["steps"]) == 3


def test_every_provider_failing_exits_1_with_status_error(server, home) -> None:
    server.enqueue(Status(500))
    code, result = invoke(["agent", str(KAI), "Pick a database"])
    assert code == 1, result.output
    assert "every model failed" in result.stderr and result.stdout == ""
    [saved] = runs(home)
    assert saved["status"] == "error" and "every model failed" in saved["error"]
    assert turn_log(home)[0]["status"] == "error"


def test_list_shows_recent_runs(server, home) -> None:
    server.enqueue(Text("[FINAL] one"))
    assert invoke(["agent", str(KAI), "First task"])[0] == 0
    server.enqueue(Text("[ASK_USER] what?"))
    assert invoke(["agent", str(KAI), "Second task"])[0] == 3
    code, result = invoke(["agent", "--list"])
    assert code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    assert "Second task" in lines[0] and "needs_input" in lines[0]
    assert "First task" in lines[1] and "completed" in lines[1]
    code, result = invoke(["agent", "--list", "--json", "-n", "1"])
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["status"] for r in rows] == ["needs_input"] and rows[0]["question"] == "what?"


def test_list_only_reads_so_a_read_only_home_is_fine(server, home, monkeypatch) -> None:
    server.enqueue(Text("[FINAL] one"))
    assert invoke(["agent", str(KAI), "First task"])[0] == 0

    def unwritable(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("--list tried to prepare (write to) the data directory")

    monkeypatch.setattr("persona_runtime.paths.prepare_data_dir", unwritable)
    code, result = invoke(["agent", "--list"])
    assert code == 0 and "First task" in result.stdout


def test_a_killed_run_lists_as_abandoned_and_resumes(server, home, tmp_path) -> None:
    """A real `persona agent` process SIGKILLed mid-step: while it lives its run cannot be
    resumed a second time; once killed, --list says abandoned and --resume finishes it."""
    server.enqueue(SlowFirstByte(120.0, Text("never sent")))  # step 1 hangs until the kill
    child = subprocess.Popen(
        [sys.executable, "-m", "persona_cli", "agent", str(KAI), "Pick a database", "--json"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path,
        env=os.environ | {"PERSONA_REQUEST_TIMEOUT_S": "600"},  # the step must still be waiting when it is killed
    )
    try:
        assert server.wait_for_requests(1, timeout=60), "the agent never called the model"
        [running] = runs(home)
        assert running["status"] == "running"
        code, result = invoke(["agent", "--resume", running["id"]])
        assert code == 2 and "running in another process" in str(result.exception)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL
    finally:
        child.kill()
        child.wait(timeout=30)
    code, result = invoke(["agent", "--list", "--json"])
    assert [json.loads(line)["status"] for line in result.stdout.splitlines()] == ["abandoned"]
    assert "abandoned" in invoke(["agent", "--list"])[1].stdout
    server.enqueue(Text("[FINAL] Use DuckDB."))
    code, result = invoke(["agent", "--resume", running["id"][:8]])
    assert code == 0, result.output
    [done] = runs(home)
    assert (done["id"], done["status"], done["output"]) == (running["id"], "completed", "Use DuckDB.")


@pytest.mark.parametrize(
    ("args", "code", "phrase"),
    [
        (["agent", str(KAI), "x", "--max-steps", "0"], 2, "--max-steps"),
        (["agent", str(KAI), "x", "--on-ask", "maybe"], 2, "--on-ask"),
        (["agent", str(KAI), "x", "--on-ask", "ask"], 2, "terminal"),
        (["agent", str(KAI), "x", "--tier", "huge"], 2, "--tier"),
        (["agent"], 2, "PERSONA_FILE"),
        (["agent", "--resume", "abcdef12"], 1, "no run"),
        (["agent", "--resume", "ab"], 1, "at least 4"),
        (["agent", str(KAI), "x", "--answers", "/nonexistent/answers.txt"], 2, "--answers"),
        (["agent", str(KAI)], 2, "empty"),
        (["agent", "missing.yaml", "x"], 2, "not found"),
    ],
)
def test_usage_errors(home, args: list[str], code: int, phrase: str) -> None:
    got, result = invoke(args, input="")
    assert got == code, result.output
    assert phrase in str(result.exception)


def test_resume_with_a_task_is_a_usage_error(server, home) -> None:
    server.enqueue(Text("[ASK_USER] q?"))
    invoke(["agent", str(KAI), "task one"])
    [paused] = runs(home)
    code, result = invoke(["agent", str(KAI), "another task", "--resume", paused["id"]])
    assert code == 2 and "--resume" in str(result.exception)


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(app, ["agent", "--help"])
    assert result.exit_code == 0
    for option in ("--max-steps", "--answers", "--on-ask", "--json", "--resume", "--list"):
        assert option in result.stdout


# -- a real terminal -------------------------------------------------------------------------


@pytest.mark.pty
def test_pty_answering_a_question_by_typing(tmp_path) -> None:
    home = tmp_path / "home"
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text("[ASK_USER] Which database?"))
        server.enqueue(Text("[FINAL] Use DuckDB."))
        args = ["agent", str(KAI), "Pick a database for analytics"]
        with persona_in_pty(args, home, tmp_path, server=server, timeout=90) as (child, log):
            child.expect_exact("Which database?")
            child.expect_exact("›")  # the answer prompt
            child.send("duckdb\r")
            child.expect_exact("Use DuckDB.")
            child.expect_exact("completed")
            child.expect(pexpect.EOF)
        assert child.exitstatus == 0, "".join(log)[-2000:]
        assert "\x07" in "".join(log)  # the bell rang for the question
        assert server.requests[1].body["messages"][-1] == {"role": "user", "content": "duckdb"}
    [saved] = runs(home)
    assert saved["status"] == "completed" and saved["output"] == "Use DuckDB."
    assert saved["steps"][0]["question"] == "Which database?" and saved["steps"][0]["answer"] == "duckdb"


@pytest.mark.pty
def test_pty_ctrl_c_cancels_the_run_and_saves_it(tmp_path) -> None:
    home = tmp_path / "home"
    story = "Thinking about every storage engine in turn, slowly and carefully. " * 30
    with ScriptedOpenAIServer() as server:
        server.enqueue(Text(story, chunk_size=12, delay_s=0.25))  # ~40 s unless interrupted
        with persona_in_pty(["agent", str(KAI), "Pick a database"], home, tmp_path, server=server, timeout=90) as (child, log):
            child.expect_exact("Thinking abo")  # the first 12-character delta: step 1 is streaming
            child.sendcontrol("c")
            child.expect_exact("cancelled")
            child.expect(pexpect.EOF)
        assert child.exitstatus == 130, "".join(log)[-2000:]
    [saved] = runs(home)
    assert saved["status"] == "cancelled" and saved["steps"][0]["type"] == "cancelled"
    assert turn_log(home)[0]["status"] == "interrupted"
