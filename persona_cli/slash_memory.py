"""The REPL's memory commands: /why, /memory, /forget, /remember, /recall.

``ctx`` is :class:`persona_cli.slash.SlashContext`; the work is
:mod:`persona_runtime.memory_admin`'s, run off the event loop (Chroma blocks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from rich.text import Text

from persona_cli.render import render_notice
from persona_cli.term import sanitize

T = TypeVar("T")


async def _admin(ctx: Any) -> Any:
    """The session's memory as a MemoryAdmin, or None (said why)."""
    from persona_runtime.memory_admin import MemoryAdmin

    loop = await ctx.session.loop()
    if loop.memory is None:
        render_notice(ctx.info, "memory is off for this session")
        return None
    return MemoryAdmin(loop.memory)


async def _run(ctx: Any, work: Callable[[], T]) -> T | None:
    """``work`` on a thread; a problem is one line, never a traceback out of the REPL."""
    import asyncio

    from persona_runtime.memory_admin import MemoryAdminError
    from persona_runtime.memory_guard import memory_notice

    try:
        return await asyncio.to_thread(work)
    except MemoryAdminError as exc:
        render_notice(ctx.info, f"✗ {exc}")
    except Exception as exc:  # noqa: BLE001 - a store fault ends the command, not the chat
        loop = ctx.session.built_loop
        render_notice(ctx.info, f"✗ {memory_notice('failed', getattr(loop, 'memory', None), exc)}")
    return None


def _line(ctx: Any, store: str, entry_id: str, score: float | None, age: str, first: str, width: int = 0) -> None:
    short = entry_id.removeprefix(f"{ctx.session.persona_id}::")
    shown = f"{score:.2f}  " if score is not None else ""
    ctx.info.print(Text(f"  {store:<10} {short:<{width}}  {shown}{age:>4}  {sanitize(first)[:90]}"), soft_wrap=True)


def _width(ctx: Any, ids: list[str]) -> int:
    return max((len(i.removeprefix(f"{ctx.session.persona_id}::")) for i in ids), default=0)


async def why(ctx: Any, _arg: str) -> None:
    from persona_runtime.memory_admin import format_age

    recalled = ctx.last_recall
    if recalled is None:
        render_notice(ctx.info, "no turn has recalled anything yet in this session")
        return
    if not recalled.entries:
        render_notice(ctx.info, f"nothing was recalled for the last turn ({_always_sent(recalled)} always sent)")
        return
    render_notice(ctx.info, f"{recalled.summary()} for the last turn (store · id · score · age · first line):")
    width = _width(ctx, [e.id for e in recalled.entries])
    for e in recalled.entries:
        _line(ctx, e.store, e.id, e.score, format_age(e.created_at), e.first_line, width)
    render_notice(ctx.info, f"{_always_sent(recalled)} always sent too; /forget ID removes an entry")


def _always_sent(recalled: Any) -> str:
    if recalled.standing is None:
        return "the persona's identity is"
    facts, views = recalled.standing
    return (
        f"the persona's identity, its {facts} self fact{'s' * (facts != 1)} and {views} view{'s' * (views != 1)} "
        "(`persona memory list` shows them) are"
    )


async def memory(ctx: Any, arg: str) -> None:
    limit = int(arg) if arg.isdigit() and int(arg) > 0 else 10
    admin = await _admin(ctx)
    if admin is None:
        return
    entries = await _run(ctx, lambda: admin.recent(limit))
    if entries is None:
        return
    if not entries:
        render_notice(ctx.info, "no episodic memories yet")
        return
    width = _width(ctx, [e.id for e in entries])
    for e in entries:
        _line(ctx, e.store, e.id, None, e.age(), e.first_line, width)
    render_notice(ctx.info, "newest first; persona memory list shows every store")


async def forget(ctx: Any, arg: str) -> None:
    refs = arg.split()
    if not refs:
        render_notice(ctx.info, "usage: /forget ID (ids: /why, /memory)")
        return
    admin = await _admin(ctx)
    if admin is None:
        return
    result = await _run(ctx, lambda: admin.forget(refs))
    if result is None:
        return
    for entry in result.forgotten:
        render_notice(ctx.info, f"forgot {entry.id.removeprefix(admin.pid + '::')}: {sanitize(entry.first_line)[:80]}")
    if result.returning:
        render_notice(ctx.info, "⚠ it comes from the persona file and comes back at the next start; `persona memory forget --pin` keeps it out")


async def remember(ctx: Any, arg: str) -> None:
    store = "episodic"
    if arg.startswith("--fact"):
        store, arg = "self_facts", arg.removeprefix("--fact").strip()
    if not arg:
        render_notice(ctx.info, "usage: /remember TEXT (an episodic note) or /remember --fact TEXT (a self fact)")
        return
    admin = await _admin(ctx)
    if admin is None:
        return
    entry = await _run(ctx, lambda: admin.add(store, arg))
    if entry is not None:
        kind = "self fact" if store == "self_facts" else "note"
        render_notice(ctx.info, f"remembered as a {kind}: {entry.id.removeprefix(admin.pid + '::')}")


async def recall(ctx: Any, arg: str) -> None:
    if arg in ("on", "off"):
        ctx.show_recall = arg == "on"
    render_notice(ctx.info, f"recall summary after each turn: {'on' if ctx.show_recall else 'off'} (/recall on|off)")


HANDLERS = {"/why": why, "/memory": memory, "/forget": forget, "/remember": remember, "/recall": recall}
