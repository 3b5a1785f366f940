"""Renders the runtime's typed turn events. Shared by chat and agent.

The reply goes to ``out`` (stdout); everything else (routing, tools, fallbacks,
usage) goes to ``info`` (stderr when piped, the same terminal otherwise), dim,
and never as Rich markup: model and tool text is always wrapped in ``Text``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.text import Text

from persona_cli.render import render_notice, render_tool_call, render_tool_result
from persona_cli.term import format_cost, format_tokens

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.mdstream import MarkdownStream
    from persona_runtime.events import TurnEvent


@dataclass
class SessionTotals:
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_cents: float | None = 0.0
    unpriced_turns: int = 0
    last_tier: str | None = None
    last_model: str | None = None
    last_prompt_tokens: int = 0

    def add(self, event: Any) -> None:
        self.turns += 1
        self.prompt_tokens += event.prompt_tokens
        self.completion_tokens += event.completion_tokens
        self.last_tier, self.last_model = event.tier, event.model
        self.last_prompt_tokens = event.prompt_tokens
        if event.cost_cents is None:
            self.unpriced_turns += 1
        elif self.cost_cents is not None:
            self.cost_cents += event.cost_cents

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def cost_text(self) -> str:
        text = format_cost(self.cost_cents if self.turns > self.unpriced_turns else None)
        if self.unpriced_turns and self.turns > self.unpriced_turns:
            text += f" (+{self.unpriced_turns} unpriced)"
        return text


@dataclass
class TurnView:
    """Feeds one turn's events to the screen."""

    out: Console
    info: Console
    show_routing: bool = True
    _stream: MarkdownStream | None = None
    _tool_started: dict[str, float] = field(default_factory=dict)

    def handle(self, event: TurnEvent) -> None:
        from persona_runtime import events as ev

        match event:
            case ev.TextDelta(text=text):
                if self._stream is None:
                    from persona_cli.mdstream import MarkdownStream

                    self._stream = MarkdownStream(self.out)
                self._stream.update(text)
            case ev.RoutingDecided(decision=d):
                if self.show_routing:
                    model = f" · {d.model}" if d.model else ""
                    render_notice(self.info, f"↳ {d.tier}{model} · {d.rationale}")
            case ev.HistoryCompacted(messages_folded=n, summary_model=m):
                render_notice(self.info, f"⋯ folded {n} older messages into a summary ({m})")
            case ev.ToolCallStarted(name=name, arguments=args):
                self._end_stream()
                render_tool_call(self.info, name, args)
            case ev.ToolCallFinished(name=name, content=content, is_error=is_error, duration_ms=ms, approved=approved):
                if not approved:
                    render_notice(self.info, f"✗ {name} declined; the model was told")
                else:
                    render_tool_result(self.info, name, content, is_error, ms)
            case ev.SkillActivated(name=name):
                render_notice(self.info, f"✦ skill activated: {name}")
            case ev.RetryWaiting(seconds=s, model=m, reason=why):
                render_notice(self.info, f"⏳ {m} is rate limited ({why}); retrying in {s:g} s")
            case ev.FallbackTriggered() as f:
                if f.discarded_text and self._stream is not None:
                    self._stream.discard()
                    self._stream = None
                render_notice(
                    self.info,
                    f"↪ {f.failed_provider}/{f.failed_model} failed ({f.error}); trying {f.next_tier} · {f.next_model}",
                )
            case ev.TurnFailed(message=message):
                self._end_stream()
                self.info.print(Text(f"✗ {message}", style="red"))
                render_notice(self.info, "your message is kept: /retry to send it again")
            case ev.TurnFinished() as done:
                self._end_stream(interrupted=done.status == "interrupted")
                if done.status == "ok":
                    render_notice(self.info, usage_line(done))
            case _:
                pass

    def interrupted(self) -> None:
        self._end_stream(interrupted=True)

    def _end_stream(self, *, interrupted: bool = False) -> None:
        if self._stream is not None:
            self._stream.finish(interrupted=interrupted)
            self._stream = None


def usage_line(done: Any) -> str:
    parts = [f"{done.tier} · {done.model}" if done.tier else (done.model or "")]
    parts.append(f"{format_tokens(done.prompt_tokens)} in · {format_tokens(done.completion_tokens)} out")
    parts.append(format_cost(done.cost_cents))
    parts.append(f"{done.latency_ms / 1000:.1f} s")
    return " · ".join(p for p in parts if p)
