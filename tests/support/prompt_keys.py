"""Driving the chat prompt with keystrokes: prompt-toolkit pipe input + dummy output."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prompt_toolkit.application import create_app_session
from prompt_toolkit.input import create_pipe_input
from prompt_toolkit.output import DummyOutput

from persona_cli.repl import ChatPrompt

ENTER = "\r"
ALT_ENTER = "\x1b\r"
CTRL_J = "\n"
CTRL_C = "\x03"
CTRL_D = "\x04"
PASTE_START, PASTE_END = "\x1b[200~", "\x1b[201~"


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read_all(
    keys: list[str], *, multiline: bool = False, clock=None, max_reads: int = 10, on_text: Callable[[str], None] | None = None
) -> list[str | None]:
    """Feed ``keys`` (one string per chunk) and read until the prompt says exit (None)."""
    results: list[str | None] = []

    async def main() -> None:
        with create_pipe_input() as pipe, create_app_session(input=pipe, output=DummyOutput()):
            prompt = ChatPrompt(
                history_path=None, multiline=multiline, input=pipe, output=DummyOutput(), clock=clock or FakeClock(), on_text=on_text
            )
            for key in keys:
                pipe.send_text(key)
            for _ in range(max_reads):
                text = await prompt.read()
                results.append(text)
                if text is None:
                    return

    asyncio.run(asyncio.wait_for(main(), timeout=20))
    return results
