"""MCP servers for tests: the test server (tests/support/mcp_server.py) over stdio or streamable
HTTP on 127.0.0.1, mcp.json files, and which server processes are still alive."""

from __future__ import annotations

import json
import os
import selectors
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.paths import REPO

MCP_SERVER_TIME = str(Path(sys.executable).parent / "mcp-server-time")


def stdio_entry(test_dir: Path, **env: str) -> dict[str, Any]:
    """An mcp.json entry that starts the test server over stdio, writing into ``test_dir``."""
    return {
        "command": sys.executable,
        "args": ["-m", "tests.support.mcp_server"],
        "env": {"MCP_TEST_DIR": str(test_dir), "PYTHONPATH": str(REPO), **env},
        "cwd": str(REPO),
    }


def write_config(path: Path, servers: dict[str, Any]) -> Path:
    path.write_text(json.dumps({"mcpServers": servers}), encoding="utf-8")
    return path


@contextmanager
def http_mcp_server(test_dir: Path, *, timeout: float = 60.0) -> Iterator[str]:
    """The test server over streamable HTTP on a free 127.0.0.1 port; yields its URL once the
    port is listening (the server prints it after ``listen``; bounded by ``timeout``)."""
    env = {**os.environ, "MCP_TEST_DIR": str(test_dir), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.support.mcp_server", "--http"], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    try:
        selector = selectors.DefaultSelector()
        selector.register(proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not selector.select(timeout):
            raise RuntimeError(f"the HTTP MCP test server printed no port within {timeout:g} s")
        port = int(proc.stdout.readline())  # type: ignore[union-attr]
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        proc.kill()
        proc.wait(10)


def server_pids(test_dir: Path) -> list[int]:
    """Every test-server process that started with ``test_dir`` (each writes ``pid-<pid>``)."""
    return sorted(int(p.name.split("-", 1)[1]) for p in test_dir.glob("pid-*"))


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    state = next((line.split()[1] for line in status.splitlines() if line.startswith("State:")), "?")
    return state not in ("Z", "X")


def wait_for(predicate: Any, timeout: float) -> bool:
    """Poll ``predicate`` until it holds or ``timeout`` passes (for effects in another process)."""
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def nora_persona(tmp_path: Path, tools: list[str]) -> Path:
    """A small persona (Nora, a note keeper) whose ``tools:`` are ``tools``."""
    path = tmp_path / "nora.yaml"
    path.write_text(
        "schema_version: '1.0'\npersona_id: nora\n"
        "identity: {name: Nora, role: Note keeper, background: Keeps notes for people.}\n"
        f"tools: {json.dumps(tools)}\n",
        encoding="utf-8",
    )
    return path
