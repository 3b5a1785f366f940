"""Asking before a tool that writes or sends runs: yes / no / always (this session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text

from persona_cli.render import render_notice
from persona_cli.term import sanitize

#: Lines of a tool call's arguments shown before the question; [v]iew shows the rest.
SHOWN_LINES = 30


def make_approver(
    *,
    auto_approve: bool,
    interactive: bool,
    info: Any,
    prompt_session: Callable[[], Any] | None = None,
    on_interrupt: Callable[[], None] | None = None,
) -> Callable[[Any], Any]:
    """An async approver for ``run_tool_call``. Not interactive: declined unless ``--yes``.

    Ctrl-C at the question calls ``on_interrupt`` (e.g. cancel the run) and declines; without
    it, the Ctrl-C cancels the turn like a Ctrl-C during the reply would.
    """
    always: set[str] = set()

    async def approve(call: Any) -> bool:
        if auto_approve or call.name in always:
            return True
        if not interactive:
            render_notice(info, f"✗ {call.name} needs approval; declined (use --yes to allow tools that write or send)")
            return False
        if prompt_session is None:
            from prompt_toolkit import PromptSession

            session = PromptSession()
        else:
            session = prompt_session()
        hidden = show_arguments(info, call.args, SHOWN_LINES)
        view = " / [v]iew all" if hidden else ""
        info.bell()
        while True:
            try:
                answer = await session.prompt_async(
                    f"run {call.name}? [y]es / [n]o / [a]lways this session{view}: ", handle_sigint=False
                )
            except EOFError:
                return False
            except KeyboardInterrupt:
                if on_interrupt is None:
                    import asyncio

                    raise asyncio.CancelledError from None
                on_interrupt()
                return False
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return True
            if answer in ("n", "no", ""):
                return False
            if answer in ("a", "always"):
                always.add(call.name)
                return True
            if answer in ("v", "view") and hidden:
                show_arguments(info, call.args, None)

    return approve


def show_arguments(info: Any, arguments: dict[str, Any], max_lines: int | None) -> int:
    """Print a tool call's arguments in full (a file_write body, a whole URL), up to
    ``max_lines`` lines; returns how many lines were left out (and says so)."""
    import json

    lines: list[str] = []
    for name, value in arguments.items():
        text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=2, default=str)
        body = sanitize(text).splitlines() or [""]
        lines += [f"  {name}: {body[0]}", *(f"    {line}" for line in body[1:])]
    shown = lines if max_lines is None else lines[:max_lines]
    for line in shown:
        info.print(Text(line, style="dim"), soft_wrap=True)
    hidden = len(lines) - len(shown)
    if hidden:
        render_notice(info, f"  … {hidden} more line{'' if hidden == 1 else 's'} not shown ([v] shows them)")
    return hidden
