"""One MCP server's connection, lived inside a single task of the hub's event loop.

The SDK's stdio and streamable-HTTP clients are anyio task groups: they must be entered and
left by the same task. :meth:`Connection.serve` is that task: it opens the transport and the
``ClientSession``, lists the tools, then holds the connection until told to stop (or until the
server goes away), and leaves everything in order on the way out: for a child process that
means closing its stdin, waiting, then SIGTERM/SIGKILL to its process group (the SDK's shutdown).
"""

from __future__ import annotations

import asyncio
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

from persona_runtime.mcp.config import HttpServer, McpServer, StdioServer
from persona_runtime.mcp.naming import wire_name
from persona_runtime.secrets import redact

__all__ = ["Connection", "McpToolInfo", "ServerStatus", "describe_failure"]

State = Literal["starting", "ready", "failed", "stopped"]


@dataclass(frozen=True)
class McpToolInfo:
    server: str
    #: The tool's own name on its server.
    name: str
    description: str
    input_schema: dict[str, Any]
    #: The server marks the tool read-only (``annotations.readOnlyHint``): it runs without asking.
    read_only: bool

    @property
    def wire_name(self) -> str:
        return wire_name(self.server, self.name)


@dataclass(frozen=True)
class ServerStatus:
    name: str
    transport: str
    #: The command line or URL (never env or header values).
    target: str
    state: State
    #: Why it failed or stopped; one line, redacted.
    reason: str | None = None
    tools: tuple[McpToolInfo, ...] = ()
    #: Seconds from the start to ready (or to the failure).
    start_s: float | None = None


@dataclass
class Connection:
    server: McpServer
    secrets: tuple[str, ...] = ()
    log_dir: Path | None = None
    start_timeout_s: float = 30.0
    state: State = "starting"
    reason: str | None = None
    tools: tuple[McpToolInfo, ...] = ()
    start_s: float | None = None
    session: Any = None
    #: Set when the connection has left "starting" (ready, failed or stopped).
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    #: One future per call in flight; given a reason when the server goes away or its transport fails.
    inflight: set[asyncio.Future[str]] = field(default_factory=set)

    def lost(self, reason: str) -> None:
        """The server went away (seen by a call): no more calls, and the serving task leaves."""
        if self.state == "ready":
            self.state, self.reason = "stopped", reason
        self.stop.set()

    def interrupt_calls(self, reason: str) -> None:
        for waiter in list(self.inflight):
            if not waiter.done():
                waiter.set_result(reason)

    def status(self) -> ServerStatus:
        return ServerStatus(
            self.server.name, self.server.transport, redact(self.server.target, self.secrets), self.state,
            self.reason, self.tools, self.start_s,
        )

    async def serve(self) -> None:
        began = time.monotonic()
        errlog, offset = self._open_errlog()
        try:
            async with AsyncExitStack() as stack:
                read, write = await self._open_transport(stack, errlog)
                from mcp import ClientSession

                self.session = await stack.enter_async_context(ClientSession(read, write))
                await asyncio.wait_for(self._initialize(), timeout=self.start_timeout_s)
                self.start_s = time.monotonic() - began
                self.state = "ready"
                self.settled.set()
                await self.stop.wait()
            if self.state == "ready":
                self.state, self.reason = "stopped", "stopped on exit"
        except (asyncio.CancelledError, GeneratorExit):
            self._settle("stopped", "stopped before it was ready" if self.state == "starting" else "stopped on exit", began)
            raise
        except BaseException as exc:  # noqa: BLE001 - a server's fault is its status, never the session's
            if isinstance(exc, TimeoutError) and self.state == "starting":
                reason = f"did not answer within {self.start_timeout_s:g} s"
            else:
                reason = describe_failure(exc, self.server, self.secrets, _stderr_tail(errlog, offset))
            self._settle("failed" if self.state == "starting" else "stopped", reason, began)
        finally:
            self.session = None
            self.interrupt_calls(f"MCP server {self.server.name!r} went away: {self.reason or 'its connection closed'}")
            if errlog is not None:
                errlog.close()

    def _on_http_fault(self, error: Exception) -> None:
        """A POST that failed or whose response broke off (the server died mid-call): the SDK
        would leave that request waiting for ever; fail the calls in flight now."""
        reason = describe_failure(error, self.server, self.secrets)
        self.interrupt_calls(f"MCP server {self.server.name!r} went away during the call: its connection broke ({reason})")
        self.lost(f"its connection broke ({reason})")

    def _settle(self, state: State, reason: str, began: float) -> None:
        if self.start_s is None:
            self.start_s = time.monotonic() - began
        self.state, self.reason = state, reason
        self.settled.set()

    async def _initialize(self) -> None:
        await self.session.initialize()
        tools: list[McpToolInfo] = []
        cursor: str | None = None
        while True:
            listed = await self.session.list_tools(cursor) if cursor else await self.session.list_tools()
            for tool in listed.tools:
                hint = getattr(tool.annotations, "readOnlyHint", None) if tool.annotations is not None else None
                tools.append(
                    McpToolInfo(
                        server=self.server.name, name=tool.name, description=(tool.description or "").strip(),
                        input_schema=dict(tool.inputSchema or {"type": "object", "properties": {}}),
                        read_only=hint is True,
                    )
                )
            cursor = listed.nextCursor
            if not cursor or len(tools) > 1000:
                break
        self.tools = tuple(tools)

    async def _open_transport(self, stack: AsyncExitStack, errlog: IO[str] | None) -> tuple[Any, Any]:
        server = self.server
        if isinstance(server, StdioServer):
            import sys

            from mcp.client.stdio import StdioServerParameters, stdio_client

            params = StdioServerParameters(
                command=server.command, args=list(server.args), env=dict(server.env), cwd=server.cwd
            )
            read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog or sys.stderr))
            return read, write
        assert isinstance(server, HttpServer)
        import httpx
        from mcp.client.streamable_http import streamable_http_client

        from persona_runtime.mcp.watch import watched_transport

        # A loopback server is meant as it is: no proxy from the environment in between.
        client = httpx.AsyncClient(
            headers=dict(server.headers), timeout=httpx.Timeout(30.0, read=300.0), trust_env=not _loopback(server.url),
            transport=watched_transport(self._on_http_fault, trust_env=not _loopback(server.url)),
        )
        await stack.enter_async_context(client)
        read, write, _session_id = await stack.enter_async_context(streamable_http_client(server.url, http_client=client))
        return read, write

    def _open_errlog(self) -> tuple[IO[str] | None, int]:
        """The server's stderr goes to ``PERSONA_HOME/logs/mcp-NAME.log`` (never the terminal)."""
        if not isinstance(self.server, StdioServer):
            return None, 0
        import os

        if self.log_dir is None:
            return open(os.devnull, "w", encoding="utf-8"), 0  # noqa: SIM115 - closed in serve()
        try:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            path = self.log_dir / f"mcp-{self.server.name}.log"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            handle = os.fdopen(fd, "a", encoding="utf-8")
            return handle, handle.tell()
        except OSError:
            return open(os.devnull, "w", encoding="utf-8"), 0  # noqa: SIM115


def _loopback(url: str) -> bool:
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.")


def _stderr_tail(errlog: IO[str] | None, offset: int) -> str:
    """The last line the server wrote on stderr since it started (its own reason for exiting)."""
    name = getattr(errlog, "name", None)
    if errlog is None or not isinstance(name, str) or name == "/dev/null":
        return ""
    try:
        errlog.flush()
        with open(name, encoding="utf-8", errors="replace") as handle:
            handle.seek(offset)
            lines = [line.strip() for line in handle.read()[-4000:].splitlines() if line.strip()]
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for sub in exc.exceptions for leaf in _leaves(sub)]
    return [exc]


def describe_failure(exc: BaseException, server: McpServer, secrets: tuple[str, ...], stderr_tail: str = "") -> str:
    """One redacted line saying why a server could not start or went away."""
    leaves = [e for e in _leaves(exc) if not isinstance(e, asyncio.CancelledError)] or [exc]
    leaf = leaves[0]
    name = type(leaf).__name__
    if isinstance(leaf, FileNotFoundError) and isinstance(server, StdioServer):
        text = f"command not found: {server.command}"
    elif isinstance(leaf, PermissionError) and isinstance(server, StdioServer):
        text = f"cannot run {server.command}: permission denied"
    elif name in ("ConnectError", "ConnectTimeout"):
        text = f"cannot connect to {server.target}"
    elif name == "HTTPStatusError":
        code = getattr(getattr(leaf, "response", None), "status_code", "?")
        text = f"{server.target} answered HTTP {code}" + (" (check the headers)" if code in (401, 403) else "")
    else:
        message = str(leaf).strip().splitlines()[0] if str(leaf).strip() else name
        text = message if name == "McpError" else f"{name}: {message}"
        if "Connection closed" in message and isinstance(server, StdioServer):
            text = "the process exited"
    if stderr_tail and isinstance(server, StdioServer):
        text += f" (its last words: {stderr_tail[:200]})"
    return redact(text, secrets)[:300]
