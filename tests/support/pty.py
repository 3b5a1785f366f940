"""Running `persona` in a real pseudo-terminal (pexpect): its environment, the spawn, the screen."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pexpect

from tests.support.env import clean_env


def pty_env(home: Path, persona_vars: dict[str, str]) -> dict[str, str]:
    """The caller's environment minus any PERSONA_*, plus ``persona_vars``, for a colour terminal."""
    env = clean_env(home) | {
        "PERSONA_EMBEDDER": "hash",
        "TERM": "xterm-256color",
        "NO_PROXY": "127.0.0.1",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect does not answer cursor-position requests
    } | persona_vars
    env.pop("NO_COLOR", None)
    return env


def spawn_persona(args: list[str], env: dict[str, str], cwd: Path, screen: list[str], *, timeout: float = 60) -> pexpect.spawn:
    """``python -m persona_cli ARGS`` in a 40x120 pty; everything it writes is appended to ``screen``."""
    child = pexpect.spawn(
        sys.executable, ["-m", "persona_cli", *args], env=env, cwd=str(cwd), dimensions=(40, 120),
        encoding="utf-8", timeout=timeout,
        # poll(), not select(): select() cannot watch a descriptor above 1023, and a long in-process
        # test run holds more than that by the time the e2e tests start.
        use_poll=True,
    )
    child.logfile_read = ScreenCollector(screen)
    return child


class ScreenCollector:
    """A file-like sink for ``child.logfile_read``: appends every chunk to ``sink``."""

    def __init__(self, sink: list[str]) -> None:
        self.sink = sink

    def write(self, data: str) -> None:
        self.sink.append(data)

    def flush(self) -> None:
        pass


def server_vars(server: Any) -> dict[str, str]:
    """One model for every tier: gpt-4o-mini on the scripted server."""
    return {
        "PERSONA_PROVIDER": "openai", "PERSONA_MODEL": "gpt-4o-mini",
        "PERSONA_API_KEY": "sk-test-pty-0000", "PERSONA_BASE_URL": server.base_url,
    }


@contextmanager
def persona_in_pty(
    args: list[str], home: Path, cwd: Path, *, server: Any = None, timeout: float = 60
) -> Iterator[tuple[pexpect.spawn, list[str]]]:
    """``persona ARGS`` in a pty (on ``server``'s model when given); yields (child, screen).
    A timeout or an early exit fails with what was on the screen; the child is always closed."""
    screen: list[str] = []
    env = pty_env(home, server_vars(server) if server is not None else {})
    child = spawn_persona(args, env, cwd, screen, timeout=timeout)
    try:
        yield child, screen
    except (pexpect.TIMEOUT, pexpect.EOF) as exc:
        raise AssertionError(f"{type(exc).__name__}; screen so far:\n{''.join(screen)[-3000:]}") from None
    finally:
        child.close()
