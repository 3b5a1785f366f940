"""The real `persona` command with MCP servers: `persona mcp list`, a piped chat and an agent run
that use MCP tools, bad configuration, and no server process left after exit (also on SIGTERM)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.env import clean_env
from tests.support.mcp_fixtures import MCP_SERVER_TIME, alive, nora_persona, server_pids, stdio_entry, write_config
from tests.support.openai_server import ScriptedOpenAIServer, SlowFirstByte, Text, ToolCall

KEY = "sk-test-mcp-SECRET-3141"
HEADER = "hdr-SECRET-value-2718"


def env_for(server: ScriptedOpenAIServer | None, home: Path) -> dict[str, str]:
    # The first turn waits for the servers (a loaded machine can take seconds to start one).
    extra = {"PERSONA_EMBEDDER": "hash", "PERSONA_REQUEST_TIMEOUT_S": "10", "MCP_HEADER": HEADER, "PERSONA_MCP_START_WAIT_S": "60"}
    if server is not None:
        extra |= {
            "PERSONA_PROVIDER": "openai", "PERSONA_MODEL": "gpt-4o-mini", "PERSONA_API_KEY": KEY,
            "PERSONA_BASE_URL": server.base_url,
        }
    return clean_env(home, **extra)


def persona(args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "persona_cli", *args], input=stdin, capture_output=True, text=True, env=env, cwd=cwd,
        timeout=timeout,
    )


def test_mcp_list_shows_each_server_whether_it_starts_and_its_tools(tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    notes = stdio_entry(test_dir)
    notes["args"] += ["--token", "${MCP_HEADER}"]  # shown as the server's command line: redacted
    config = write_config(
        tmp_path / "mcp.json",
        {
            "notes": notes,
            "time": {"command": MCP_SERVER_TIME},
            "broken": {"command": "no-such-mcp-server-here"},
            "web": {"url": "http://127.0.0.1:9/mcp", "headers": {"Authorization": "Bearer ${MCP_HEADER}"}},
        },
    )
    result = persona(["mcp", "list", "--mcp-config", str(config)], env_for(None, tmp_path / "home"), tmp_path)
    assert result.returncode == 1, result.stderr  # a server did not start
    lines = result.stdout.splitlines()
    assert lines[0].startswith("✓ notes  stdio  ") and lines[0].endswith("7 tools") and "--token [redacted]" in lines[0]
    assert any(line.split()[:2] == ["notes__write_note", "asks"] for line in lines)
    assert any(line.split()[:2] == ["notes__read_note", "read-only"] for line in lines)
    assert any(line.startswith("✓ time  stdio") for line in lines)
    assert "✗ broken  stdio  no-such-mcp-server-here  did not start: command not found: no-such-mcp-server-here" in lines
    assert any(line.startswith("✗ web  http  http://127.0.0.1:9/mcp  did not start: cannot connect") for line in lines)
    assert "Traceback" not in result.stdout + result.stderr and HEADER not in result.stdout + result.stderr
    assert [p for p in server_pids(test_dir) if alive(p)] == []  # every server stopped with the command

    as_json = persona(["mcp", "list", "--json", "--mcp-config", str(config)], env_for(None, tmp_path / "home"), tmp_path)
    rows = {row["name"]: row for row in map(json.loads, as_json.stdout.splitlines())}
    assert [rows[n]["started"] for n in ("notes", "time", "broken", "web")] == [True, True, False, False]
    write = next(t for t in rows["notes"]["tools"] if t["name"] == "write_note")
    assert write == {
        "name": "write_note", "model_name": "notes__write_note", "persona_entry": "mcp:notes:write_note",
        "description": "Write a note to a file.", "read_only": False, "asks": True,
    }


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("{broken", "is not valid JSON"),
        ('{"mcpServers": {"x": {"command": "a", "url": "http://127.0.0.1:9"}}}', 'exactly one of "command"'),
        ('{"mcpServers": {"x": {"url": "http://127.0.0.1:9", "headers": {"A": "${NOT_SET_ANYWHERE}"}}}}', "NOT_SET_ANYWHERE"),
    ],
)
def test_a_bad_mcp_json_is_one_line_and_exit_2_for_chat_agent_and_list(tmp_path, text: str, phrase: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    (home / "mcp.json").write_text(text)  # the default place
    path = nora_persona(tmp_path, ["mcp:x"])
    for args in (["chat", str(path)], ["agent", str(path), "a task"], ["mcp", "list"]):
        result = persona(args, env_for(None, home), tmp_path, stdin="hi\n")
        assert result.returncode == 2, (args, result.stderr)
        [line] = result.stderr.strip().splitlines()
        assert phrase in line and str(home / "mcp.json") in line and "Traceback" not in line


def test_a_missing_mcp_config_file_is_exit_2(tmp_path) -> None:
    path = nora_persona(tmp_path, ["mcp:x"])
    result = persona(["chat", str(path), "--mcp-config", str(tmp_path / "nope.json")], env_for(None, tmp_path / "h"), tmp_path, "hi\n")
    assert result.returncode == 2 and "no such file" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_piped_chat_uses_an_mcp_tool_and_leaves_no_server_behind(server, tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    config = write_config(tmp_path / "mcp.json", {"notes": stdio_entry(test_dir, TOKEN="${MCP_HEADER}")})
    path = nora_persona(tmp_path, ["mcp:notes"])
    server.enqueue(ToolCall("notes__write_note", {"name": "n", "text": "hi"}, call_id="c1"))  # declined: piped, no --yes
    server.enqueue(Text("I could not save it."))
    server.enqueue(ToolCall("notes__read_note", {"name": "n"}, call_id="c2"))  # read-only: runs
    server.enqueue(Text("There is no such note."))
    result = persona(["chat", str(path), "--mcp-config", str(config)], env_for(server, tmp_path / "home"), tmp_path, "save it\nread it\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "I could not save it.\nThere is no such note.\n"
    assert "notes__write_note needs approval; declined" in result.stderr
    assert not (test_dir / "note-n").exists()
    assert server.requests[3].body["messages"][-1]["content"] == "no note named n"
    assert "Traceback" not in result.stderr and "post_writer" not in result.stderr and HEADER not in result.stderr
    pids = server_pids(test_dir)
    assert len(pids) == 1 and not alive(pids[0])  # stopped before `persona` exited: no orphan


def test_yes_lets_the_agent_run_a_writing_mcp_tool(server, tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    config = write_config(tmp_path / "mcp.json", {"notes": stdio_entry(test_dir)})
    path = nora_persona(tmp_path, ["mcp:notes:write_note"])
    server.enqueue(ToolCall("notes__write_note", {"name": "plan", "text": "step one"}, call_id="c1"))
    server.enqueue(Text("[FINAL] Saved the plan."))
    result = persona(["agent", str(path), "Save a plan", "--yes", "--mcp-config", str(config)], env_for(server, tmp_path / "home"), tmp_path)
    assert result.returncode == 0, result.stderr
    assert (test_dir / "note-plan").read_text() == "step one" and "Saved the plan." in result.stdout
    assert [t["function"]["name"] for t in server.requests[0].body["tools"]] == ["notes__write_note"]
    assert [p for p in server_pids(test_dir) if alive(p)] == []


def test_sigterm_mid_turn_stops_the_servers_too(server, tmp_path) -> None:
    test_dir = tmp_path / "mcp"
    config = write_config(tmp_path / "mcp.json", {"notes": stdio_entry(test_dir)})
    path = nora_persona(tmp_path, ["mcp:notes"])
    server.enqueue(SlowFirstByte(120.0, Text("never sent")))
    child = subprocess.Popen(
        [sys.executable, "-m", "persona_cli", "chat", str(path), "--mcp-config", str(config)],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        env=env_for(server, tmp_path / "home") | {"PERSONA_REQUEST_TIMEOUT_S": "600"},
    )
    try:
        child.stdin.write("hello\n")  # type: ignore[union-attr]
        child.stdin.close()  # type: ignore[union-attr]
        assert server.wait_for_requests(1, timeout=90), "the chat never called the model"
        [pid] = server_pids(test_dir)  # the server started before the first request was sent
        assert alive(pid)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=60) == 143
    finally:
        child.kill()
        child.wait(timeout=30)
    assert not alive(pid)
    assert "Traceback" not in child.stderr.read()  # type: ignore[union-attr]


@pytest.mark.pty
def test_the_repl_asks_before_a_writing_mcp_tool_and_tools_lists_it(server, tmp_path) -> None:
    import pexpect

    from tests.support.pty import pty_env, server_vars, spawn_persona

    test_dir = tmp_path / "mcp"
    config = write_config(tmp_path / "mcp.json", {"notes": stdio_entry(test_dir)})
    path = nora_persona(tmp_path, ["mcp:notes"])
    server.enqueue(ToolCall("notes__write_note", {"name": "pty", "text": "from the terminal"}, call_id="c1"))
    server.enqueue(Text("Saved it."))
    env = pty_env(tmp_path / "home", server_vars(server) | {"PERSONA_MCP_START_WAIT_S": "60"})
    screen: list[str] = []
    child = spawn_persona(["chat", str(path), "--mcp-config", str(config)], env, tmp_path, screen, timeout=90)
    try:
        child.expect_exact("›")
        child.send("save a note\r")
        child.expect_exact("run notes__write_note? [y]es / [n]o / [a]lways this session")
        child.send("y\r")
        child.expect_exact("Saved it.")
        child.expect_exact("›")
        child.send("/tools\r")
        child.expect_exact("notes__write_note  notes · write_note — Write a note to a file.")
        child.expect_exact("›")
        child.sendcontrol("d")
        child.expect(pexpect.EOF)
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        raise AssertionError(f"{type(exc).__name__}; screen:\n{''.join(screen)[-3000:]}") from None
    finally:
        child.close()
    assert child.exitstatus == 0, "".join(screen)[-2000:]
    assert (test_dir / "note-pty").read_text() == "from the terminal"
    assert [p for p in server_pids(test_dir) if alive(p)] == []


def test_a_server_that_will_not_start_is_one_line_and_the_chat_goes_on(server, tmp_path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {"broken": {"command": "no-such-mcp-server-here"}, "gone": {"url": "http://127.0.0.1:9/mcp"}},
    )
    path = nora_persona(tmp_path, ["calculator", "mcp:broken", "mcp:gone"])
    server.enqueue(Text("Hello anyway."))
    result = persona(["chat", str(path), "--mcp-config", str(config)], env_for(server, tmp_path / "home"), tmp_path, "hi\n")
    assert result.returncode == 0 and result.stdout == "Hello anyway.\n", result.stderr
    assert "⚠ MCP server broken did not start: command not found: no-such-mcp-server-here" in result.stderr.splitlines()
    assert "⚠ MCP server gone did not start: cannot connect to http://127.0.0.1:9/mcp" in result.stderr.splitlines()
    assert [t["function"]["name"] for t in server.requests[0].body["tools"]] == ["calculator"]
    assert "Traceback" not in result.stderr
