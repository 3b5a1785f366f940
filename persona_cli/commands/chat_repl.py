"""The chat REPL: prompt, slash commands, turns, until /exit or Ctrl-D."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from persona_cli import exit_codes
from persona_cli.commands.chat_turn import being_cancelled, not_utf8, run_turn
from persona_cli.term import ESTIMATE_MARK, counted

if TYPE_CHECKING:
    from rich.console import Console

    from persona_runtime.session import Session
    from persona_cli.interrupts import Foreground


async def run_repl(session: Session, *, tier: str, multiline: bool, auto_approve: bool, conversation: Any = None) -> int:
    import asyncio

    from persona_cli.approval import make_approver
    from persona_cli.console import make_consoles, startup_lines
    from persona_cli.draft_reader import DraftReader
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
    drafts = DraftReader(session, ctx)  # the local model reads what is typed, during pauses
    prompt = ChatPrompt(history_path=history_path, toolbar=lambda: toolbar(ctx), multiline=multiline, on_text=drafts.changed)
    ctx.prompt = prompt
    ctx.conversation = conversation if conversation is not None else session.new_conversation()
    if conversation is not None:
        from persona_cli.conversation_view import render_resumed

        render_resumed(info, session, ctx.conversation)
    approve = make_approver(auto_approve=auto_approve, interactive=True, info=info)
    # Start loading memory and models once the prompt is on screen (see open_session).
    asyncio.get_running_loop().call_later(0.05, session.start_background)
    with Foreground() as foreground:
        try:
            await _repl_turns(ctx, prompt, foreground, approve, out, info)
        finally:
            drafts.stop()
            await session.aclose()
            if ctx.conversation.messages:
                from persona_cli.conversation_view import short_id

                render_notice(info, f"conversation {short_id(ctx.conversation.conversation_id)} is kept (persona chat … -c continues it)")
            render_notice(
                info,
                f"{counted(totals.turns, 'turn')} · {totals.tokens_text()} tokens · {totals.cost_text()} · log: {session.paths.turn_log}",
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
            for notice in session.take_notices():  # each once (a draft read ahead may have built the loop)
                render_notice(info, f"⚠ {notice}")
        except asyncio.CancelledError:
            if being_cancelled():
                raise
            render_notice(info, "interrupted while loading; your message was not sent (↑ brings it back)")
            continue
        view = TurnView(out=out, info=info, show_recall=bool(ctx.show_recall))
        with typeahead_hidden():
            await run_turn(loop, ctx.conversation, text, ctx.tier, view, approve, foreground, ctx.totals)
        ctx.last_recall = view.recalled if view.recalled is not None else ctx.last_recall
        if foreground.stopped_by is not None:
            return


def toolbar(ctx: Any) -> Any:
    from prompt_toolkit.formatted_text import FormattedText

    totals = ctx.totals
    tiers = ctx.session.tiers
    if totals.last_model:
        where = f"{totals.last_tier}/{totals.last_model}"
        window = tiers.context_window_for(totals.last_tier or "mid")
        estimate = ESTIMATE_MARK if totals.last_estimated else ""
        used = f"{estimate}{100 * totals.last_prompt_tokens / window:.0f}%" if window else "?"
    else:
        where, used = f"{ctx.tier}", "0%"
    text = f" {ctx.session.persona.identity.name} · {where} · context {used} · {totals.tokens_text()} tokens · {totals.cost_text()} "
    spend = ctx.session.built_spend
    if spend is not None and spend.active:
        text += f"· spend {spend.summary()} "
    if ctx.prompt is not None and ctx.prompt.multiline:
        text += "· multiline "
    return FormattedText([("class:bottom-toolbar", text)])
