"""MCP server configuration: ``mcp.json`` (the shape Claude Code, Cursor and others use) and
``PERSONA_MCP_SERVERS``, parsed into typed, validated entries. Every fault is one line.

    {"mcpServers": {
        "time":  {"command": "mcp-server-time", "args": ["--local-timezone", "Europe/Oslo"]},
        "notes": {"command": "python", "args": ["server.py"], "env": {"NOTES_TOKEN": "${NOTES_TOKEN}"}},
        "docs":  {"url": "http://127.0.0.1:8765/mcp", "headers": {"Authorization": "Bearer ${DOCS_TOKEN}"}}
    }}

A string may name environment variables: ``${VAR}``, or ``${VAR:-default}``. A header or
``env`` value, and any value taken from a variable, is treated as a secret: it never reaches a
log, an error message or the screen (:attr:`McpConfig.secrets` feeds ``redact``).

``PERSONA_MCP_SERVERS`` (persona-core's ``name=url,name=url``) adds streamable-HTTP servers;
an ``mcp.json`` entry of the same name wins. Standard library only: this runs before the prompt.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from persona_runtime.errors import ConfigError

__all__ = [
    "ENV_SERVERS_VAR", "HttpServer", "McpConfig", "McpConfigError", "McpServer", "StdioServer", "load_mcp_config",
    "parse_mcp_config", "servers_from_env",
]

ENV_SERVERS_VAR = "PERSONA_MCP_SERVERS"
MAX_CONFIG_BYTES = 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_STDIO_KEYS = frozenset({"command", "args", "env", "cwd", "type", "disabled"})
_HTTP_KEYS = frozenset({"url", "headers", "type", "disabled"})


class McpConfigError(ConfigError):
    """A bad ``mcp.json`` or ``PERSONA_MCP_SERVERS``; the message is one line, with no secret in it."""


@dataclass(frozen=True)
class StdioServer:
    """A server we start as a child process and talk to over its stdin/stdout."""

    name: str
    command: str
    args: tuple[str, ...] = ()
    #: Added to a minimal inherited environment (HOME, PATH, ...): never our API keys.
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None

    @property
    def transport(self) -> str:
        return "stdio"

    @property
    def target(self) -> str:
        """What the person configured, safe to show (arguments, never ``env``)."""
        return " ".join([self.command, *self.args])


@dataclass(frozen=True)
class HttpServer:
    """A server already running somewhere, spoken to over streamable HTTP."""

    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def transport(self) -> str:
        return "http"

    @property
    def target(self) -> str:
        return self.url


McpServer = StdioServer | HttpServer


@dataclass(frozen=True)
class McpConfig:
    servers: tuple[McpServer, ...] = ()
    #: Where the servers came from (a path, the variable), for messages.
    sources: tuple[str, ...] = ()
    #: Header and env values, to redact from anything shown or logged.
    secrets: tuple[str, ...] = ()

    def server(self, name: str) -> McpServer | None:
        return next((s for s in self.servers if s.name == name), None)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.servers)


def load_mcp_config(
    path: Path | None, *, default: Path | None, env: Mapping[str, str] | None = None
) -> McpConfig:
    """``path`` (``--mcp-config``; must exist), else ``default`` (``PERSONA_HOME/mcp.json``) when it
    exists, plus ``PERSONA_MCP_SERVERS``. Raises :class:`McpConfigError` (one line)."""
    source: Mapping[str, str] = os.environ if env is None else env
    from_file = McpConfig()
    target = path if path is not None else default
    if target is not None and (path is not None or target.exists()):
        from_file = parse_mcp_config(_read(target), origin=str(target), env=source)
    from_env = servers_from_env(source)
    names = set(from_file.names)
    servers = (*from_file.servers, *(s for s in from_env if s.name not in names))
    sources = (*from_file.sources, *((ENV_SERVERS_VAR,) if from_env else ()))
    return McpConfig(servers=servers, sources=sources, secrets=from_file.secrets)


def _read(path: Path) -> str:
    where = f"MCP config {path}"
    try:
        if path.is_dir():
            raise McpConfigError(f"{where} is a directory, not a file")
        with path.open("rb") as handle:
            data = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise McpConfigError(f"{where}: no such file") from None
    except OSError as exc:
        raise McpConfigError(f"{where}: cannot read it ({exc.strerror or type(exc).__name__})") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise McpConfigError(f"{where} is larger than 1 MiB; is it the right file?")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise McpConfigError(f"{where} is not UTF-8 text") from None


def parse_mcp_config(text: str, *, origin: str = "mcp.json", env: Mapping[str, str] | None = None) -> McpConfig:
    """The servers in one ``mcp.json`` text. Raises :class:`McpConfigError` (one line)."""
    source: Mapping[str, str] = os.environ if env is None else env
    where = f"MCP config {origin}"
    try:
        data = json.loads(text) if text.strip() else None
    except json.JSONDecodeError as exc:
        raise McpConfigError(f"{where} is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(data, dict) or not isinstance(data.get("mcpServers"), dict):
        raise McpConfigError(f'{where} must be an object with "mcpServers": {{"NAME": {{...}}}}')
    servers: list[McpServer] = []
    secrets: list[str] = []
    recording = _Recording(source, secrets)  # a value taken from a variable is treated as a secret too
    for name, entry in data["mcpServers"].items():
        server = _server(name, entry, where, recording, secrets)
        if server is not None:
            servers.append(server)
    ordered = tuple(sorted({s for s in secrets if len(s.strip()) >= 6}, key=len, reverse=True))
    return McpConfig(servers=tuple(servers), sources=(origin,), secrets=ordered)


class _Recording(Mapping[str, str]):
    """``env``, noting every value read through it."""

    def __init__(self, env: Mapping[str, str], sink: list[str]) -> None:
        self._env, self._sink = env, sink

    def __getitem__(self, key: str) -> str:
        value = self._env[key]
        self._sink.append(value)
        return value

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._env)

    def __len__(self) -> int:
        return len(self._env)


def _server(name: object, entry: object, where: str, env: Mapping[str, str], secrets: list[str]) -> McpServer | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise McpConfigError(f"{where}: server name {str(name)[:40]!r} must be 1-32 letters, digits, '_' or '-'")
    at = f"{where}: server {name!r}"
    if not isinstance(entry, dict):
        raise McpConfigError(f"{at} must be an object with \"command\" (stdio) or \"url\" (streamable HTTP)")
    kind = entry.get("type")
    if kind is not None and kind not in ("stdio", "http", "streamable-http", "streamableHttp"):
        hint = "; the legacy SSE transport is not supported, use the server's streamable HTTP endpoint" if kind == "sse" else ""
        raise McpConfigError(f"{at}: unknown \"type\" {str(kind)[:20]!r} (stdio or http){hint}")
    if entry.get("disabled") is True:
        return None
    if ("command" in entry) == ("url" in entry):
        raise McpConfigError(f"{at} needs exactly one of \"command\" (stdio) or \"url\" (streamable HTTP)")
    allowed = _STDIO_KEYS if "command" in entry else _HTTP_KEYS
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise McpConfigError(f"{at}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})")
    if "command" in entry:
        command = _expand(_text(entry["command"], at, "command"), at, "command", env)
        if not command.strip():
            raise McpConfigError(f"{at}: \"command\" is empty")
        args = entry.get("args", [])
        if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
            raise McpConfigError(f"{at}: \"args\" must be a list of strings")
        values = _mapping(entry.get("env", {}), at, "env", env)
        secrets.extend(values.values())
        cwd = entry.get("cwd")
        cwd_text = _expand(_text(cwd, at, "cwd"), at, "cwd", env) if cwd is not None else None
        expanded = tuple(_expand(a, at, "args", env) for a in args)
        return StdioServer(name=name, command=command, args=expanded, env=values, cwd=cwd_text)
    url = _expand(_text(entry["url"], at, "url"), at, "url", env).strip()
    if not url.startswith(("http://", "https://")):
        raise McpConfigError(f"{at}: \"url\" must start with http:// or https://")
    headers = _mapping(entry.get("headers", {}), at, "headers", env)
    secrets.extend(headers.values())
    return HttpServer(name=name, url=url, headers=headers)


def _text(value: object, at: str, key: str) -> str:
    if not isinstance(value, str):
        raise McpConfigError(f"{at}: \"{key}\" must be a string")
    return value


def _mapping(value: object, at: str, key: str, env: Mapping[str, str]) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise McpConfigError(f"{at}: \"{key}\" must be an object of strings (values may be \"${{VAR}}\")")
    return {k: _expand(v, at, f"{key}.{k}", env) for k, v in value.items()}


def _expand(value: str, at: str, key: str, env: Mapping[str, str]) -> str:
    """``${VAR}`` / ``${VAR:-default}`` from ``env``; a missing variable without a default is an
    error that names the variable (never a value)."""

    def one(match: re.Match[str]) -> str:
        variable, default = match.group(1), match.group(2)
        found = env.get(variable)
        if found is not None and (found or default is None):
            return found
        if default is not None:
            return default
        raise McpConfigError(f"{at}: \"{key}\" names ${{{variable}}}, which is not set")

    return _REFERENCE.sub(one, value)


def servers_from_env(env: Mapping[str, str]) -> tuple[HttpServer, ...]:
    """``PERSONA_MCP_SERVERS=name=url,name=url`` (persona-core's format): streamable-HTTP servers."""
    raw = env.get(ENV_SERVERS_VAR, "").strip()
    servers: dict[str, HttpServer] = {}
    for part in filter(None, (p.strip() for p in raw.split(","))):
        name, sep, url = (s.strip() for s in part.partition("="))
        if not sep or not _NAME.fullmatch(name) or not url.startswith(("http://", "https://")):
            raise McpConfigError(
                f"{ENV_SERVERS_VAR} must be name=url pairs separated by commas (name: letters, digits, '_' or '-'; "
                f"url: http:// or https://); entry {len(servers) + 1} is not",
            )
        if name in servers:
            raise McpConfigError(f"{ENV_SERVERS_VAR} names server {name!r} twice")
        servers[name] = HttpServer(name=name, url=url)
    return tuple(servers.values())
