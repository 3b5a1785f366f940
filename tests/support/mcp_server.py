"""An MCP server for tests, on the `mcp` SDK (FastMCP), over stdio or streamable HTTP on 127.0.0.1.

    python -m tests.support.mcp_server            # stdio
    python -m tests.support.mcp_server --http     # streamable HTTP on a free port; prints the port first

Everything it writes goes to the directory in ``MCP_TEST_DIR``: ``pid-<pid>`` when it starts
(so a test can check that no server outlives ``persona``), the notes ``write_note`` writes,
``hang-started`` / ``hang-cancelled`` around the ``hang`` tool.

With ``MCP_TEST_GATE`` (a FIFO) it waits for a writer before it starts: a slow server on cue.

Tools: ``write_note`` (writes; no read-only hint, so it asks), ``read_note`` (read-only),
``hang`` (never returns), ``fail`` (an error result), ``die`` (the process kills itself mid-call),
``picture`` (text and an image), ``env_value`` (read-only; returns one of its environment variables).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

from mcp.server.fastmcp import FastMCP, Image
from mcp.types import ToolAnnotations

#: A 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
)

mcp = FastMCP("persona-test", log_level="WARNING")


def _dir() -> Path:
    path = Path(os.environ["MCP_TEST_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    return path


@mcp.tool(description="Write a note to a file.")
def write_note(name: str, text: str) -> str:
    (_dir() / f"note-{name}").write_text(text, encoding="utf-8")
    return f"saved note {name} ({len(text)} characters)"


@mcp.tool(description="Read a note.", annotations=ToolAnnotations(readOnlyHint=True))
def read_note(name: str) -> str:
    path = _dir() / f"note-{name}"
    return path.read_text(encoding="utf-8") if path.exists() else f"no note named {name}"


@mcp.tool(description="Wait for something that never comes.", annotations=ToolAnnotations(readOnlyHint=True))
async def hang() -> str:
    (_dir() / "hang-started").write_text(str(os.getpid()))
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        (_dir() / "hang-cancelled").write_text("cancelled by the client")
        raise
    return "unreachable"


@mcp.tool(description="Always fails.", annotations=ToolAnnotations(readOnlyHint=True))
def fail(reason: str = "the disk is on fire") -> str:
    raise ValueError(f"cannot do that: {reason}")


@mcp.tool(description="The server process dies during this call.", annotations=ToolAnnotations(readOnlyHint=True))
def die() -> str:
    os.kill(os.getpid(), signal.SIGKILL)
    return "unreachable"


@mcp.tool(description="A caption and a tiny image.", annotations=ToolAnnotations(readOnlyHint=True))
def picture() -> list:
    return ["a red dot", Image(data=PNG, format="png")]


@mcp.tool(description="One of the server's environment variables.", annotations=ToolAnnotations(readOnlyHint=True))
def env_value(name: str) -> str:
    return os.environ.get(name, "(unset)")


def _serve_http() -> None:
    import socket

    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)  # connections wait in the backlog until uvicorn accepts them
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(mcp.streamable_http_app(), log_level="warning", lifespan="on")
    uvicorn.Server(config).run(sockets=[sock])


def main() -> None:
    (_dir() / f"pid-{os.getpid()}").write_text(" ".join(sys.argv))
    gate = os.environ.get("MCP_TEST_GATE")
    if gate:  # a slow server: it starts only once the test writes to this FIFO
        with open(gate, encoding="utf-8") as fifo:
            fifo.read()
    if "--http" in sys.argv:
        _serve_http()
    else:
        mcp.run("stdio")


if __name__ == "__main__":
    main()
