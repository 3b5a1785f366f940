"""`persona memory` as real processes, against chats on the scripted OpenAI server.

The issue's acceptance: after `memory forget` of the episodic entry that holds "Tern", a new
conversation asks about the boat and no request the server got contains "Tern".
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pexpect
import pytest

from tests.support.env import clean_env
from tests.support.openai_server import ScriptedOpenAIServer, Text
from tests.support.paths import REPO

ASTRID = REPO / "personas" / "astrid.yaml"


def _env(server: ScriptedOpenAIServer, home: Path) -> dict[str, str]:
    return clean_env(
        home,
        PERSONA_PROVIDER="openai", PERSONA_MODEL="gpt-4o-mini", PERSONA_API_KEY="sk-test-memory-0001",
        PERSONA_BASE_URL=server.base_url, PERSONA_EMBEDDER="hash", PERSONA_REQUEST_TIMEOUT_S="10",
    )


def persona(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_cli", *args], input=stdin, env=env, cwd=cwd,
        capture_output=True, text=True, timeout=120, check=False,
    )


def _bodies(server: ScriptedOpenAIServer) -> list[str]:
    return [json.dumps(r.body, ensure_ascii=False) for r in server.requests]


def test_forgotten_tern_is_never_sent_again(server, tmp_path, monkeypatch) -> None:
    """Chats are real processes; the memory commands run through the CLI's entry point in-process
    (main(): the same parsing, errors and exit codes) to keep the test short."""
    home = tmp_path / "home"
    env = _env(server, home)
    server.enqueue(Text("Noted, a fine name."))
    told = persona(["chat", str(ASTRID)], env, tmp_path, "My boat is called Tern.\n")
    assert told.returncode == 0, told.stderr

    found = _cli(["memory", "search", str(ASTRID), "My boat is called Tern.", "--store", "episodic", "--json"], home, monkeypatch)
    assert found.returncode == 0, found.stderr
    hits = [json.loads(line) for line in found.stdout.splitlines()]
    tern = [h for h in hits if "Tern" in h["text"]]
    assert len(tern) == 1 and tern[0]["origin"] == "runtime" and -1.0 <= tern[0]["score"] <= 1.0 and tern[0]["age"]
    listed = _cli(["memory", "list", str(ASTRID), "--store", "episodic"], home, monkeypatch)
    assert "Tern" in listed.stdout and tern[0]["id"].removeprefix("astrid::") in listed.stdout

    # While it is stored, a new conversation about the boat sends it (recall works here).
    server.enqueue(Text("Let me think."))
    asked = persona(["chat", str(ASTRID)], env, tmp_path, "What is my boat called?\n")
    assert asked.returncode == 0, asked.stderr
    assert "Tern" in _bodies(server)[-1]
    turns = [json.loads(line) for line in (tmp_path / "home" / "logs" / "turns.jsonl").read_text().splitlines()]
    assert tern[0]["id"] in turns[-1]["recalled"]  # the TurnLog says what went in

    refused = _cli(["memory", "forget", str(ASTRID), tern[0]["id"]], home, monkeypatch)  # stdin is not a terminal
    assert refused.returncode == 3 and "--yes" in refused.stderr and "Traceback" not in refused.stderr
    forgot = _cli(["memory", "forget", str(ASTRID), tern[0]["id"][-12:], "--yes"], home, monkeypatch)
    assert forgot.returncode == 0, forgot.stderr
    assert "forgot episodic::" in forgot.stdout

    server.enqueue(Text("I do not know its name."))
    again = persona(["chat", str(ASTRID)], env, tmp_path, "What is my boat called?\n")
    assert again.returncode == 0, again.stderr
    assert len(server.requests) == 3
    assert "Tern" not in _bodies(server)[-1]
    assert not [b for b in _bodies(server)[2:] if "Tern" in b]


def _cli(args: list[str], home: Path, monkeypatch, stdin: str = "") -> Any:
    """The real CLI entry point in-process (main(): one-line errors, exit codes), stdin not a TTY."""
    import contextlib
    import io

    from persona_cli.app import main

    for key in [k for k in os.environ if k.startswith("PERSONA_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PERSONA_HOME", str(home))
    monkeypatch.setenv("PERSONA_EMBEDDER", "hash")
    monkeypatch.setattr(sys, "argv", ["persona", *args])
    monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), pytest.raises(SystemExit) as done:
        main()
    return SimpleNamespace(returncode=done.value.code, stdout=out.getvalue(), stderr=err.getvalue())


def test_bad_input_is_one_line_with_its_exit_code(tmp_path, monkeypatch) -> None:
    cases = [
        (["memory", "show", str(ASTRID), "no-such-entry"], 1, "no memory entry"),
        (["memory", "show", str(ASTRID), "self_facts"], 2, "matches 5 entries"),
        (["memory", "add", str(ASTRID), "--store", "identity", "name: Bob"], 2, "identity store cannot be written"),
        (["memory", "forget", str(ASTRID), "identity::0000", "--yes"], 2, "cannot be forgotten"),
        (["memory", "forget", str(ASTRID), "worldview::0000"], 3, "pass --yes"),
        (["memory", "rollback", str(ASTRID), "worldview::0000", "4"], 2, "has no version 4"),
        (["memory", "list", str(tmp_path / "missing.yaml")], 2, "missing.yaml"),
        (["memory", "list", str(ASTRID), "--store", "nope"], 2, "--store must be one of"),
    ]
    for args, code, words in cases:
        result = _cli(args, tmp_path / "home", monkeypatch)
        lines = result.stderr.strip().splitlines()
        assert (result.returncode, len(lines)) == (code, 1), (args, result.stderr)
        assert words in lines[0] and "Traceback" not in result.stderr, (args, result.stderr)


def test_a_foreign_store_is_set_aside_as_a_chat_would(tmp_path, monkeypatch) -> None:
    store = tmp_path / "home" / "memory" / "hash"
    store.mkdir(parents=True)
    (store / "chroma.sqlite3").write_bytes(b"this is not sqlite")
    result = _cli(["memory", "list", str(ASTRID), "--store", "worldview"], tmp_path / "home", monkeypatch)
    assert result.returncode == 0 and "worldview::0000" in result.stdout
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and "not a SQLite database; it was moved to" in notes[0]
    assert [p.name.startswith("hash.broken-") for p in store.parent.iterdir()].count(True) == 1


def test_a_store_that_cannot_be_opened_is_one_line_not_a_traceback(tmp_path, monkeypatch) -> None:
    (tmp_path / "home" / "memory").mkdir(parents=True)
    (tmp_path / "home" / "memory" / "hash").write_text("a file where the store's folder should be")
    result = _cli(["memory", "list", str(ASTRID)], tmp_path / "home", monkeypatch)
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "memory/hash" in result.stderr and "Traceback" not in result.stderr and "memory is off" not in result.stderr


def test_yaml_entries_are_marked_and_a_pin_keeps_one_forgotten(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    listed = _cli(["memory", "list", str(ASTRID), "--store", "self_facts", "--json"], home, monkeypatch)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(rows) == 5 and {r["origin"] for r in rows} == {"yaml"}
    plain = _cli(["memory", "forget", str(ASTRID), "self_facts::0003", "--yes"], home, monkeypatch)
    assert plain.returncode == 0 and "come back at the next load" in plain.stderr
    back = _cli(["memory", "show", str(ASTRID), "self_facts::0003"], home, monkeypatch)  # the next load brings it back
    assert back.returncode == 0 and "korte svar" in back.stdout and "origin:" in back.stdout
    pinned = _cli(["memory", "forget", str(ASTRID), "self_facts::0003", "--yes", "--pin"], home, monkeypatch)
    assert pinned.returncode == 0 and "pinned out 1" in pinned.stderr
    assert _cli(["memory", "show", str(ASTRID), "self_facts::0003"], home, monkeypatch).returncode == 1
    pins = _cli(["memory", "pins", str(ASTRID)], home, monkeypatch)
    assert "korte svar" in pins.stdout
    pin_file = home / "memory" / "hash" / "pinned-astrid.json"
    assert pin_file.stat().st_mode & 0o777 == 0o600
    unpinned = _cli(["memory", "unpin", str(ASTRID), pins.stdout.split()[0]], home, monkeypatch)
    assert unpinned.returncode == 0
    assert _cli(["memory", "show", str(ASTRID), "self_facts::0003"], home, monkeypatch).returncode == 0


def test_add_edit_history_rollback_through_the_cli(tmp_path, monkeypatch) -> None:
    home = tmp_path / "home"
    added = _cli(["memory", "add", str(ASTRID), "--store", "self_facts", "I answer in English when asked."], home, monkeypatch)
    assert added.returncode == 0 and added.stdout.startswith("added self_facts::")
    entry = added.stdout.split()[1]
    edited = _cli(["memory", "edit", str(ASTRID), entry, "I answer in English when the person writes English."], home, monkeypatch)
    assert edited.returncode == 0 and "(version 2)" in edited.stdout
    history = _cli(["memory", "history", str(ASTRID), entry], home, monkeypatch)
    assert [line.split()[0] for line in history.stdout.splitlines()] == ["v1", "v2"]
    rolled = _cli(["memory", "rollback", str(ASTRID), entry, "1"], home, monkeypatch)
    assert rolled.returncode == 0 and "now version 3" in rolled.stdout
    shown = _cli(["memory", "show", str(ASTRID), entry, "--json"], home, monkeypatch)
    assert json.loads(shown.stdout)["text"] == "self_fact: I answer in English when asked."


def test_every_memory_command_help_has_an_example(tmp_path) -> None:
    from typer.testing import CliRunner

    from persona_cli.app import app

    for command in ("", "list", "search", "show", "forget", "add", "edit", "history", "rollback", "pins", "unpin"):
        result = CliRunner().invoke(app, ["memory", *([command] if command else []), "--help"])
        assert result.exit_code == 0 and "Example: persona memory" in result.output, command


@pytest.mark.pty
def test_why_and_remember_in_the_repl(server, tmp_path) -> None:
    from tests.support.pty import persona_in_pty

    prompt = "›"
    server.enqueue(Text("Hyggelig å høre."))
    with persona_in_pty(["chat", str(ASTRID)], tmp_path / "home", tmp_path, server=server) as (child, _screen):
        child.expect_exact(prompt)
        child.send("/remember Båten min heter Tern.\r")
        child.expect_exact("remembered as a note: episodic::")
        child.expect_exact(prompt)
        child.send("/recall on\r")
        child.expect_exact("recall summary after each turn: on")
        child.expect_exact(prompt)
        child.send("Hva heter båten min?\r")
        child.expect_exact("Hyggelig å høre.")
        child.expect_exact("recalled: 1 episodic")  # the summary line after the turn
        child.expect_exact(prompt)
        child.send("/why\r")
        child.expect_exact("episodic   episodic::")
        child.expect_exact("Båten min heter Tern.")
        child.expect_exact(prompt)
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    assert "Tern" in json.dumps(server.requests[-1].body, ensure_ascii=False)


@pytest.mark.pty
def test_forget_on_a_terminal_asks_first_and_offers_the_pin(tmp_path) -> None:
    from tests.support.pty import persona_in_pty

    home = tmp_path / "home"
    with persona_in_pty(["memory", "forget", str(ASTRID), "self_facts::0003"], home, tmp_path) as (child, _screen):
        child.expect_exact("Forget 1 entry? [y/N]")
        child.send("n\r")
        child.expect_exact("nothing was forgotten")
        child.expect(pexpect.EOF)
    with persona_in_pty(["memory", "forget", str(ASTRID), "self_facts::0003"], home, tmp_path) as (child, _screen):
        child.expect_exact("Forget 1 entry? [y/N]")
        child.send("y\r")
        child.expect_exact("Pin out? [y/N]")
        child.send("y\r")
        child.expect_exact("pinned out 1")
        child.expect(pexpect.EOF)
    pins = json.loads((home / "memory" / "hash" / "pinned-astrid.json").read_text())
    assert [p["preview"] for p in pins] == ["self_fact: Jeg foretrekker korte svar med en tydelig neste handling."]


def test_memory_commands_load_no_chat_model(tmp_path) -> None:
    """The same store as a chat, without a model: llama_cpp and the provider SDKs are never asked for."""
    report = tmp_path / "report.json"
    env = clean_env(tmp_path / "home", PERSONA_EMBEDDER="hash")
    command = [sys.executable, "-m", "tests.support.import_probe", str(report), "llama_cpp,openai,anthropic,chromadb", "--",
               "memory", "list", str(ASTRID), "-n", "1"]
    done = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    probe = json.loads(report.read_text())
    assert probe["loaded"] == ["chromadb"] and "llama_cpp" not in probe["asked"]
