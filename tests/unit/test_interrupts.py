"""Foreground: the session-wide SIGINT handler (a real signal, sent to ourselves)."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from persona_cli.interrupts import Foreground


def test_sigint_cancels_the_foreground_task_and_is_only_remembered_between_tasks() -> None:
    async def main() -> None:
        with Foreground() as fg:
            started = asyncio.Event()

            async def work() -> None:
                started.set()
                await asyncio.Event().wait()  # forever, unless cancelled

            async def press_when_started() -> None:
                await started.wait()
                os.kill(os.getpid(), signal.SIGINT)

            presser = asyncio.ensure_future(press_when_started())
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(fg.run(work()), 30)
            await presser
            assert not fg.pending

            # Between tasks: no KeyboardInterrupt, no cancelled session; just remembered.
            os.kill(os.getpid(), signal.SIGINT)
            await asyncio.wait_for(_until(lambda: fg.pending), 30)
            assert await fg.run(_value(7)) == 7  # the next task runs normally and clears it
            assert not fg.pending
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler removed on exit

    asyncio.run(main())


def test_with_a_token_the_first_sigint_stops_the_work_cleanly_and_the_second_cancels_it() -> None:
    from persona_runtime.cancel import CancelToken

    async def main() -> None:
        with Foreground() as fg:
            token = CancelToken()
            stopping = asyncio.Event()

            async def work() -> str:
                token.on_cancel(stopping.set)
                os.kill(os.getpid(), signal.SIGINT)
                await stopping.wait()  # the token fired; the work is still running (saving, say)
                os.kill(os.getpid(), signal.SIGINT)
                await asyncio.Event().wait()  # forever, unless cancelled
                return "not reached"

            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(fg.run(work(), token=token), 30)
            assert token.is_cancelled and not fg.pending

    asyncio.run(main())


async def _value(v: int) -> int:
    return v


async def _until(predicate) -> None:
    while not predicate():
        await asyncio.sleep(0)  # yields to the loop so the signal's callback can run


class _CancelledBeforeItStarts(Foreground):
    """A Ctrl-C that lands after Enter but before the turn's task has run its first step."""

    async def run(self, work):  # type: ignore[override]
        task = asyncio.ensure_future(work)
        task.cancel()
        return await task


def test_a_turn_cancelled_before_it_starts_still_keeps_the_message() -> None:
    from persona.schema.conversation import Conversation
    from persona.schema.persona import Persona

    from persona_cli.commands.chat_turn import run_turn as _run_turn
    from persona_runtime.loop import ConversationLoop
    from persona_runtime.testing import ScriptedBackend
    from persona_runtime.tier import TierConfig, TierRegistry
    from persona_runtime.turnlog import MemoryTurnLogWriter

    backend = ScriptedBackend(["never sent"])
    log = MemoryTurnLogWriter()
    persona = Persona.model_validate({"persona_id": "p", "identity": {"name": "P", "role": "r", "background": "b"}})
    loop = ConversationLoop(persona=persona, tiers=TierRegistry([TierConfig.from_backend("mid", backend)]), turn_log=log)
    conversation = Conversation(conversation_id="c", persona_id="p")

    class View:
        interrupted_calls = 0

        def handle(self, event) -> None:
            raise AssertionError(f"no event expected, got {event}")

        def interrupted(self) -> None:
            View.interrupted_calls += 1

    async def main() -> str:
        with _CancelledBeforeItStarts() as fg:
            return await _run_turn(loop, conversation, "hello there", "mid", View(), None, fg)

    assert asyncio.run(main()) == "interrupted"
    assert View.interrupted_calls == 1 and backend.calls == []
    assert [(m.role, m.content, m.metadata["status"]) for m in conversation.messages] == [
        ("user", "hello there", "interrupted"), ("assistant", "", "interrupted"),
    ]
    assert [r.status for r in log.logs] == ["interrupted"]
