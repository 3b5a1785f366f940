"""Ctrl-C while something runs: one SIGINT handler for the whole chat session.

At the prompt the terminal is in raw mode and Ctrl-C is a key that prompt-toolkit handles
(the prompt is read with ``handle_sigint=False`` so it leaves this handler alone). Everywhere
else Ctrl-C is SIGINT. A handler installed per turn leaves windows (just before a turn starts,
just after it ends) where SIGINT fell through to asyncio's default and ended the whole session;
the interrupt soak test (``tests/test_interrupt_soak.py``) hit them. So one handler lives as long
as the session: it cancels the foreground task if there is one, and otherwise only remembers
that Ctrl-C was pressed (``pending``) for callers that care (piped mode stops; the REPL doesn't).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

T = TypeVar("T")


class Foreground:
    """Routes SIGINT to the task passed to :meth:`run`. Use as ``with Foreground() as fg:``
    inside a running event loop."""

    def __init__(self) -> None:
        self.pending = False
        self._task: asyncio.Future[Any] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Foreground:
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        try:
            # add_signal_handler (not signal.signal): it also wakes the loop when the signal
            # lands on another thread (the model or tool worker) while the loop sleeps.
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
            self._loop = loop
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            self._loop = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            import signal

            self._loop.remove_signal_handler(signal.SIGINT)
            self._loop = None

    def interrupt(self) -> None:
        """What SIGINT does: cancel the foreground task, or remember the press."""
        task = self._task
        if task is not None and not task.done():
            task.cancel()
        else:
            self.pending = True

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """Await ``work`` as the foreground task; Ctrl-C cancels it (CancelledError here)."""
        import asyncio

        task = asyncio.ensure_future(work)
        self._task = task
        self.pending = False
        try:
            return await task
        finally:
            self._task = None
