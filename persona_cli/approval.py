"""Asking before a tool that writes or sends runs: yes / no / always (this session)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from persona_cli.render import render_notice


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
        info.bell()
        while True:
            try:
                answer = await session.prompt_async(f"run {call.name}? [y]es / [n]o / [a]lways this session: ", handle_sigint=False)
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

    return approve
