"""Renders a chat turn's typed events (the shared ones through :class:`EventView`).

The reply goes to ``out`` (stdout); everything else (routing, reasoning, tools, fallbacks,
usage) goes to ``info`` (stderr when piped, the same terminal otherwise), dim,
and never as Rich markup: model and tool text is always wrapped in ``Text``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text

from persona_cli.event_view import EventView
from persona_cli.render import render_notice
from persona_cli.term import ESTIMATE_MARK, format_cost, format_tokens, sanitize

if TYPE_CHECKING:

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
    #: Turns whose tokens are our own count (the provider reported no usage).
    estimated_turns: int = 0
    last_estimated: bool = False

    def add(self, event: Any) -> None:
        self.turns += 1
        self.last_estimated = is_estimated(event)
        self.estimated_turns += self.last_estimated
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

    @property
    def mark(self) -> str:
        """``~`` when any turn's tokens were estimated."""
        return ESTIMATE_MARK if self.estimated_turns else ""

    def tokens_text(self, n: int | None = None) -> str:
        """``1.2k`` (``~1.2k`` when estimates are in the sum) of ``n``, by default all tokens."""
        return self.mark + format_tokens(self.tokens if n is None else n)

    def cost_text(self) -> str:
        if self.turns == 0:
            return "$0"  # nothing sent yet: a measured zero, not an unknown price
        priced = self.turns > self.unpriced_turns
        text = format_cost(self.cost_cents if priced else None)
        if priced:
            text = self.mark + text  # a cost of estimated tokens is an estimate too
        if self.unpriced_turns and self.turns > self.unpriced_turns:
            text += f" (+{self.unpriced_turns} unpriced)"
        return text


@dataclass
class TurnView(EventView):
    """Feeds one chat turn's events to the screen."""

    show_routing: bool = True
    #: The REPL has /retry; piped input does not.
    can_retry: bool = True
    #: Print ``recalled: 2 episodic · 1 fact`` after the turn (PERSONA_SHOW_RECALL, /recall).
    show_recall: bool = False
    #: What memory recalled for this turn (for /why), once the turn has said.
    recalled: Any = None

    def handle_own(self, event: TurnEvent) -> bool:
        from persona_runtime import events as ev

        match event:
            case ev.TextDelta(text=text):
                self.write_answer(text)
            case ev.MemoryRecalled() as recalled:
                self.recalled = recalled
            case ev.RoutingDecided(decision=d):
                if self.show_routing:
                    model = f" · {d.model}" if d.model else ""
                    render_notice(self.info, f"↳ {d.tier}{model} · {d.rationale}")
            case ev.HistoryCompacted(messages_folded=n, summary_model=m):
                render_notice(self.info, f"⋯ folded {n} older messages into a summary ({m})")
            case ev.TurnFailed(message=message):
                self.end_streams()
                self.info.print(Text(f"✗ {sanitize(message)}", style="red"), soft_wrap=not self.info.is_terminal)
                if self.can_retry:
                    render_notice(self.info, "your message is kept: /retry to send it again")
            case ev.TurnFinished() as done:
                self.end_streams(interrupted=done.status == "interrupted")
                if done.status == "ok":
                    render_notice(self.info, usage_line(done))
                if self.show_recall and self.recalled is not None:
                    render_notice(self.info, self.recalled.summary())
            case _:
                return False
        return True


def is_estimated(done: Any) -> bool:
    """The turn's tokens are our own count (``TurnFinished.log.usage_estimated``)."""
    return bool(getattr(getattr(done, "log", None), "usage_estimated", False))


def usage_line(done: Any) -> str:
    """``mid · model · 812 in · 143 out · $0.0012 · 2.3 s``; estimated tokens read
    ``~812 in · ~143 out · ~$0.0012 … (estimated)``."""
    mark = ESTIMATE_MARK if is_estimated(done) else ""
    parts = [f"{done.tier} · {done.model}" if done.tier else (done.model or "")]
    parts.append(f"{mark}{format_tokens(done.prompt_tokens)} in · {mark}{format_tokens(done.completion_tokens)} out")
    cost = format_cost(done.cost_cents)
    parts.append(mark + cost if done.cost_cents is not None else cost)
    parts.append(f"{done.latency_ms / 1000:.1f} s")
    if mark:
        parts.append("tokens estimated (the provider reported none)")
    return " · ".join(p for p in parts if p)
