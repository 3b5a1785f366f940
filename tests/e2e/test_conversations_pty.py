"""/undo, /resume and /new in the real REPL (a pty), on the scripted server."""

from __future__ import annotations

import json

import pexpect
import pytest

from tests.support.conversations import ASTRID, conversation_files, history_of, persona
from tests.support.openai_server import Text
from tests.support.pty import persona_in_pty

PROMPT = "›"


def request_text(request) -> str:
    return json.dumps(request.body["messages"])


@pytest.mark.pty
def test_undo_takes_back_the_exchange_and_the_memory_it_wrote(server, tmp_path) -> None:
    server.enqueue(Text("Noted: your boat is Tern."))
    server.enqueue(Text("I do not know its name."))
    with persona_in_pty(["chat", ASTRID], tmp_path, tmp_path, server=server) as (child, screen):
        child.expect_exact(PROMPT)
        child.send("My boat is called Tern\r")
        child.expect_exact("Noted: your boat is Tern.")
        child.expect_exact(PROMPT)
        child.send("/undo\r")
        child.expect_exact("undid your last exchange")
        child.expect_exact(PROMPT)
        child.send("What is my boat called?\r")
        child.expect_exact("I do not know its name.")
        child.expect_exact(PROMPT)
        child.send("/undo\r")
        child.expect_exact("undid your last exchange")
        child.expect_exact(PROMPT)
        child.send("/undo\r")
        child.expect_exact("nothing to undo")
        # Keys go only to a prompt that is up: a Ctrl-D typed between prompts meets the
        # terminal's cooked mode, which takes it as end-of-file and never passes it on.
        child.expect_exact(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0, "".join(screen)[-2000:]
    # Neither the history nor recalled memory of the second request holds the undone turn.
    assert "Tern" in request_text(server.requests[0]) and "Tern" not in request_text(server.requests[1])
    records = [json.loads(line) for line in (tmp_path / "logs" / "turns.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in records] == ["chat", "undo", "chat", "undo"]
    assert records[1]["undoes"] == records[0]["turn_id"] and records[3]["undoes"] == records[2]["turn_id"]
    assert records[0]["preview"] == "My boat is called Tern"
    (path,) = conversation_files(tmp_path)
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["header", "turn", "undo", "turn", "undo"]


@pytest.mark.pty
def test_resume_shows_the_last_exchange_and_goes_on_in_the_same_file_and_new_starts_afresh(server, tmp_path) -> None:
    server.enqueue(Text("Tern is a fine name for a boat."))
    assert persona(server, tmp_path, "chat", ASTRID, "My boat is called Tern").returncode == 0
    (path,) = conversation_files(tmp_path)
    short = path.stem.removeprefix("chat-")
    server.enqueue(Text("It is called Tern."))
    server.enqueue(Text("A fresh start."))
    with persona_in_pty(["chat", ASTRID], tmp_path, tmp_path, server=server) as (child, screen):
        child.expect_exact(PROMPT)
        child.send("/resume\r")
        child.expect_exact(short)  # the list of recent conversations
        child.expect_exact(PROMPT)
        child.send(f"/resume {short[:15]}\r")
        child.expect_exact("continuing")
        child.expect_exact("Tern is a fine name for a boat.")  # the last exchange, shown briefly
        child.expect_exact(PROMPT)
        child.send("What is my boat called?\r")
        child.expect_exact("It is called Tern.")
        child.expect_exact(PROMPT)
        child.send("/new\r")
        child.expect_exact("new conversation")
        child.send("Hello\r")
        child.expect_exact("A fresh start.")
        child.expect_exact(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0, "".join(screen)[-2000:]
    assert history_of(server.requests[1]) == [("user", "My boat is called Tern"), ("assistant", "Tern is a fine name for a boat.")]
    assert history_of(server.requests[2]) == []
    files = conversation_files(tmp_path)
    assert len(files) == 2 and path in files
    assert [json.loads(line)["type"] for line in path.read_text().splitlines()] == ["header", "turn", "turn"]
    # -c opens the REPL on the newest conversation (the one /new started), showing where it left off.
    with persona_in_pty(["chat", ASTRID, "-c"], tmp_path, tmp_path, server=server) as (child, screen):
        child.expect_exact("continuing")
        child.expect_exact("you: Hello")
        child.expect_exact("A fresh start.")
        child.expect_exact(PROMPT)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert child.exitstatus == 0 and len(server.requests) == 3


@pytest.mark.pty
def test_one_shot_on_a_terminal_renders_markdown_and_exits(server, tmp_path) -> None:
    server.enqueue(Text("Depositum er **maks seks** måneders leie."))
    with persona_in_pty(["chat", ASTRID, "Hva er depositum?"], tmp_path, tmp_path, server=server) as (child, screen):
        child.expect(pexpect.EOF)
    child.close()
    shown = "".join(screen)
    assert child.exitstatus == 0, shown[-2000:]
    assert "maks seks" in shown and "**maks" not in shown and PROMPT not in shown
