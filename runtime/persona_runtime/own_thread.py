"""Awaiting blocking work on a fresh thread of its own, not the event loop's shared executor.

Callers say why ``asyncio.to_thread`` will not do: a tool that may never return must not take an
executor slot (``tooling``); llama.cpp must not run on a thread that lives on (``read_ahead``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["on_own_thread"]

T = TypeVar("T")


async def on_own_thread(work: Callable[[], T], *, name: str) -> T:
    """``work()`` on a new daemon thread that ends with it (daemon: one that never returns cannot
    hold up exit); its result or exception is delivered to the awaiting task. If that task stopped
    waiting (cancelled, timed out) or its loop closed meanwhile, the outcome is dropped."""
    loop = asyncio.get_running_loop()
    outcome: asyncio.Future[T] = loop.create_future()

    def deliver(result: T | None, error: BaseException | None) -> None:
        if outcome.done():
            return
        if error is not None:
            outcome.set_exception(error)
        else:
            outcome.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result: T | None = work()
            error: BaseException | None = None
        except BaseException as exc:  # noqa: BLE001 - delivered to the awaiting task
            result, error = None, exc
        try:
            loop.call_soon_threadsafe(deliver, result, error)
        except RuntimeError:  # the loop closed while the work ran
            pass

    threading.Thread(target=run, name=name, daemon=True).start()
    return await outcome
