"""`persona chat` without a terminal: CliRunner and real subprocesses, against a loopback server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from persona_cli.app import app
from tests.support.openai_server import ScriptedOpenAIServer, Status, Text
from tests.support.env import clean_env
from tests.support.paths import REPO

ASTRID = REPO / "personas" / "astrid.yaml"
KEY = "sk-test-cli-SECRET-4242"


def server_env(srv: ScriptedOpenAIServer, home: Path) -> dict[str, str]:
    return {
        "PERSONA_HOME": str(home),
        "PERSONA_PROVIDER": "openai",
        "PERSONA_MODEL": "gpt-4o-mini",
        "PERSONA_API_KEY": KEY,
        "PERSONA_BASE_URL": srv.base_url,
        "PERSONA_EMBEDDER": "hash",
        "PERSONA_REQUEST_TIMEOUT_S": "10",
    }


def test_piped_chat_prints_only_replies_on_stdout(server, tmp_path, monkeypatch) -> None:
    for key, value in server_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)  # no .env here, and nothing may be written here
    server.enqueue(Text("Hei! Jeg er Astrid."))
    server.enqueue(Text("Depositum er maks seks måneders leie."))
    result = CliRunner().invoke(app, ["chat", str(ASTRID)], input="Hei!\n\nHva er depositum?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hei! Jeg er Astrid.\nDepositum er maks seks måneders leie.\n"
    assert "gpt-4o-mini" in result.stderr and "\x1b" not in result.stdout + result.stderr
    assert KEY not in result.stdout + result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["audit", "conversations", "history", "logs", "memory", "runs", "workspace"]
    records = [json.loads(line) for line in (tmp_path / "logs" / "turns.jsonl").read_text().splitlines()]
    assert [r["status"] for r in records] == ["ok", "ok"] and records[0]["persona_id"] == "astrid"
    # The second message was sent with the first exchange as history, after the same system
    # message (only the end of the prompt changes: prompt caches reuse the rest).
    first, second = (r.body["messages"] for r in server.requests)
    assert second[0] == first[0] and second[0]["role"] == "system"
    assert [m["content"] for m in second[1:3]] == ["Hei!", "Hei! Jeg er Astrid."]
    assert second[3]["role"] == "user" and second[3]["content"].endswith("Hva er depositum?") and len(second) == 4


def test_a_piped_line_that_is_not_utf8_fails_that_turn_only(server, tmp_path, monkeypatch) -> None:
    for key, value in server_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    server.enqueue(Text("First."))
    server.enqueue(Text("Third."))
    result = CliRunner().invoke(app, ["chat", str(ASTRID)], input=b"one\n\xff\xfe broken\nthree\n")
    assert result.exit_code == 1, result.output  # a turn failed; the others were answered
    assert result.stdout == "First.\nThird.\n"
    assert "line 2 of the input is not UTF-8" in result.stderr and "Traceback" not in result.stderr
    assert len(server.requests) == 2


def test_a_piped_message_too_long_for_every_model_is_one_line_and_the_next_is_answered(server, tmp_path, monkeypatch) -> None:
    for key, value in server_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    server.enqueue(Text("Short answer."))
    huge = "word " * 600_000  # ~750k tokens by estimate: more than any window
    result = CliRunner().invoke(app, ["chat", str(ASTRID)], input=huge + "\nA short one.\n")
    assert result.exit_code == 1 and result.stdout == "Short answer.\n"
    failures = [line for line in result.stderr.splitlines() if line.startswith("✗")]
    assert len(failures) == 1 and "largest context window" in failures[0] and failures[0].endswith("send it in parts")
    assert len(server.requests) == 1  # the long one never left


def test_piped_chat_exits_1_when_every_model_fails(server, tmp_path, monkeypatch) -> None:
    for key, value in server_env(server, tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    server.enqueue(Status(500))
    result = CliRunner().invoke(app, ["chat", str(ASTRID)], input="Hei!\n")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "every model failed" in result.stderr
    assert "/retry" not in result.stderr  # piped input has no /retry to offer
    [record] = [json.loads(line) for line in (tmp_path / "logs" / "turns.jsonl").read_text().splitlines()]
    assert record["status"] == "error"


def test_env_file_is_loaded_and_the_real_environment_wins(server, tmp_path, monkeypatch) -> None:
    env = server_env(server, tmp_path)
    (tmp_path / "custom.env").write_text(
        "\n".join(f"{k}={v}" for k, v in env.items() if k != "PERSONA_MODEL") + "\nPERSONA_MODEL=from-file\n"
    )
    monkeypatch.setenv("PERSONA_MODEL", "gpt-4o-mini")  # the real environment wins over the file
    for key in env:
        if key != "PERSONA_MODEL":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    server.enqueue(Text("ok"))
    result = CliRunner().invoke(app, ["chat", str(ASTRID), "--env-file", str(tmp_path / "custom.env")], input="hi\n")
    assert result.exit_code == 0, result.output
    assert server.requests[0].model == "gpt-4o-mini"


def _write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


VALID = ASTRID.read_text()


def _turn_log_dir(home: Path) -> Path:
    (home / "logs" / "turns.jsonl").mkdir(parents=True)
    return home


def _with_id(persona_id: str) -> str:
    return f"persona_id: {persona_id!r}\n" + "\n".join(l for l in VALID.splitlines() if not l.startswith("persona_id:"))


def bad_input_cases(tmp: Path) -> list[tuple[str, list[str], dict[str, str], int, str]]:
    """(id, args, env, exit code, a phrase the one-line message must contain)."""
    big = tmp / "big.yaml"
    with big.open("wb") as f:
        f.truncate(50 * 1024 * 1024)
    ok = ["chat", str(ASTRID)]
    home = {"PERSONA_HOME": str(tmp / "home")}
    return [
        ("missing file", ["chat", str(tmp / "nope.yaml")], home, 2, "not found"),
        ("directory", ["chat", str(tmp)], home, 2, "is a directory"),
        ("empty", ["chat", str(_write(tmp / "empty.yaml", ""))], home, 2, "is empty"),
        ("binary", ["chat", str(_write(tmp / "bin.yaml", b"\x00\x01\x02ELF"))], home, 2, "binary"),
        ("invalid yaml", ["chat", str(_write(tmp / "bad.yaml", "identity: [unclosed\n  - x: :"))], home, 2, "invalid YAML at line"),
        ("top-level list", ["chat", str(_write(tmp / "list.yaml", "- a\n- b\n"))], home, 2, "must be a mapping"),
        ("wrong types", ["chat", str(_write(tmp / "types.yaml", VALID.replace("tools: [", "tools: 5 #[")))], home, 2, "tools"),
        ("unknown field", ["chat", str(_write(tmp / "extra.yaml", VALID + "\nfavourite_colour: blue\n"))], home, 2, "favourite_colour: unknown field"),
        ("no identity", ["chat", str(_write(tmp / "noid.yaml", 'schema_version: "1.0"\n'))], home, 2, "identity"),
        ("schema version", ["chat", str(_write(tmp / "v2.yaml", VALID.replace('schema_version: "1.0"', 'schema_version: "2.0"')))], home, 2, "schema_version"),
        ("50 MB", ["chat", str(big)], home, 2, "too large"),
        ("not utf-8", ["chat", str(_write(tmp / "latin.yaml", "name: \xe6\xf8\xe5".encode("latin-1")))], home, 2, "UTF-8"),
        ("persona_id is a path", ["chat", str(_write(tmp / "pwn.yaml", _with_id(f"../../../..{tmp}/x/PWNED")))], home, 2, "persona_id"),
        ("300-character persona_id", ["chat", str(_write(tmp / "long.yaml", _with_id("a" * 300)))], home, 2, "the limit is 64"),
        ("5,000-character persona_id", ["chat", str(_write(tmp / "huge.yaml", _with_id("b" * 5000)))], home, 2, "the limit is 64"),
        ("partial triple", ok, home | {"PERSONA_MID_PROVIDER": "openai"}, 2, "PERSONA_MID_MODEL"),
        ("missing key", ok, home | {"PERSONA_MID_PROVIDER": "openai", "PERSONA_MID_MODEL": "gpt-4o"}, 2, "PERSONA_MID_API_KEY"),
        ("unknown provider", ok, home | {"PERSONA_PROVIDER": "skynet", "PERSONA_MODEL": "x", "PERSONA_API_KEY": "k" * 12}, 2, "unknown provider"),
        ("malformed models list", ok, home | {"PERSONA_SMALL_MODELS": "openai-gpt4"}, 2, "PERSONA_SMALL_MODELS"),
        ("models list key missing", ok, home | {"PERSONA_SMALL_MODELS": "groq/llama-3.1-8b-instant"}, 2, "PERSONA_GROQ_API_KEY"),
        ("non-numeric metadata", ok, home | {"PERSONA_PROVIDER": "gguf", "PERSONA_SMALL_PROVIDER": "gguf", "PERSONA_SMALL_CONTEXT_WINDOW": "lots"}, 2, "PERSONA_SMALL_CONTEXT_WINDOW"),
        ("malformed base url", ok, home | {"PERSONA_PROVIDER": "openai", "PERSONA_MODEL": "m", "PERSONA_API_KEY": "k" * 12, "PERSONA_BASE_URL": "localhost:8080"}, 2, "PERSONA_BASE_URL"),
        ("turn log is a directory", ok, {"PERSONA_HOME": str(_turn_log_dir(tmp / "home2"))}, 2, "is not a file"),
        ("unwritable home", ok, {"PERSONA_HOME": str(_write(tmp / "afile", "x") / "sub")}, 2, "not writable"),
        ("bad embedder", ok, home | {"PERSONA_EMBEDDER": "word2vec"}, 2, "PERSONA_EMBEDDER"),
        ("bad timeout", ok, home | {"PERSONA_REQUEST_TIMEOUT_S": "soon"}, 2, "PERSONA_REQUEST_TIMEOUT_S"),
        ("non-numeric history setting", ok, home | {"PERSONA_HISTORY_KEEP_TURNS": "zero"}, 2, "PERSONA_HISTORY_KEEP_TURNS"),
        ("zero reply tokens", ok, home | {"PERSONA_MAX_REPLY_TOKENS": "0"}, 2, "PERSONA_MAX_REPLY_TOKENS"),
        ("negative log keep", ok, home | {"PERSONA_LOG_KEEP": "-1"}, 2, "PERSONA_LOG_KEEP"),
        ("tiny local context", ok, home | {"PERSONA_LOCAL_CONTEXT": "12"}, 2, "PERSONA_LOCAL_CONTEXT"),
        ("unknown tier", ["chat", str(ASTRID), "--tier", "huge"], home, 2, "--tier"),
        ("unknown option", ["chat", str(ASTRID), "--frobnicate"], home, 2, "No such option"),
        ("missing argument", ["chat"], home, 2, "Missing argument"),
        ("missing env file", ["--env-file", str(tmp / "none.env"), "chat", str(ASTRID)], home, 2, "--env-file"),
        ("unknown command", ["chatt"], home, 2, "No such command"),
    ]


def test_bad_input_is_one_line_with_a_documented_exit_code(tmp_path) -> None:
    cases = bad_input_cases(tmp_path)
    assert len(cases) >= 25
    failures = []
    for name, args, env, code, phrase in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "persona_cli", *args], input="hello\n", capture_output=True, text=True,
            env=clean_env(None, **env), cwd=tmp_path, timeout=120,
        )
        lines = proc.stderr.strip().splitlines()
        ok = (
            proc.returncode == code and len(lines) == 1 and phrase in lines[0]
            and "Traceback" not in proc.stderr and proc.stdout == ""
        )
        if not ok:
            failures.append(f"{name}: rc={proc.returncode} stderr={proc.stderr!r} stdout={proc.stdout[:200]!r}")
    assert not failures, "\n".join(failures)
    assert not (tmp_path / "x").exists(), "a persona_id wrote outside the data directory"
