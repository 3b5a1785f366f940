"""While the person types, the local model reads their message's prompt ahead
(:func:`persona_runtime.read_ahead.read_ahead`), so Enter leaves little to read.

Each change to the prompt's text restarts a short timer; when typing pauses for ``pause``
seconds, the text so far is read ahead. A newer text, an emptied line or a slash command stops
the reading before within a few tokens, and so does sending (the turn takes the model over).
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["DRAFT_PAUSE_S", "DraftReader"]

DRAFT_PAUSE_S = 0.25  # a pause in typing: long enough not to start a read per keystroke


class DraftReader:
    """Feeds the prompt's text to read-ahead; ``changed`` is prompt-toolkit's on-text-changed."""

    def __init__(self, session: Any, ctx: Any, *, pause: float = DRAFT_PAUSE_S) -> None:
        self._session = session
        self._ctx = ctx  # the REPL's SlashContext: the conversation and tier of the next turn
        self._pause = pause
        self._generation = 0
        self._timer: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[int]] = set()

    @property
    def pending(self) -> bool:
        """A read is waiting for the pause, or running."""
        return self._timer is not None or bool(self._tasks)

    def changed(self, text: str) -> None:
        self.stop()
        # Only once memory and models are up: a draft never waits for them, or loads them.
        if not self._session.ready or not text.strip() or text.lstrip().startswith("/"):
            return
        self._timer = asyncio.get_running_loop().call_later(self._pause, self._start, text, self._generation)

    def stop(self) -> None:
        """Stop what is waiting or reading (before a turn, and at the end)."""
        self._generation += 1
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _start(self, text: str, generation: int) -> None:
        self._timer = None
        task = asyncio.ensure_future(self._read(text, generation))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _read(self, text: str, generation: int) -> int:
        from persona_runtime.read_ahead import read_ahead

        loop = await self._session.loop()  # built on first use; the parts it needs are loaded
        tier = None if self._ctx.tier == "auto" else self._ctx.tier
        return await read_ahead(loop, self._ctx.conversation, text, tier=tier, stop=lambda: self._generation != generation)

    def _done(self, task: asyncio.Task[int]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # only a head start: a fault here shows, if at all, in the turn itself
