"""The REPL's slash commands, on a recording console and a real Conversation."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime
from types import SimpleNamespace

from persona.schema.conversation import Conversation, ConversationMessage
from rich.console import Console

from persona_cli.slash import INTERRUPTED_LABEL, SlashContext, handle_slash
from persona_cli.turn_view import SessionTotals
from persona_runtime.session import new_conversation
from persona_runtime.tier_env import tier_registry_from_env

NOW = datetime.now(UTC)


def context(tmp_path) -> tuple[SlashContext, io.StringIO]:
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=200)
    persona = SimpleNamespace(
        identity=SimpleNamespace(name="Astrid", role="adviser"), tools=["calculator", "file_write"], persona_id="astrid"
    )
    session = SimpleNamespace(
        persona=persona, persona_id="astrid", tiers=tier_registry_from_env({}), built_loop=None,
        paths=SimpleNamespace(turn_log=tmp_path / "turns.jsonl"), new_conversation=lambda: new_conversation("astrid"),
    )
    conv = Conversation(conversation_id="c", persona_id="astrid")
    ctx = SlashContext(session=session, tier="auto", totals=SessionTotals(), out=console, info=console, conversation=conv)
    return ctx, buf


def say(ctx: SlashContext, line: str):
    return asyncio.run(handle_slash(ctx, line))


def test_retry_removes_the_last_exchange_and_returns_its_text(tmp_path) -> None:
    ctx, _ = context(tmp_path)
    ctx.conversation.messages += [
        ConversationMessage(role="user", content="first", created_at=NOW),
        ConversationMessage(role="assistant", content="one", created_at=NOW),
        ConversationMessage(role="user", content="second", created_at=NOW, metadata={"status": "error"}),
    ]
    assert say(ctx, "/retry") == "retry"
    assert ctx.retry_text == "second"
    assert [m.content for m in ctx.conversation.messages] == ["first", "one"]


def test_tier_validates_and_sets(tmp_path) -> None:
    ctx, buf = context(tmp_path)
    say(ctx, "/tier frontier")
    assert ctx.tier == "frontier"
    say(ctx, "/tier enormous")
    assert ctx.tier == "frontier" and "unknown tier" in buf.getvalue()


def test_reset_save_history_tools_model_and_unknown(tmp_path) -> None:
    ctx, buf = context(tmp_path)
    ctx.conversation.messages.append(ConversationMessage(role="user", content="hello there", created_at=NOW))
    say(ctx, "/save " + str(tmp_path / "chat.md"))
    assert "hello there" in (tmp_path / "chat.md").read_text()
    say(ctx, "/history")
    say(ctx, "/tools")
    say(ctx, "/model")
    say(ctx, "/cost")
    say(ctx, "/retyr")
    out = buf.getvalue()
    assert "hello there" in out and "✎ file_write" in out and "gguf/bundled" in out and "0 turns" in out
    assert "tools are off: every tier is a local model" in out  # nothing set: the bundled model
    assert "unknown command /retyr" in out and "/retry" in out
    old = ctx.conversation.conversation_id
    say(ctx, "/reset")
    assert ctx.conversation.conversation_id != old and ctx.conversation.messages == []
    assert say(ctx, "/exit") == "exit"


def test_save_marks_a_reply_that_was_cut_short(tmp_path) -> None:
    ctx, _ = context(tmp_path)
    ctx.conversation.messages += [
        ConversationMessage(role="user", content="tell me a story", created_at=NOW),
        ConversationMessage(role="assistant", content="Once upon", created_at=NOW, metadata={"status": "interrupted"}),
        ConversationMessage(role="user", content="shorter", created_at=NOW),
        ConversationMessage(role="assistant", content="The end.", created_at=NOW, metadata={"status": "ok"}),
    ]
    say(ctx, "/save " + str(tmp_path / "chat.md"))
    saved = (tmp_path / "chat.md").read_text()
    assert f"Once upon\n\n{INTERRUPTED_LABEL}\n" in saved
    assert "The end.\n" in saved and saved.count(INTERRUPTED_LABEL) == 1


def test_save_writes_no_secret(tmp_path) -> None:
    ctx, _ = context(tmp_path)
    ctx.conversation.messages += [
        ConversationMessage(role="user", content="my key is sk-live-abcdefghijkl0123", created_at=NOW),
        ConversationMessage(role="assistant", content="Noted sk-live-abcdefghijkl0123.", created_at=NOW),
    ]
    say(ctx, "/save " + str(tmp_path / "chat.md"))
    saved = (tmp_path / "chat.md").read_text()
    assert "sk-live-abcdefghijkl0123" not in saved and saved.count("[redacted]") == 2
