"""``persona chat PERSONA.yaml``: the REPL, or one reply per piped line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from persona_cli import exit_codes
from persona_cli.exit_codes import USAGE, CliError
from persona_cli.term import counted, format_tokens

MCP_CONFIG_HELP = "MCP servers from this mcp.json instead of PERSONA_HOME/mcp.json (e.g. --mcp-config ./mcp.json)."

if TYPE_CHECKING:
    from rich.console import Console

    from persona_runtime.session import Session
    from persona_cli.interrupts import Foreground
    from persona_cli.turn_view import SessionTotals


def chat(
    persona_file: Path = typer.Argument(..., help="The persona YAML, e.g. personas/astrid.yaml.", show_default=False, metavar="PERSONA.yaml"),
    tier: str = typer.Option("auto", "--tier", "-t", help="auto (routed per turn), small, mid or frontier."),
    env_file: Path | None = typer.Option(None, "--env-file", help="Load variables from this file (the real environment wins)."),
    multiline: bool = typer.Option(False, "--multiline", help="Enter inserts a newline; Alt-Enter sends."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Run tools that write or send without asking."),
    mcp_config: Path | None = typer.Option(None, "--mcp-config", help=MCP_CONFIG_HELP, dir_okay=False),
) -> None:
    """Chat with a persona. Piped stdin: each line is a message and stdout carries only the replies."""
    from persona_runtime.routing.types import TIER_CHOICES  # here, not at the top: --help stays fast

    if tier not in TIER_CHOICES:
        raise CliError(f"--tier must be one of {', '.join(TIER_CHOICES)}, not {tier!r}", USAGE)
    if env_file is not None:
        from persona_cli.app import load_env_file

        load_env_file(env_file)
    from persona_cli.compose import open_session

    interactive = sys.stdin.isatty()
    session = open_session(persona_file, start=not interactive, mcp_config=mcp_config)
    import asyncio

    if interactive:
        code = asyncio.run(_run_repl(session, tier=tier, multiline=multiline, auto_approve=yes))
    else:
        code = _run_piped(session, tier=tier, auto_approve=yes)
    raise typer.Exit(code)


# -- piped ---------------------------------------------------------------------------------


def _run_piped(session: Session, *, tier: str, auto_approve: bool) -> int:
    from persona_cli.console import make_consoles, startup_lines
    from persona_cli.render import render_notice

    out, info = make_consoles(info_to_stderr=True)
    for line in startup_lines(session):
        render_notice(info, line)
    messages = _piped_lines(sys.stdin.buffer)
    if not messages:
        render_notice(info, "no input on stdin; nothing to do")
        return exit_codes.OK
    import asyncio

    return asyncio.run(_piped_turns(session, messages, tier, auto_approve, out, info))


def not_utf8(text: str) -> bool:
    """Bytes that were not UTF-8 reach us as lone surrogates (prompt-toolkit decodes with
    surrogateescape); nothing downstream could encode them."""
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _piped_lines(stream: Any) -> list[tuple[int, str | None]]:
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


async def _piped_turns(session: Session, messages: list[tuple[int, str | None]], tier: str, auto_approve: bool, out: Console, info: Console) -> int:
    import asyncio

    from persona_cli.approval import make_approver
    from persona_cli.interrupts import Foreground
    from persona_cli.render import render_notice
    from persona_cli.turn_view import TurnView

    conversation = session.new_conversation()
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
                if text is None:
                    render_notice(info, f"✗ line {number} of the input is not UTF-8 text; it was not sent")
                    failed += 1
                    continue
                view = TurnView(out=out, info=info, can_retry=False)
                status = await _run_turn(loop, conversation, text, tier, view, approve, foreground)
                if status == "interrupted" or foreground.stopped_by is not None:
                    return foreground.exit_code(exit_codes.INTERRUPTED)
                failed += status == "error"
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            return foreground.exit_code(exit_codes.INTERRUPTED)  # Ctrl-C while memory and models were loading
        finally:
            await session.aclose()
    return exit_codes.RUNTIME_ERROR if failed else exit_codes.OK


# -- one turn ------------------------------------------------------------------------------


async def _run_turn(
    loop: Any, conversation: Any, text: str, tier: str, view: Any, approve: Any, foreground: Foreground,
    totals: SessionTotals | None = None,
) -> str:
    """Consume one turn as the foreground task (Ctrl-C cancels it). Returns the turn status."""
    import asyncio

    from persona_cli.render import render_notice
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
        if _being_cancelled():
            raise
    finally:
        for problem in loop.events.take_failures():
            render_notice(view.info, f"✗ the turn log could not be written ({problem}); the chat goes on")
    return status


def _being_cancelled() -> bool:
    """True when the current task itself is being cancelled (not just the foreground work it awaited)."""
    import asyncio

    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


# -- the REPL ------------------------------------------------------------------------------


async def _run_repl(session: Session, *, tier: str, multiline: bool, auto_approve: bool) -> int:
    import asyncio

    from persona_cli.approval import make_approver
    from persona_cli.console import make_consoles, startup_lines
    from persona_cli.interrupts import Foreground
    from persona_cli.render import render_notice
    from persona_cli.repl import ChatPrompt
    from persona_cli.slash import SlashContext
    from persona_cli.turn_view import SessionTotals

    out, info = make_consoles(info_to_stderr=False)
    totals = SessionTotals()
    ctx = SlashContext(session=session, tier=tier, totals=totals, out=out, info=info)
    render_notice(info, f"{session.persona.identity.name} · {session.persona.identity.role}")
    for line in startup_lines(session):
        render_notice(info, line)
    render_notice(info, "Enter sends · Alt-Enter newline · /help · Ctrl-C cancels a reply · Ctrl-D exits")
    history_path = session.paths.history / f"{session.persona_id}.txt"
    prompt = ChatPrompt(history_path=history_path, toolbar=lambda: _toolbar(ctx), multiline=multiline)
    ctx.prompt = prompt
    ctx.conversation = session.new_conversation()
    approve = make_approver(auto_approve=auto_approve, interactive=True, info=info)
    # Start loading memory and models once the prompt is on screen (see open_session).
    asyncio.get_running_loop().call_later(0.05, session.start_background)
    with Foreground() as foreground:
        try:
            await _repl_turns(ctx, prompt, foreground, approve, out, info)
        finally:
            await session.aclose()
            render_notice(
                info,
                f"{counted(totals.turns, 'turn')} · {format_tokens(totals.tokens)} tokens · {totals.cost_text()} · log: {session.paths.turn_log}",
            )
    return foreground.exit_code(exit_codes.OK)


async def _repl_turns(ctx: Any, prompt: Any, foreground: Foreground, approve: Any, out: Console, info: Console) -> None:
    import asyncio

    from persona_cli.render import render_notice
    from persona_cli.slash import handle_slash
    from persona_cli.turn_view import TurnView

    from persona_cli.interrupts import await_loading
    from persona_cli.repl import typeahead_hidden

    session = ctx.session
    while foreground.stopped_by is None:
        text = await prompt.read()
        if text is None or foreground.stopped_by is not None:
            return
        if not_utf8(text):
            render_notice(info, "✗ what you typed is not all UTF-8 text, so it was not sent (↑ brings it back to fix)")
            continue
        if text.startswith("/"):
            action = await handle_slash(ctx, text.strip())
            if action == "exit":
                return
            if action != "retry":
                continue
            text = ctx.retry_text or ""
            if not text:
                continue
        # Only the first turn waits (as a foreground task, so Ctrl-C can stop the wait); later
        # turns must not pass through a task of their own that a Ctrl-C could cancel unrecorded.
        loop = session.built_loop
        try:
            if loop is None:
                loop = await foreground.run(
                    await_loading(session.loop(), info, "loading memory and models (first turn only)…")
                )
                for notice in session.take_notices():
                    render_notice(info, f"⚠ {notice}")
        except asyncio.CancelledError:
            if _being_cancelled():
                raise
            render_notice(info, "interrupted while loading; your message was not sent (↑ brings it back)")
            continue
        view = TurnView(out=out, info=info)
        with typeahead_hidden():
            await _run_turn(loop, ctx.conversation, text, ctx.tier, view, approve, foreground, ctx.totals)
        if foreground.stopped_by is not None:
            return


def _toolbar(ctx: Any) -> Any:
    from prompt_toolkit.formatted_text import FormattedText

    totals = ctx.totals
    tiers = ctx.session.tiers
    if totals.last_model:
        where = f"{totals.last_tier}/{totals.last_model}"
        window = tiers.context_window_for(totals.last_tier or "mid")
        used = f"{100 * totals.last_prompt_tokens / window:.0f}%" if window else "?"
    else:
        where, used = f"{ctx.tier}", "0%"
    text = f" {ctx.session.persona.identity.name} · {where} · context {used} · {format_tokens(totals.tokens)} tokens · {totals.cost_text()} "
    if ctx.prompt is not None and ctx.prompt.multiline:
        text += "· multiline "
    return FormattedText([("class:bottom-toolbar", text)])
