"""Cancellation around model streams and other awaits, driven by a :class:`CancelToken`.

With a token, a backend's stream is iterated in a task of its own (``StreamPump``), so a
stream that sends nothing can still be cancelled, and the backend's generator is started,
iterated and closed in one task, as HTTP clients expect. Without one there is nothing to
watch for: the stream is read in the consumer's task, with no queue hop per token, and
cancelling that task is how it stops.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from persona_runtime.cancel import CancelToken

__all__ = ["Cancelled", "StreamPump", "cancellable"]

T = TypeVar("T")


class Cancelled(Exception):
    """The cancel token fired while we waited."""


async def cancellable(awaitable: Awaitable[T], cancel: CancelToken | None) -> T:
    """Await ``awaitable`` in its own task; the cancel token cancels that task (``Cancelled``)."""
    if cancel is None:
        return await awaitable
    if cancel.is_cancelled:
        _close(awaitable)
        raise Cancelled
    task = asyncio.ensure_future(awaitable)
    remove = cancel.on_cancel(task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if cancel.is_cancelled and (current is None or not current.cancelling()):
            raise Cancelled from None
        raise
    finally:
        remove()
        if not task.done():
            task.cancel()


class StreamPump:
    """``async with StreamPump(open_stream, cancel) as pump: async for chunk in pump``."""

    _END = object()
    _CANCEL = object()

    def __init__(self, open_stream: Callable[[], AsyncIterator[Any]], cancel: CancelToken | None) -> None:
        self._open = open_stream
        self._cancel = cancel
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._remove: Callable[[], None] = lambda: None
        self._direct: Any = None

    async def __aenter__(self) -> StreamPump:
        if self._cancel is None:
            self._direct = self._open().__aiter__()
            return self
        if self._cancel.is_cancelled:
            raise Cancelled
        self._task = asyncio.ensure_future(self._run())
        self._remove = self._cancel.on_cancel(lambda: self._queue.put_nowait(self._CANCEL))
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._direct is not None:
            closer = getattr(self._direct, "aclose", None)
            if closer is not None:
                await closer()
            return
        self._remove()
        task = self._task
        if task is not None and not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            async for chunk in self._open():
                self._queue.put_nowait(chunk)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            self._queue.put_nowait(_Failure(exc))
        else:
            self._queue.put_nowait(self._END)

    def __aiter__(self) -> StreamPump:
        return self

    async def __anext__(self) -> Any:
        if self._direct is not None:
            return await self._direct.__anext__()
        if self._cancel is not None and self._cancel.is_cancelled:
            raise Cancelled
        item = await self._queue.get()
        if item is self._CANCEL:
            raise Cancelled
        if item is self._END:
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            raise item.error
        return item


@dataclass
class _Failure:
    error: BaseException


def _close(awaitable: Any) -> None:
    closer = getattr(awaitable, "close", None)
    if closer is not None:
        closer()
