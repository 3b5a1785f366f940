"""The event view shared by chat turns and agent runs.

Both streams are made of the same runtime events for what a model and its tools do:
reasoning (``ThinkingDelta``, dim, on the info console), the reply (markdown on ``out``),
tool calls, the loop guard, skills, rate-limit waits, fallbacks and a reply cut by its token
budget. :class:`EventView` renders those; :class:`~persona_cli.turn_view.TurnView` and
:class:`~persona_cli.agent_view.AgentView` add what is their own (routing and usage lines;
steps, questions and the run summary). Model and tool text is always wrapped in ``Text``,
never parsed as Rich markup, and sanitised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.text import Text

from persona_cli.render import render_notice, render_tool_call, render_tool_result
from persona_cli.term import sanitize

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.mdstream import MarkdownStream
    from persona_cli.plainstream import PlainStream


@dataclass
class EventView:
    out: Console
    info: Console

    def __post_init__(self) -> None:
        self._answer: MarkdownStream | PlainStream | None = None
        self._thinking_open = False

    def handle(self, event: Any) -> None:
        if not self.handle_own(event):
            self.handle_shared(event)

    def handle_own(self, event: Any) -> bool:
        """Events only this view knows; True when handled."""
        return False

    def handle_shared(self, event: Any) -> None:
        from persona_runtime import events as ev

        match event:
            case ev.ThinkingDelta(text=text):
                self.end_answer()
                self.info.print(Text(sanitize(text), style="dim"), end="", soft_wrap=True)
                self._thinking_open = not text.endswith("\n")
            case ev.ToolCallStarted(name=name, arguments=args):
                self.end_streams()
                render_tool_call(self.info, name, args)
            case ev.ToolCallFinished(name=name, content=content, is_error=is_error, duration_ms=ms, approved=approved):
                if not approved:
                    render_notice(self.info, f"✗ {name} declined; the model was told")
                else:
                    render_tool_result(self.info, name, content, is_error, ms)
            case ev.LoopGuardTriggered(name=name, count=count):
                render_notice(self.info, f"⟳ {name} called {count}× with the same arguments; not run again (the model was told)")
            case ev.Notice(text=text):
                self.end_streams()
                render_notice(self.info, f"⚠ {text}")
            case ev.SkillActivated(name=name):
                render_notice(self.info, f"✦ skill activated: {name}")
            case ev.RetryWaiting(seconds=s, model=m, reason=why):
                self.end_streams()
                what = "is rate limited" if why.startswith("RateLimitError") else "failed"
                render_notice(self.info, f"⏳ {m} {what} ({why}); retrying in {s:g} s")
            case ev.FallbackTriggered() as f:
                if f.discarded_text and self._answer is not None:
                    self._answer.discard()
                    self._answer = None
                self.end_streams()
                render_notice(
                    self.info, f"↪ {f.failed_provider}/{f.failed_model} failed ({f.error}); trying {f.next_tier} · {f.next_model}"
                )
            case ev.SpendCapRerouted() as r:
                self.end_streams()
                render_notice(self.info, f"$ spend cap: {sanitize(r.reason)}; using {r.to_tier} · {sanitize(r.to_model)}")
            case ev.ReplyCut(limit=limit, setting=setting):
                self.end_streams()
                render_notice(self.info, f"✂ the reply reached its {limit}-token limit and was cut there ({setting} raises it)")
            case _:
                pass

    # -- the answer stream ---------------------------------------------------------------------

    def write_answer(self, text: str) -> None:
        self.end_thinking()
        if self._answer is None:
            from persona_cli.plainstream import answer_stream

            self._answer = answer_stream(self.out)
        self._answer.update(text)

    def interrupted(self) -> None:
        """Ctrl-C: close an open reply as cut short."""
        self.end_answer(interrupted=True)
        self.end_thinking()

    def end_thinking(self) -> None:
        if self._thinking_open:
            self.info.print()
            self._thinking_open = False

    def end_answer(self, *, interrupted: bool = False) -> None:
        if self._answer is not None:
            self._answer.finish(interrupted=interrupted)
            self._answer = None

    def end_streams(self, *, interrupted: bool = False) -> None:
        self.end_thinking()
        self.end_answer(interrupted=interrupted)
