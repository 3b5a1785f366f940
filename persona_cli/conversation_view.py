"""Stored conversations on screen: the `chat --list` table (or JSON lines), and the last
exchange shown, dimmed and short, when a conversation is resumed."""

from __future__ import annotations

import json
from typing import Any

from rich.text import Text

from persona_cli.render import render_notice
from persona_cli.term import counted, sanitize

EXCHANGE_LINES = 2
EXCHANGE_WIDTH = 100
LIST_PREVIEW = 50


def short_id(conversation_id: str) -> str:
    """``chat-20261130-082000-ab12cd`` → ``20261130-082000-ab12cd``: any unique prefix of it resumes."""
    return conversation_id.removeprefix("chat-")


def render_list(out: Any, summaries: list[Any], *, as_json: bool) -> None:
    if as_json:
        for s in summaries:
            out.file.write(json.dumps(s.to_dict(), ensure_ascii=False) + "\n")
        out.file.flush()
        return
    for s in summaries:
        started = _local_minute(s.started)
        last = sanitize(s.last_message)
        last = last if len(last) <= LIST_PREVIEW else last[: LIST_PREVIEW - 1] + "…"
        out.print(Text(f"{short_id(s.id):<24} {started:<16}  {counted(s.turns, 'turn'):>9}  {last}"), soft_wrap=True)


def _local_minute(stamp: str) -> str:
    from datetime import datetime

    try:
        return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return stamp[:16]


def render_resumed(info: Any, session: Any, conversation: Any) -> None:
    """One notice naming the conversation, then its last exchange, a couple of lines each."""
    turns = sum(1 for m in conversation.messages if m.role == "user")
    render_notice(info, f"continuing {short_id(conversation.conversation_id)} ({counted(turns, 'turn')})")
    last_user = next((i for i in range(len(conversation.messages) - 1, -1, -1) if conversation.messages[i].role == "user"), None)
    if last_user is None:
        return
    name = session.persona.identity.name
    for m in conversation.messages[last_user:]:
        label = f"  {'you' if m.role == 'user' else name}: "
        for line in _first_lines(m.content if isinstance(m.content, str) else ""):
            info.print(Text(f"{label}{line}", style="dim"))
            label = " " * len(label)


def _first_lines(text: str) -> list[str]:
    lines = [sanitize(line) for line in text.strip().splitlines() if line.strip()]
    shown = [line if len(line) <= EXCHANGE_WIDTH else line[: EXCHANGE_WIDTH - 1] + "…" for line in lines[:EXCHANGE_LINES]]
    if len(lines) > EXCHANGE_LINES and shown:
        shown[-1] += " …"
    return shown or [""]
