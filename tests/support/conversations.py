"""Stored conversations in tests: run `persona` on the scripted server, read the files back."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.env import clean_env
from tests.support.paths import PERSONAS
from tests.support.pty import server_vars

ASTRID = str(PERSONAS / "astrid.yaml")


def persona_env(server: Any, home: Path) -> dict[str, str]:
    return clean_env(home, PERSONA_EMBEDDER="hash", NO_PROXY="127.0.0.1", PERSONA_REQUEST_TIMEOUT_S="10", **server_vars(server))


def persona(server: Any, home: Path, *args: str, stdin: str | None = "") -> subprocess.CompletedProcess[str]:
    """``persona ARGS`` as a real process on ``server``'s model, PERSONA_HOME at ``home``."""
    return subprocess.run(
        [sys.executable, "-m", "persona_cli", *args], input=stdin, capture_output=True, text=True,
        env=persona_env(server, home), cwd=home, timeout=120,
    )


def conversation_files(home: Path, persona_id: str = "astrid") -> list[Path]:
    return sorted((home / "conversations" / persona_id).glob("*.jsonl"))


def history_of(request: Any) -> list[tuple[str, str]]:
    """(role, content) of every message between the system message and the new user message."""
    return [(m["role"], m["content"]) for m in request.body["messages"][1:-1]]
