"""llama-cpp-python's own OpenAI-compatible server (``python -m llama_cpp.server``, its
``[server]`` extra) on the bundled SmolLM2 GGUF, on 127.0.0.1, started and stopped by the test.

    with LlamaServer.start() as llama:
        env = llama.tier_env()          # PERSONA_MID_* pointing at it
        ...

The server is ready when ``GET /v1/models`` answers (a bounded poll; a server that exits or
never answers fails the test with its own log). It sends no usage in its streams.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from persona_runtime.local_model import bundled_model_path

__all__ = ["LLAMA_API_KEY", "LLAMA_MODEL", "LlamaServer"]

LLAMA_MODEL = "smollm2"  # the server's alias for the bundled GGUF
LLAMA_API_KEY = "sk-llama-local-0001"
READY_TIMEOUT_S = 120.0
N_CTX = 4096  # a persona's system message and tool specs fit, with room for the reply


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class LlamaServer:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @classmethod
    def start(cls, log_dir: Path, *, n_ctx: int = N_CTX) -> LlamaServer:
        port = free_port()
        log_path = log_dir / f"llama-server-{port}.log"
        command = [
            sys.executable, "-m", "llama_cpp.server",
            "--model", str(bundled_model_path()), "--model_alias", LLAMA_MODEL,
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", str(n_ctx),
            "--api_key", LLAMA_API_KEY, "--verbose", "False",
        ]
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        server = cls(process, port, log_path)
        try:
            server.wait_ready(READY_TIMEOUT_S)
        except BaseException:
            server.stop()
            raise
        return server

    def models(self) -> list[str] | None:
        """The served model ids, or None while the server does not answer."""
        request = urllib.request.Request(
            f"{self.base_url}/models", headers={"Authorization": f"Bearer {LLAMA_API_KEY}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:  # noqa: S310 - loopback only
                return [m["id"] for m in json.load(response)["data"]]
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            return None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited ({self.process.returncode}):\n{self.log()}")
            if self.models() is not None:
                return
            try:  # the poll interval: returns at once if the server exits meanwhile
                self.process.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                pass
        raise TimeoutError(f"llama_cpp.server did not answer /v1/models in {timeout:.0f} s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def tier_env(self, tier: str = "MID") -> dict[str, str]:
        """One tier on this server, through persona-core's openai backend."""
        return {
            f"PERSONA_{tier}_PROVIDER": "openai",
            f"PERSONA_{tier}_MODEL": LLAMA_MODEL,
            f"PERSONA_{tier}_API_KEY": LLAMA_API_KEY,
            f"PERSONA_{tier}_BASE_URL": self.base_url,
            f"PERSONA_{tier}_CONTEXT_WINDOW": str(N_CTX),  # the budgets fit the server's context
            "PERSONA_MAX_REPLY_TOKENS": "64",  # the least the engine allows: seconds per reply
            "PERSONA_REQUEST_TIMEOUT_S": "120",
        }

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
