"""on_own_thread: blocking work on a fresh thread, its outcome delivered to the awaiting task."""

from __future__ import annotations

import asyncio
import threading

import pytest

from persona_runtime.own_thread import on_own_thread


def test_the_result_comes_back_from_a_thread_of_its_own() -> None:
    async def main() -> tuple[str, str]:
        return await on_own_thread(lambda: ("done", threading.current_thread().name), name="worker-x")

    assert asyncio.run(main()) == ("done", "worker-x")


def test_an_exception_reaches_the_awaiting_task() -> None:
    def broken() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        asyncio.run(on_own_thread(broken, name="worker-y"))


def test_work_that_outlives_its_loop_ends_quietly(monkeypatch) -> None:
    # E.g. a read-ahead still in its last chunk when the REPL exits: nothing to print on stderr.
    faults: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: faults.append(args.exc_value))
    release, started = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        release.wait()
        return 1

    async def main() -> None:
        task = asyncio.ensure_future(on_own_thread(slow, name="worker-z"))
        await asyncio.to_thread(started.wait)
        task.cancel()

    asyncio.run(main())
    [worker] = [t for t in threading.enumerate() if t.name == "worker-z"]
    release.set()
    worker.join()
    assert faults == []
