"""Stored conversations through the real `persona` command: one-shot, --continue, --resume,
--list, stdin as context, crash safety. Each run is its own process on the scripted server."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys

from tests.support.conversations import ASTRID, conversation_files, history_of, persona, persona_env
from tests.support.openai_server import Status, Text


def test_continue_sends_the_earlier_exchange_as_history(server, tmp_path) -> None:
    server.enqueue(Text("Tern is a fine name for a boat."))
    first = persona(server, tmp_path, "chat", ASTRID, "My boat is called Tern")
    assert first.returncode == 0, first.stderr
    assert first.stdout == "Tern is a fine name for a boat.\n"
    server.enqueue(Text("Your boat is called Tern."))
    second = persona(server, tmp_path, "chat", ASTRID, "--continue", "What is my boat called?")
    assert second.returncode == 0, second.stderr
    assert second.stdout == "Your boat is called Tern.\n" and "continuing" in second.stderr
    # The earlier exchange is sent as two history messages, not only as recalled memory.
    assert history_of(server.requests[1]) == [("user", "My boat is called Tern"), ("assistant", "Tern is a fine name for a boat.")]
    assert server.requests[1].body["messages"][-1]["content"].endswith("What is my boat called?")
    # ... and it went on in the same file, which is private.
    (path,) = conversation_files(tmp_path)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["type"] for line in lines] == ["header", "turn", "turn"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert "sk-test-pty" not in path.read_text()


def test_one_shot_failure_is_one_line_and_exit_1(server, tmp_path) -> None:
    server.enqueue(Status(400, body={"error": {"message": "bad request", "type": "invalid_request_error"}}))
    result = persona(server, tmp_path, "chat", ASTRID, "Hello")
    assert result.returncode == 1 and result.stdout == ""
    failures = [line for line in result.stderr.splitlines() if line.startswith("✗")]
    assert len(failures) == 1 and "Traceback" not in result.stderr


def test_one_shot_with_stdin_sends_one_request_holding_both(server, tmp_path) -> None:
    server.enqueue(Text("Good structure; tighten the ending."))
    essay = "# Fjords\n\nFjords are long.\nThey are also deep.\n"
    result = persona(server, tmp_path, "chat", ASTRID, "Give feedback on this essay", stdin=essay)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "Good structure; tighten the ending.\n"
    assert len(server.requests) == 1
    sent = server.requests[0].body["messages"][-1]["content"]
    assert "Give feedback on this essay\n\n<stdin>\n# Fjords\n\nFjords are long.\nThey are also deep.\n</stdin>" in sent


def test_piped_stdin_without_a_message_is_still_one_turn_per_line(server, tmp_path) -> None:
    server.enqueue(Text("One."))
    server.enqueue(Text("Two."))
    result = persona(server, tmp_path, "chat", ASTRID, stdin="first\nsecond\n")
    assert result.returncode == 0 and result.stdout == "One.\nTwo.\n" and len(server.requests) == 2


def test_resume_by_prefix_list_and_json(server, tmp_path) -> None:
    for said, reply in (("Alpha question", "Alpha answer"), ("Beta question", "Beta answer")):
        server.enqueue(Text(reply))
        assert persona(server, tmp_path, "chat", ASTRID, said).returncode == 0
    listed = persona(server, tmp_path, "chat", ASTRID, "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(r["turns"], r["last_message"]) for r in rows] == [(1, "Beta answer"), (1, "Alpha answer")]
    table = persona(server, tmp_path, "chat", ASTRID, "--list")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 2
    assert "1 turn" in table.stdout and "Alpha answer" in table.stdout
    alpha = rows[1]["id"]
    short = alpha.removeprefix("chat-")
    others = rows[0]["id"].removeprefix("chat-")
    prefix = next(short[:n] for n in range(4, len(short) + 1) if not others.startswith(short[:n]))
    server.enqueue(Text("Still alpha."))
    resumed = persona(server, tmp_path, "chat", ASTRID, "--resume", prefix, "Go on")
    assert resumed.returncode == 0, resumed.stderr
    assert history_of(server.requests[-1]) == [("user", "Alpha question"), ("assistant", "Alpha answer")]
    # Unknown and ambiguous prefixes: exit 2, one line, nothing sent.
    sent = len(server.requests)
    for bad, phrase in (("zzzz", "no conversation"), ("chat-", "ambiguous: 2 match")):
        result = persona(server, tmp_path, "chat", ASTRID, "--resume", bad, "Hi")
        assert result.returncode == 2 and phrase in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert len(server.requests) == sent


def test_a_torn_last_line_is_skipped_and_a_killed_process_keeps_earlier_turns(server, tmp_path) -> None:
    server.enqueue(Text("First answer."))
    server.enqueue(Text("never finished " * 50, delay_s=0.2))  # streams slowly: killed meanwhile
    env = persona_env(server, tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "persona_cli", "chat", ASTRID], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, env=env, cwd=tmp_path, text=True,
    )
    try:
        proc.stdin.write("first question\nsecond question\n")
        proc.stdin.close()
        assert server.wait_for_requests(2, timeout=60)  # the first turn is done and stored
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        proc.kill()
        proc.stdout.close()
        proc.stderr.close()
    (path,) = conversation_files(tmp_path)
    with path.open("a") as f:
        f.write('{"type":"turn","turn_id":"torn","messa')  # as if killed mid-write
    listed = persona(server, tmp_path, "chat", ASTRID, "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [(r["turns"], r["last_message"]) for r in map(json.loads, listed.stdout.splitlines())] == [(1, "First answer.")]
    server.enqueue(Text("Continued."))
    follow = persona(server, tmp_path, "chat", ASTRID, "-c", "third")
    assert follow.returncode == 0, follow.stderr
    assert history_of(server.requests[-1]) == [("user", "first question"), ("assistant", "First answer.")]


def test_bad_option_combinations_are_usage_errors(server, tmp_path) -> None:
    for args in (["--json"], ["-c", "--resume", "abcd"], ["--list", "hello"]):
        result = persona(server, tmp_path, "chat", ASTRID, *args)
        assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1, (args, result.stderr)
    assert server.requests == []


def test_logs_show_the_words_and_rows_have_a_short_id_and_a_preview(server, tmp_path) -> None:
    server.enqueue(Text("Tern is a fine name for a boat."))
    server.enqueue(Text("Your boat is called Tern."))
    assert persona(server, tmp_path, "chat", ASTRID, "My boat is called Tern").returncode == 0
    assert persona(server, tmp_path, "chat", ASTRID, "-c", "What is my boat called?").returncode == 0
    server.enqueue(Text("Unrelated."))
    assert persona(server, tmp_path, "chat", ASTRID, "Something else").returncode == 0
    records = [json.loads(line) for line in (tmp_path / "logs" / "turns.jsonl").read_text().splitlines()]
    conversation = records[0]["conversation_id"].removeprefix("chat-")
    prefix = next(conversation[:n] for n in range(6, len(conversation)) if not records[2]["conversation_id"].removeprefix("chat-").startswith(conversation[:n]))

    shown = persona(server, tmp_path, "logs", "show", prefix)
    assert shown.returncode == 0, shown.stderr
    assert "you: My boat is called Tern" in shown.stdout and "astrid: Tern is a fine name for a boat." in shown.stdout
    assert "you: What is my boat called?" in shown.stdout and "Unrelated." not in shown.stdout
    one = persona(server, tmp_path, "logs", "show", records[1]["turn_id"][:8])
    assert "you: What is my boat called?" in one.stdout and "My boat is called Tern" not in one.stdout

    tail = persona(server, tmp_path, "logs", "tail")
    rows = tail.stdout.splitlines()
    assert len(rows) == 3 and records[0]["turn_id"][:8] in rows[0] and "“My boat is called Tern”" in rows[0]
    listed = persona(server, tmp_path, "logs", "list", "-c", prefix)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 2
    assert "What is my boat called?" in listed.stdout and "Something else" not in listed.stdout


def test_one_shot_stdin_too_long_for_every_model_is_one_line_and_nothing_is_sent(server, tmp_path) -> None:
    huge = "word " * 600_000  # ~750k tokens by estimate: more than any window
    result = persona(server, tmp_path, "chat", ASTRID, "Summarise this", stdin=huge)
    assert result.returncode == 1 and result.stdout == ""
    failures = [line for line in result.stderr.splitlines() if line.startswith("✗")]
    assert len(failures) == 1 and "largest context window" in failures[0] and "Traceback" not in result.stderr
    assert server.requests == []
