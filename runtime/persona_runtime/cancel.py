"""CancelToken: ask a running chat turn or agent step to stop, from any thread or a signal handler.

The loop checks the token before each step, between stream deltas and around each tool
call, and it registers callbacks (:meth:`CancelToken.on_cancel`) that interrupt whatever
it is waiting on: a model stream that sends nothing, a tool that hangs, a question.
Callbacks run on the event loop that registered them (``call_soon_threadsafe``), so
``cancel()`` is safe from a signal handler or another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

__all__ = ["CancelToken"]


class CancelToken:
    def __init__(self) -> None:
        self._cancelled = False
        self._lock = threading.Lock()
        self._callbacks: dict[int, tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = {}
        self._next = 0

    @property
    def is_cancelled(self) -> bool:
        return self._cancelled

    def cancel(self) -> None:
        """Idempotent. Schedules every registered callback on its event loop."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            callbacks = list(self._callbacks.values())
            self._callbacks.clear()
        for loop, callback in callbacks:
            _schedule(loop, callback)

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` on the current event loop when cancelled (at once if already).

        Returns a function that unregisters it. Must be called from a running event loop.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if not self._cancelled:
                key = self._next
                self._next += 1
                self._callbacks[key] = (loop, callback)

                def remove() -> None:
                    with self._lock:
                        self._callbacks.pop(key, None)

                return remove
        _schedule(loop, callback)
        return lambda: None


def _schedule(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    try:
        loop.call_soon_threadsafe(callback)
    except RuntimeError:  # the loop is closed: nothing is waiting any more
        pass
