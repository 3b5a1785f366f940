"""McpHub: every MCP server of a session, connected from one background event loop on its own thread.

    hub = McpHub(config.servers, secrets=config.secrets, log_dir=paths.logs)
    hub.start()                                   # returns at once; servers connect in the background
    await hub.wait_started(5.0)                   # bounded: a slow server never holds anyone up
    result = await hub.call("time", "get_current_time", {"timezone": "UTC"})   # from any event loop
    await hub.aclose()                            # every server stopped, every child process gone

Each server lives in one task of the hub's loop (:class:`~persona_runtime.mcp.connection.Connection`),
because the SDK's transports are anyio task groups that must be entered and left by the same task.
Calls are submitted thread-safely and awaited from the caller's loop; cancelling the await (a
timeout, Ctrl-C) cancels the request and tells the server (``notifications/cancelled``).
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from persona_runtime.mcp.config import McpServer
from persona_runtime.mcp.connection import Connection, McpToolInfo, ServerStatus
from persona_runtime.secrets import redact

__all__ = ["McpHub", "McpUnavailable"]

#: How long closing waits for the servers (the SDK gives a child 2 s after stdin closes, then 2 s after SIGTERM).
CLOSE_TIMEOUT_S = 8.0


class McpUnavailable(Exception):
    """The server is not running (it failed to start, stopped, or went away during the call)."""


class McpHub:
    def __init__(
        self,
        servers: Sequence[McpServer],
        *,
        secrets: tuple[str, ...] = (),
        log_dir: Path | None = None,
        start_timeout_s: float = 30.0,
    ) -> None:
        self.servers = tuple(servers)
        self.secrets = secrets
        self.log_dir = log_dir
        self.start_timeout_s = start_timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._connections: dict[str, Connection] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = threading.Lock()
        self._closed = False
        self.started_at: float | None = None

    # -- start -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start connecting to every server on the hub's thread; returns at once. Idempotent."""
        with self._lock:
            if self._thread is not None or self._closed:
                return
            self.started_at = time.monotonic()
            loop = asyncio.new_event_loop()
            # The loop's first callback creates every connection, so anything submitted later
            # (calls, waits, close) finds them all.
            loop.call_soon(self._open_all)
            self._loop = loop
            self._thread = threading.Thread(target=self._run, args=(loop,), name="persona-mcp", daemon=True)
            self._thread.start()
        atexit.register(self.close, 3.0)

    def _run(self, loop: asyncio.AbstractEventLoop) -> None:
        _quiet_sdk_logging(self.log_dir)
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def _open_all(self) -> None:
        loop = asyncio.get_running_loop()
        for server in self.servers:
            connection = Connection(server, self.secrets, self.log_dir, self.start_timeout_s)
            self._connections[server.name] = connection
            self._tasks.append(loop.create_task(connection.serve(), name=f"mcp-{server.name}"))

    @property
    def started(self) -> bool:
        return self._thread is not None

    # -- state -----------------------------------------------------------------------------

    def status(self) -> list[ServerStatus]:
        """Every server's state, in configuration order (``starting`` before the hub runs)."""
        out = []
        for server in self.servers:
            connection = self._connections.get(server.name)
            if connection is None:
                out.append(ServerStatus(server.name, server.transport, redact(server.target, self.secrets), "starting"))
            else:
                out.append(connection.status())
        return out

    def tools(self) -> list[McpToolInfo]:
        """The tools of every server that is ready, in configuration order."""
        return [tool for status in self.status() if status.state == "ready" for tool in status.tools]

    def wait(self, timeout: float | None) -> bool:
        """Block until every server is ready, failed or stopped, at most ``timeout`` seconds.
        True when none is still starting (or the hub is not running)."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._settled(), self._running_loop())
        except RuntimeError:
            return True
        try:
            future.result(timeout)
        except TimeoutError:
            future.cancel()
            return False
        except Exception:  # noqa: BLE001 - the loop closed meanwhile
            return True
        return True

    async def wait_started(self, timeout: float | None) -> bool:
        """:meth:`wait` from an event loop: it blocks nothing, and cancelling it stops the wait."""
        try:
            future = asyncio.run_coroutine_threadsafe(self._settled(), self._running_loop())
        except RuntimeError:
            return True
        try:
            await asyncio.wait_for(asyncio.wrap_future(future), timeout)
        except TimeoutError:
            return False
        except Exception:  # noqa: BLE001 - the loop closed meanwhile
            return True
        return True

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            raise RuntimeError("the MCP hub is not running")
        return loop

    async def _settled(self) -> None:
        await asyncio.gather(*(c.settled.wait() for c in self._connections.values()))

    # -- calls -----------------------------------------------------------------------------

    async def call(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        """Run ``tool`` on ``server`` (from any event loop); returns the SDK's ``CallToolResult``.

        Raises :class:`McpUnavailable` when the server is not running or goes away, the SDK's
        ``McpError`` when the server answers with an error. Cancelling the await cancels the call.
        """
        loop = self._loop
        if loop is None or loop.is_closed() or self._closed:
            raise McpUnavailable(f"MCP server {server!r} is not running")
        future: Future[Any] = asyncio.run_coroutine_threadsafe(self._call(server, tool, arguments), loop)
        try:
            return await asyncio.wrap_future(future)
        finally:
            future.cancel()  # no-op when done; when our await was cancelled, cancels the call too

    async def _call(self, server: str, tool: str, arguments: dict[str, Any]) -> Any:
        connection = self._connections.get(server)
        session = connection.session if connection is not None else None
        if connection is None or session is None or connection.state != "ready":
            why = connection.reason if connection is not None and connection.reason else "it is not running"
            if connection is not None and connection.state == "starting":
                why = "it is still starting"
            raise McpUnavailable(f"MCP server {server!r} cannot take calls: {why}")
        loop = asyncio.get_running_loop()
        interrupted: asyncio.Future[str] = loop.create_future()
        connection.inflight.add(interrupted)
        # The SDK numbers requests itself and assigns the number before its first await, so the
        # number to cancel is the one it holds now (read defensively: it is the SDK's attribute).
        request_id = getattr(session, "_request_id", None)
        request = loop.create_task(session.call_tool(tool, arguments))
        try:
            await asyncio.wait({request, interrupted}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            connection.inflight.discard(interrupted)
            if not request.done():
                request.cancel()
                if isinstance(request_id, int) and connection.session is session:
                    loop.create_task(_tell_cancelled(session, request_id))
        if not request.done():
            raise McpUnavailable(interrupted.result())
        error = request.exception()
        if error is not None and _connection_lost(error):
            connection.lost("its connection closed (the server exited or crashed)")
            raise McpUnavailable(f"MCP server {server!r} went away during the call: its connection closed")
        return request.result()

    # -- close -----------------------------------------------------------------------------

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop every server (stdio children exit or are killed) and the hub's thread. Blocking,
        idempotent, safe from any thread but the hub's own."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None:
            return
        atexit.unregister(self.close)  # else every closed hub stays referenced until exit
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(timeout)
            except Exception:  # noqa: BLE001, S110 - closing: nothing left to tell anyone
                pass
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass
        thread.join(timeout)

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    async def _stop_all(self) -> None:
        for connection in self._connections.values():
            connection.stop.set()
        # A connection still starting is cancelled (its transport kills the child); a ready one
        # leaves in order: stdin closed, then the SDK's SIGTERM/SIGKILL if the child lingers.
        for task, connection in zip(self._tasks, self._connections.values(), strict=True):
            if connection.state == "starting":
                task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _quiet_sdk_logging(log_dir: Path | None) -> None:
    """The SDK logs transport faults with tracebacks; they go to ``logs/mcp.log``, never the terminal
    (what matters reaches the person as a server status or a tool error)."""
    import logging

    logger = logging.getLogger("mcp")
    if logger.handlers:
        return
    logger.propagate = False
    handler: logging.Handler = logging.NullHandler()
    if log_dir is not None:
        try:
            import os

            log_dir.mkdir(parents=True, exist_ok=True)
            path = log_dir / "mcp.log"
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
            handler = logging.FileHandler(path, encoding="utf-8")
            handler.setFormatter(_RedactingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        except OSError:
            pass
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)


class _RedactingFormatter(__import__("logging").Formatter):
    def format(self, record: Any) -> str:
        from persona_runtime.secrets import redact

        return redact(super().format(record))


def _connection_lost(error: BaseException) -> bool:
    """The SDK's ways of saying the server is gone: "Connection closed", or a closed stream."""
    if type(error).__name__ == "McpError":
        return "Connection closed" in str(error)
    return type(error).__name__ in ("ClosedResourceError", "BrokenResourceError", "EndOfStream", "BrokenPipeError")


async def _tell_cancelled(session: Any, request_id: int) -> None:
    """``notifications/cancelled``: the server stops working on a call we gave up on."""
    from mcp import types

    try:
        notification = types.ClientNotification(
            types.CancelledNotification(params=types.CancelledNotificationParams(requestId=request_id, reason="timed out or cancelled"))
        )
        await asyncio.wait_for(session.send_notification(notification), timeout=2.0)
    except Exception:  # noqa: BLE001, S110 - the server may be gone already
        pass

