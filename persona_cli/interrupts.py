"""Ctrl-C while something runs: one SIGINT handler for a whole chat session or agent run,
and the one way both wait for the background load.

At the prompt the terminal is in raw mode and Ctrl-C is a key that prompt-toolkit handles
(the prompt is read with ``handle_sigint=False`` so it leaves this handler alone). Everywhere
else Ctrl-C is SIGINT. A handler installed per turn leaves windows (just before a turn starts,
just after it ends) where SIGINT fell through to asyncio's default and ended the whole session;
the interrupt soak test (``tests/e2e/test_interrupt_soak.py``) hit them. So one handler lives as long
as the session: it cancels the foreground task if there is one, and otherwise only remembers
that Ctrl-C was pressed (``pending``) for callers that care (piped mode stops; the REPL doesn't).

Work that can stop cleanly is run with a ``CancelToken`` (an agent run): the first Ctrl-C fires
the token, so the work ends and saves itself; a second one cancels the task outright.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import asyncio

    from rich.console import Console

    from persona_runtime.cancel import CancelToken

T = TypeVar("T")


class Foreground:
    """Routes SIGINT to the task passed to :meth:`run`. Use as ``with Foreground() as fg:``
    inside a running event loop.

    SIGTERM and SIGHUP (a closed terminal) stop the session: the work in hand ends as a Ctrl-C
    would end it (the partial turn kept and logged as interrupted), a prompt waiting for input
    returns as at Ctrl-D (so the terminal is restored), and ``stopped_by`` names the signal; the
    command then exits with 128 + its number (143, 129)."""

    def __init__(self) -> None:
        self.pending = False
        self.stopped_by: int | None = None
        self._task: asyncio.Future[Any] | None = None
        self._token: CancelToken | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __enter__(self) -> Foreground:
        import asyncio
        import signal

        loop = asyncio.get_running_loop()
        try:
            # add_signal_handler (not signal.signal): it also wakes the loop when the signal
            # lands on another thread (the model or tool worker) while the loop sleeps.
            loop.add_signal_handler(signal.SIGINT, self.interrupt)
            for signum in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(signum, self.stop, signum)
            self._loop = loop
        except (NotImplementedError, RuntimeError):  # not the main thread, or no signals here
            self._loop = None
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None:
            import signal

            for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                self._loop.remove_signal_handler(signum)
            self._loop = None

    def interrupt(self) -> None:
        """What SIGINT does: stop the foreground work (its token first, if it has one), or
        remember the press."""
        task = self._task
        if task is None or task.done():
            self.pending = True
        elif self._token is not None and not self._token.is_cancelled:
            self._token.cancel()
        else:
            task.cancel()

    def stop(self, signum: int) -> None:
        """What SIGTERM and SIGHUP do (see the class docstring)."""
        self.stopped_by = signum
        from prompt_toolkit.application.current import get_app_or_none

        app = get_app_or_none()
        if app is not None and app.is_running and not app.future.done():
            app.exit(exception=EOFError())
        task = self._task
        if task is not None and not task.done():
            if self._token is not None and not self._token.is_cancelled:
                self._token.cancel()
            else:
                task.cancel()

    def exit_code(self, otherwise: int) -> int:
        """128 + the signal that stopped the session, else ``otherwise``."""
        return 128 + self.stopped_by if self.stopped_by is not None else otherwise

    async def run(self, work: Coroutine[Any, Any, T], *, token: CancelToken | None = None) -> T:
        """Await ``work`` as the foreground task; Ctrl-C fires ``token`` when given, and
        otherwise (or the second time) cancels the task (CancelledError here)."""
        import asyncio

        task = asyncio.ensure_future(work)
        self._task, self._token = task, token
        self.pending = False
        try:
            return await task
        finally:
            self._task = self._token = None


async def await_loading(work: Coroutine[Any, Any, T], info: Console, message: str) -> T:
    """Await the session's background load; say ``message`` if it takes a moment."""
    import asyncio

    from persona_cli.render import render_notice

    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=0.3)
    if not done:
        render_notice(info, message)
    return await task
