"""One chat turn consumed as the foreground task, shared by the REPL, piped lines and one-shot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from persona_cli.interrupts import Foreground
    from persona_cli.turn_view import SessionTotals


def not_utf8(text: str) -> bool:
    """Bytes that were not UTF-8 reach us as lone surrogates (prompt-toolkit decodes with
    surrogateescape); nothing downstream could encode them."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


async def run_turn(
    loop: Any, conversation: Any, text: str, tier: str, view: Any, approve: Any, foreground: Foreground,
    totals: SessionTotals | None = None,
) -> str:
    """Consume one turn as the foreground task (Ctrl-C cancels it). Returns the turn status."""
    import asyncio

    from persona_runtime.events import TurnFinished

    status = "error"
    began = False

    async def consume() -> None:
        nonlocal status, began
        began = True  # from here on, turn() records its own interruption
        async for event in loop.turn(conversation, text, tier=None if tier == "auto" else tier, approve=approve):
            view.handle(event)
            if isinstance(event, TurnFinished):
                status = event.status
                if totals is not None:
                    totals.add(event)

    try:
        await foreground.run(consume())
    except asyncio.CancelledError:
        if not began:  # cancelled before its first step: turn() never ran, so keep the message here
            loop.record_interrupted(conversation, text)
        view.interrupted()
        status = "interrupted"
        if being_cancelled():
            raise
    finally:
        report_write_failures(loop, view)
    return status


def report_write_failures(loop: Any, view: Any) -> None:
    from persona_cli.render import render_notice

    for problem in loop.events.take_failures():
        render_notice(view.info, f"✗ the turn log or conversation file could not be written ({problem}); the chat goes on")


def being_cancelled() -> bool:
    """True when the current task itself is being cancelled (not just the foreground work it awaited)."""
    import asyncio

    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
