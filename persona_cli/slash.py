"""Slash commands of the chat REPL. Each returns None, "exit" or "retry"."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.text import Text

from persona_cli import slash_memory
from persona_cli.render import render_notice
from persona_runtime.secrets import redact
from persona_cli.repl import SLASH_COMMANDS
from persona_cli.term import counted
from persona_runtime.routing.types import TIER_CHOICES


@dataclass
class SlashContext:
    session: Any
    tier: str
    totals: Any
    out: Any
    info: Any
    prompt: Any = None
    conversation: Any = None
    retry_text: str | None = None
    #: What memory recalled for the last turn (a MemoryRecalled), for /why.
    last_recall: Any = None
    #: Print the recall summary after each turn (PERSONA_SHOW_RECALL; /recall on|off).
    show_recall: bool | None = None

    def __post_init__(self) -> None:
        if self.show_recall is None:
            self.show_recall = bool(getattr(getattr(self.session, "settings", None), "show_recall", False))


async def handle_slash(ctx: SlashContext, line: str) -> str | None:
    name, _, arg = line.partition(" ")
    arg = arg.strip()
    handler = _HANDLERS.get(name)
    if handler is None:
        close = [c for c in SLASH_COMMANDS if c.startswith(name[:3])]
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        render_notice(ctx.info, f"unknown command {name}{hint}; /help lists them")
        return None
    return await handler(ctx, arg)


async def _help(ctx: SlashContext, _arg: str) -> None:
    for name, description in SLASH_COMMANDS.items():
        ctx.info.print(Text(f"  {name:<11} {description}"))
    render_notice(ctx.info, "keys: Enter send · Alt-Enter/Ctrl-J newline · Ctrl-R search · Ctrl-X Ctrl-E editor · Ctrl-C cancel/clear · Ctrl-D exit")


async def _exit(_ctx: SlashContext, _arg: str) -> str:
    return "exit"


async def _reset(ctx: SlashContext, _arg: str) -> None:
    ctx.conversation = ctx.session.new_conversation()
    render_notice(ctx.info, "new conversation (long-term memory is kept; /resume goes back to the last one)")


async def _resume(ctx: SlashContext, arg: str) -> None:
    from persona_cli.conversation_view import render_list, render_resumed
    from persona_runtime.conversations import ConversationNotFound

    if not arg:
        recent = ctx.session.list_conversations()[:10]
        if not recent:
            render_notice(ctx.info, "no stored conversations with this persona yet")
            return
        render_list(ctx.info, recent, as_json=False)
        render_notice(ctx.info, "/resume ID continues one (a unique prefix of the id will do)")
        return
    try:
        conversation = ctx.session.open_conversation(arg)
    except ConversationNotFound as exc:
        render_notice(ctx.info, str(exc))
        return
    ctx.conversation = conversation
    render_resumed(ctx.info, ctx.session, conversation)


async def _undo(ctx: SlashContext, _arg: str) -> None:
    from persona_runtime.undo import NothingToUndo

    try:
        turn, problem = await ctx.session.undo_last_turn(ctx.conversation)
    except NothingToUndo as exc:
        render_notice(ctx.info, str(exc))
        return
    said = next((m.get("content") for m in turn.messages if m.get("role") == "user"), "")
    first = said.strip().splitlines()[0][:60] if isinstance(said, str) and said.strip() else ""
    wrote = " and the memory it wrote" if turn.chunk_id else ""
    render_notice(ctx.info, f"undid your last exchange ({first!r}){wrote}")
    if problem:
        render_notice(ctx.info, f"✗ {problem}")
    loop = ctx.session.built_loop
    for failure in loop.events.take_failures() if loop is not None else ():
        render_notice(ctx.info, f"✗ the undo could not be written ({failure})")


async def _retry(ctx: SlashContext, _arg: str) -> str | None:
    messages = ctx.conversation.messages
    last_user = next((i for i in range(len(messages) - 1, -1, -1) if messages[i].role == "user"), None)
    if last_user is None:
        render_notice(ctx.info, "nothing to retry yet")
        return None
    ctx.retry_text = messages[last_user].content if isinstance(messages[last_user].content, str) else ""
    if ctx.session.built_loop is not None:
        # Take the old attempt back in the file and memory too, so a resumed conversation has it once.
        from persona_runtime.undo import NothingToUndo

        try:
            await ctx.session.undo_last_turn(ctx.conversation)
        except NothingToUndo:
            pass
    del messages[last_user:]
    # Keep the compaction bookkeeping inside the (now shorter) history.
    ctx.conversation.compacted_up_to = min(ctx.conversation.compacted_up_to, len(messages))
    render_notice(ctx.info, "retrying your last message")
    return "retry"


async def _tier(ctx: SlashContext, arg: str) -> None:
    if not arg:
        render_notice(ctx.info, f"tier: {ctx.tier} (choices: {', '.join(TIER_CHOICES)})")
        return
    if arg not in TIER_CHOICES:
        render_notice(ctx.info, f"unknown tier {arg!r}; choose {', '.join(TIER_CHOICES)}")
        return
    ctx.tier = arg
    render_notice(ctx.info, f"tier set to {arg}")


async def _model(ctx: SlashContext, _arg: str) -> None:
    tiers = ctx.session.tiers
    for name, serving, slot in tiers.describe():
        others = [s.label for s in tiers.slots(name)[1:]]
        fallback = f" (then {', '.join(others)})" if others else ""
        via = f" via {serving}" if serving != name else ""
        ctx.info.print(Text(f"  {name:<9}{slot.label}{via}{fallback}"))


async def _cost(ctx: SlashContext, _arg: str) -> None:
    t = ctx.totals
    ctx.info.print(
        Text(
            f"  {counted(t.turns, 'turn')} · {t.tokens_text(t.prompt_tokens)} in · {t.tokens_text(t.completion_tokens)} out · {t.cost_text()}"
        )
    )


async def _tools(ctx: SlashContext, _arg: str) -> None:
    from persona_runtime.tooling import SIDE_EFFECT_TOOLS, needs_approval

    loop = ctx.session.built_loop
    toolbox = getattr(loop, "toolbox", None) if loop is not None else None
    names = sorted(toolbox.names()) if toolbox is not None else sorted(ctx.session.persona.tools)
    mcp = getattr(ctx.session, "mcp", None)
    hub = mcp.hub if mcp is not None else None
    if not names and hub is None:
        render_notice(ctx.info, "this persona has no tools")
        return
    if all(slot.provider == "gguf" for _name, _serving, slot in ctx.session.tiers.describe()):
        render_notice(ctx.info, "tools are off: every tier is a local model; with a provider set, these would be offered:")
    rows = toolbox.rows() if hasattr(toolbox, "rows") else None
    if rows is None:
        for name in names:
            asks = needs_approval(toolbox, name) if toolbox is not None else name in SIDE_EFFECT_TOOLS
            ctx.info.print(Text(f"  {'✎' if asks else ' '} {name}"))
    else:
        for row in rows:
            where = f"  {row.server} · {row.tool}" if row.server else ""
            about = f" — {' '.join(row.description.split())[:80]}" if row.description else ""
            ctx.info.print(Text(f"  {'✎' if row.asks else ' '} {row.name}{where}{about}"))
    if hub is not None:
        for status in hub.status():
            if status.state != "ready":
                why = "still starting" if status.state == "starting" else f"{status.state}: {status.reason}"
                render_notice(ctx.info, f"MCP server {status.name}: {why}")
    render_notice(ctx.info, "✎ asks before running (MCP tools do unless their server marks them read-only)")


async def _history(ctx: SlashContext, _arg: str) -> None:
    messages = ctx.conversation.messages
    if not messages:
        render_notice(ctx.info, "no messages yet")
        return
    for m in messages:
        status = m.metadata.get("status")
        mark = f" [{status}]" if status and status != "ok" else ""
        text = m.content if isinstance(m.content, str) else "(content)"
        first = text.strip().splitlines()[0] if text.strip() else ""
        ctx.info.print(Text(f"  {m.role:<9}{first[:100]}{mark}"))


INTERRUPTED_LABEL = "_(reply interrupted)_"


async def _save(ctx: SlashContext, arg: str) -> None:
    if not arg:
        render_notice(ctx.info, "usage: /save FILE")
        return
    path = Path(arg).expanduser()
    lines = [f"# Conversation with {ctx.session.persona.identity.name}", ""]
    for m in ctx.conversation.messages:
        who = "You" if m.role == "user" else ctx.session.persona.identity.name
        text = m.content if isinstance(m.content, str) else ""
        if m.role == "assistant" and m.metadata.get("status") == "interrupted":
            text = f"{text}\n\n{INTERRUPTED_LABEL}".strip()  # a reader must not take a cut reply for a whole one
        lines += [f"**{who}:**", "", redact(text), ""]
    try:
        path.write_text("\n".join(lines), encoding="utf-8")
    except OSError as exc:
        render_notice(ctx.info, f"could not save to {path}: {exc.strerror or exc}")
        return
    render_notice(ctx.info, f"saved {len(ctx.conversation.messages)} messages to {path}")


async def _log(ctx: SlashContext, _arg: str) -> None:
    render_notice(ctx.info, f"turn log: {ctx.session.paths.turn_log} (persona logs tail)")


async def _multiline(ctx: SlashContext, _arg: str) -> None:
    if ctx.prompt is not None:
        ctx.prompt.multiline = not ctx.prompt.multiline
        state = "on: Enter inserts a newline, Alt-Enter sends" if ctx.prompt.multiline else "off: Enter sends"
        render_notice(ctx.info, f"multiline {state}")


_HANDLERS = {
    "/help": _help, "/exit": _exit, "/quit": _exit, "/reset": _reset, "/new": _reset, "/resume": _resume, "/undo": _undo, "/retry": _retry, "/tier": _tier,
    "/model": _model, "/cost": _cost, "/tools": _tools, "/history": _history, "/save": _save, "/log": _log,
    "/multiline": _multiline, **slash_memory.HANDLERS,
}
