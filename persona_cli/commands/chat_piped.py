"""`persona chat` without a prompt: one reply per piped line, or one-shot (a MESSAGE argument,
with piped stdin attached as context). stdout carries only the replies; notices go to stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from persona_cli import exit_codes
from persona_cli.commands.chat_turn import being_cancelled, not_utf8, run_turn
from persona_cli.exit_codes import USAGE, CliError

if TYPE_CHECKING:
    from rich.console import Console

    from persona_runtime.session import Session

STDIN_OPEN = "<stdin>"
STDIN_CLOSE = "</stdin>"


def run_piped(session: Session, *, tier: str, auto_approve: bool, conversation: Any = None) -> int:
    """Each non-blank stdin line is a turn of its own (in ``conversation``, or a new one)."""
    out, info = _consoles(session)
    messages = piped_lines(sys.stdin.buffer)
    if not messages:
        from persona_cli.render import render_notice

        render_notice(info, "no input on stdin; nothing to do")
        return exit_codes.OK
    import asyncio

    return asyncio.run(_piped_turns(session, messages, tier, auto_approve, out, info, conversation))


def run_one_shot(session: Session, message: str, *, tier: str, auto_approve: bool, conversation: Any = None) -> int:
    """One message (plus piped stdin, attached as context), one reply, then exit."""
    if not message.strip():
        raise CliError("MESSAGE is empty; give the message to send, e.g. persona chat P \"Hello\"", USAGE)
    if not sys.stdin.isatty():
        message = attach_stdin(message, sys.stdin.buffer.read())
    out, info = _consoles(session)
    import asyncio

    return asyncio.run(_piped_turns(session, [(0, message)], tier, auto_approve, out, info, conversation))


def attach_stdin(message: str, data: bytes) -> str:
    """The message, then stdin inside clear delimiters, as one user message (one request)."""
    try:
        context = data.decode("utf-8")
    except UnicodeDecodeError:
        raise CliError("stdin is not UTF-8 text; it was not sent", USAGE) from None
    if not context.strip():
        return message
    return f"{message}\n\n{STDIN_OPEN}\n{context.rstrip()}\n{STDIN_CLOSE}"


def piped_lines(stream: Any) -> list[tuple[int, str | None]]:
    """(line number, text) per non-blank line; text is None for a line that is not UTF-8, which
    fails that turn only, with one line saying which."""
    lines: list[tuple[int, str | None]] = []
    for number, raw in enumerate(stream, start=1):
        try:
            text = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            lines.append((number, None))
            continue
        if text.strip():
            lines.append((number, text))
    return lines


def _consoles(session: Session) -> tuple[Console, Console]:
    from persona_cli.console import make_consoles, startup_lines
    from persona_cli.render import render_notice

    out, info = make_consoles(info_to_stderr=True)
    for line in startup_lines(session):
        render_notice(info, line)
    return out, info


async def _piped_turns(
    session: Session, messages: list[tuple[int, str | None]], tier: str, auto_approve: bool, out: Console, info: Console,
    conversation: Any,
) -> int:
    import asyncio

    from persona_cli.approval import make_approver
    from persona_cli.interrupts import Foreground
    from persona_cli.render import render_notice
    from persona_cli.turn_view import TurnView

    conversation = conversation if conversation is not None else session.new_conversation()
    failed = 0
    approve = make_approver(auto_approve=auto_approve, interactive=False, info=info)
    with Foreground() as foreground:
        try:
            loop = await foreground.run(session.loop())
            for notice in session.take_notices():
                render_notice(info, f"⚠ {notice}")
            for number, text in messages:
                if foreground.pending:  # Ctrl-C between two turns stops the rest too
                    return exit_codes.INTERRUPTED
                if text is None or not_utf8(text):
                    render_notice(info, f"✗ line {number} of the input is not UTF-8 text; it was not sent")
                    failed += 1
                    continue
                view = TurnView(out=out, info=info, can_retry=False, show_recall=session.settings.show_recall)
                status = await run_turn(loop, conversation, text, tier, view, approve, foreground)
                if status == "interrupted" or foreground.stopped_by is not None:
                    return foreground.exit_code(exit_codes.INTERRUPTED)
                failed += status == "error"
        except asyncio.CancelledError:
            if being_cancelled():
                raise
            return foreground.exit_code(exit_codes.INTERRUPTED)  # Ctrl-C while memory and models were loading
        finally:
            await session.aclose()
    return exit_codes.RUNTIME_ERROR if failed else exit_codes.OK
