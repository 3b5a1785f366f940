"""How a model reply reaches a console: :func:`answer_stream` picks the stream.

On a console that is piped, dumb or NO_COLOR the reply is written through as it comes
(:class:`PlainStream`); on a terminal it is rendered as markdown (:mod:`persona_cli.mdstream`).
Kept apart from mdstream so a piped reply's first byte does not wait for markdown-it, Rich's
Markdown and Pygments to import (~0.3-0.9 s measured on two busy cores).
"""

from __future__ import annotations

from asyncio import CancelledError
from types import TracebackType
from typing import TYPE_CHECKING, Any

from persona_cli.render import render_notice
from persona_cli.term import console_is_plain, sanitize

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.mdstream import MarkdownStream

__all__ = ["PlainStream", "answer_stream"]


def answer_stream(console: Console, **markdown_options: Any) -> PlainStream | MarkdownStream:
    """The stream for one reply on ``console`` (``markdown_options`` go to MarkdownStream)."""
    if console_is_plain(console):
        return PlainStream(console)
    from persona_cli.mdstream import MarkdownStream

    return MarkdownStream(console, **markdown_options)


class PlainStream:
    """The deltas as they come, sanitised: the model must not drive a terminal, even behind a
    pipe (`persona chat ... | tee out.txt` shows it on one). Newlines and tabs stay."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self._chunks: list[str] = []
        self._held_cr = ""  # a CR at the end of a delta: half of a CRLF split across two deltas
        self._finished = False

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def update(self, delta: str) -> None:
        if self._finished:
            raise RuntimeError("update() after finish()")
        if not delta:
            return
        self._chunks.append(delta)
        text, self._held_cr = self._held_cr + delta, ""
        if text.endswith("\r"):
            text, self._held_cr = text[:-1], "\r"
        self.console.file.write(sanitize(text))
        self.console.file.flush()

    def finish(self, *, interrupted: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        self.end_line()
        if interrupted:
            render_notice(self.console, "⏹ interrupted")

    def discard(self) -> None:
        """Abandon the partial reply: end its line; the next update starts over."""
        if not self._finished:
            self.end_line()
            self._chunks = []

    def end_line(self) -> None:
        if self._held_cr:
            self.console.file.write(sanitize(self._held_cr))
            self._held_cr = ""
        text = self.text
        if text and not text.endswith("\n"):
            self.console.file.write("\n")
            self.console.file.flush()

    def __enter__(self) -> PlainStream:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        interrupted = (KeyboardInterrupt, CancelledError)
        self.finish(interrupted=exc_type is not None and issubclass(exc_type, interrupted))
