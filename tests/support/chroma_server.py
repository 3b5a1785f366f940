"""A real Chroma server (``chroma run``) on 127.0.0.1, started and stopped by the tests.

    with ChromaServerProcess(tmp_path / "chroma") as srv:
        env["PERSONA_CHROMA_URL"] = srv.url
        srv.stop()      # the server is gone (a refused connection from now on)
        srv.start()     # the same path and port again

Readiness is Chroma's heartbeat (``GET /api/v2/heartbeat``), polled with a bounded timeout;
never a sleep standing in for it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

__all__ = ["ChromaServerProcess", "free_port"]

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _chroma_command() -> list[str]:
    exe = Path(sys.executable).with_name("chroma")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("chroma")
    if found is None:
        raise RuntimeError("the chroma command (from the chromadb package) is not installed")
    return [found]


class ChromaServerProcess:
    """``chroma run --path PATH --host 127.0.0.1 --port PORT``; ``start``/``stop`` keep path and port."""

    def __init__(self, path: Path, port: int | None = None) -> None:
        self.path = path
        self.port = port or free_port()
        self.log = path.with_name(path.name + ".log")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ChromaServerProcess:
        self.path.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as log:
            self._proc = subprocess.Popen(
                [*_chroma_command(), "run", "--path", str(self.path), "--host", "127.0.0.1", "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = START_TIMEOUT_S) -> None:
        """Poll the heartbeat until it answers (bounded); fail with the server's log otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                break
            if self.alive():
                return
            time.sleep(0.05)  # poll interval of a bounded readiness loop, not a synchronisation
        tail = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
        self.stop()
        raise RuntimeError(f"chroma run did not answer its heartbeat within {timeout_s}s:\n{tail}")

    def alive(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/api/v2/heartbeat", timeout=1) as resp:  # noqa: S310 - loopback
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        """Kill the server and wait for it (its port refuses connections afterwards)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.kill()
        proc.wait(timeout=30)

    def __enter__(self) -> ChromaServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
