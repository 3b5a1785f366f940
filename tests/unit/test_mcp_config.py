"""mcp.json and PERSONA_MCP_SERVERS: typed entries, ${VAR} references, one-line errors, no secret in any message."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from persona_runtime.errors import SetupError
from persona_runtime.mcp.config import (
    HttpServer,
    McpConfigError,
    StdioServer,
    load_mcp_config,
    parse_mcp_config,
    servers_from_env,
)

SECRET = "tok-SECRET-value-9931"


def parse(data: object, env: dict[str, str] | None = None):
    return parse_mcp_config(json.dumps(data), origin="test.json", env=env or {})


def test_stdio_and_http_entries_in_the_shape_other_tools_use() -> None:
    config = parse(
        {
            "mcpServers": {
                "time": {"command": "mcp-server-time", "args": ["--local-timezone", "UTC"]},
                "docs": {"url": "http://127.0.0.1:8765/mcp", "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}},
                "notes": {"type": "stdio", "command": "python", "args": ["s.py"], "env": {"K": "${K}"}, "cwd": "/tmp"},
            }
        },
        env={"DOCS_TOKEN": SECRET, "K": "value-of-k"},
    )
    time, docs, notes = config.servers
    assert time == StdioServer(name="time", command="mcp-server-time", args=("--local-timezone", "UTC"))
    assert isinstance(docs, HttpServer) and docs.headers == {"Authorization": f"Bearer {SECRET}"}
    assert notes.env == {"K": "value-of-k"} and notes.cwd == "/tmp"
    assert config.names == ("time", "docs", "notes")
    # Header and env values are secrets, however they were written.
    assert f"Bearer {SECRET}" in config.secrets and "value-of-k" in config.secrets
    assert docs.target == "http://127.0.0.1:8765/mcp" and notes.target == "python s.py"


def test_a_default_after_colon_dash_and_a_disabled_server() -> None:
    config = parse(
        {"mcpServers": {"a": {"command": "x", "env": {"TZ": "${TZ:-UTC}"}}, "b": {"command": "y", "disabled": True}}}
    )
    assert [s.name for s in config.servers] == ["a"] and config.servers[0].env == {"TZ": "UTC"}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ("{not json", "is not valid JSON"),
        ([], '"mcpServers"'),
        ({"servers": {}}, '"mcpServers"'),
        ({"mcpServers": {"bad name": {"command": "x"}}}, "server name 'bad name'"),
        ({"mcpServers": {"a": "x"}}, "must be an object"),
        ({"mcpServers": {"a": {}}}, 'exactly one of "command"'),
        ({"mcpServers": {"a": {"command": "x", "url": "http://mcp.example.com"}}}, 'exactly one of "command"'),
        ({"mcpServers": {"a": {"command": ""}}}, '"command" is empty'),
        ({"mcpServers": {"a": {"command": "x", "args": "y"}}}, '"args" must be a list of strings'),
        ({"mcpServers": {"a": {"command": "x", "env": {"K": 1}}}}, '"env" must be an object of strings'),
        ({"mcpServers": {"a": {"command": "x", "arg": []}}}, "unknown key 'arg'"),
        ({"mcpServers": {"a": {"url": "ftp://h"}}}, "http:// or https://"),
        ({"mcpServers": {"a": {"url": "http://mcp.example.com", "type": "sse"}}}, "SSE transport is not supported"),
        ({"mcpServers": {"a": {"url": "http://mcp.example.com", "headers": {"X": "${NOPE}"}}}}, "names ${NOPE}, which is not set"),
    ],
)
def test_every_fault_is_one_line_naming_the_file(data: object, expected: str) -> None:
    text = data if isinstance(data, str) else json.dumps(data)
    with pytest.raises(McpConfigError) as caught:
        parse_mcp_config(text, origin="/home/me/mcp.json", env={})
    message = str(caught.value)
    assert expected in message and "/home/me/mcp.json" in message and "\n" not in message
    assert isinstance(caught.value, SetupError)  # the CLI maps it to exit 2


def test_an_error_never_shows_a_secret_value() -> None:
    data = {"mcpServers": {"a": {"url": "http://mcp.example.com", "headers": {"Authorization": SECRET, "X": 5}}}}
    with pytest.raises(McpConfigError) as caught:
        parse(data)
    assert SECRET not in str(caught.value)


def test_load_reads_the_default_only_when_it_exists(tmp_path: Path) -> None:
    default = tmp_path / "mcp.json"
    assert load_mcp_config(None, default=default, env={}).servers == ()
    default.write_text(json.dumps({"mcpServers": {"t": {"command": "x"}}}))
    assert load_mcp_config(None, default=default, env={}).names == ("t",)


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: None, "no such file"),
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8"),
        (lambda p: p.write_bytes(b" " * (1024 * 1024 + 1)), "larger than 1 MiB"),
    ],
)
def test_an_explicit_file_must_be_readable(tmp_path: Path, setup, expected: str) -> None:
    path = tmp_path / "given.json"
    setup(path)
    with pytest.raises(McpConfigError, match=expected):
        load_mcp_config(path, default=tmp_path / "mcp.json", env={})


def test_persona_mcp_servers_adds_http_servers_and_the_file_wins(tmp_path: Path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(json.dumps({"mcpServers": {"docs": {"url": "http://127.0.0.1:1/mcp"}}}))
    env = {"PERSONA_MCP_SERVERS": "docs=http://elsewhere/mcp, calc=http://127.0.0.1:2/mcp"}
    config = load_mcp_config(path, default=None, env=env)
    assert [(s.name, s.url) for s in config.servers] == [("docs", "http://127.0.0.1:1/mcp"), ("calc", "http://127.0.0.1:2/mcp")]
    assert config.sources == (str(path), "PERSONA_MCP_SERVERS")


@pytest.mark.parametrize("value", ["calc", "calc=ftp://mcp.example.com", "bad name=http://mcp.example.com", "a=http://mcp.example.com,a=http://mcp.example.org"])
def test_a_bad_persona_mcp_servers_is_one_line_naming_the_variable(value: str) -> None:
    with pytest.raises(McpConfigError, match="PERSONA_MCP_SERVERS") as caught:
        servers_from_env({"PERSONA_MCP_SERVERS": value})
    assert "\n" not in str(caught.value)


def test_a_value_taken_from_a_variable_is_a_secret_wherever_it_is_used() -> None:
    config = parse({"mcpServers": {"a": {"command": "x", "args": ["--token", "${T}", "${MODE:-fast}"]}}}, env={"T": SECRET})
    assert config.servers[0].args == ("--token", SECRET, "fast")
    assert SECRET in config.secrets and "fast" not in config.secrets


def test_registered_secrets_are_redacted_everywhere() -> None:
    from persona_runtime.secrets import add_secrets, redact

    add_secrets(("registered-SECRET-8080", "short"))
    assert redact("a registered-SECRET-8080 b short") == "a [redacted] b short"


def test_the_plan_starts_only_named_servers_and_says_what_is_wrong(tmp_path: Path) -> None:
    from persona_runtime.mcp.compose import plan_mcp

    config = tmp_path / "given.json"
    config.write_text(json.dumps({"mcpServers": {"time": {"command": "t"}, "notes": {"command": "n"}, "web": {"url": "http://mcp.example.com"}}}))
    plan = plan_mcp(
        ["calculator", "mcp:time", "mcp:ghost:x", "mcp:"], config_path=config, data_root=tmp_path, log_dir=None, env={},
    )
    assert plan.hub is not None and [s.name for s in plan.hub.servers] == ["time"] and not plan.hub.started
    assert plan.notices() == [
        f"the persona names MCP server ghost, not configured ({config}); it is ignored",
        "the persona lists mcp:: an MCP entry is mcp:SERVER or mcp:SERVER:TOOL",
        "MCP servers notes, web not started: the persona does not list them (add mcp:notes to its tools)",
    ]
    quiet = plan_mcp(["calculator"], config_path=None, data_root=tmp_path, log_dir=None, env={})
    assert quiet.hub is None and quiet.notices() == []  # no mcp.json in the data dir: nothing to say
