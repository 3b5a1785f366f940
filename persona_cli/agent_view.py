"""Renders an agent run's typed events: a rule per step, reasoning dim, tools as in chat,
the final answer as markdown. ``JsonView`` prints one JSON object per event instead.

The final answer goes to ``out`` (stdout); everything else to ``info`` (stderr when piped,
the same terminal otherwise), so a piped ``persona agent`` prints only the answer.
Model and tool text is always wrapped in ``Text``, never parsed as Rich markup.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from rich.text import Text

from persona_cli.render import MarkdownStream, render_notice, render_tool_call, render_tool_result
from persona_cli.term import format_cost, format_tokens, sanitize

if TYPE_CHECKING:
    from rich.console import Console

    from persona_runtime.agentic.run import Run, Step


def step_title(step: Step, max_steps: int) -> str:
    """``step 3/8 · mid · 1.2k tok · $0.0020 · 1.4 s`` (plus what went wrong, if anything)."""
    head = "best effort" if step.best_effort else f"step {step.index}/{max_steps}"
    parts = [head, step.tier or "?"]
    parts.append(f"{format_tokens(step.tokens)} tok")
    if step.tokens:  # nothing reported (cancelled, failed): no cost to show
        parts.append(format_cost(step.cost_cents))
    parts.append(f"{step.latency_ms / 1000:.1f} s")
    if str(step.type) in ("cancelled", "error"):
        parts.append(str(step.type))
    return " · ".join(parts)


def run_summary(run: Run) -> str:
    cost = format_cost(run.cost_cents)
    if run.unpriced_steps and run.cost_cents is not None:
        cost += f" (+{run.unpriced_steps} unpriced)"
    steps = f"{len(run.steps)} step" + ("" if len(run.steps) == 1 else "s")
    tokens = run.prompt_tokens + run.completion_tokens
    cost_part = f" · {cost}" if tokens else ""
    return f"{steps} · {format_tokens(tokens)} tok{cost_part} · run {run.id}"


@dataclass
class AgentView:
    """Feeds one run's events to the screen."""

    out: Console
    info: Console
    _max_steps: int = 0
    _thinking_open: bool = False
    _answer: MarkdownStream | None = None
    _answered: bool = False
    _flags: dict[str, Any] = field(default_factory=dict)

    def handle(self, event: Any) -> None:
        from persona_runtime import events as base
        from persona_runtime.agentic import events as ev

        match event:
            case ev.RunStarted(run_id=run_id, task=task, resumed=resumed):
                self._max_steps = event.max_steps
                verb = "resuming run" if resumed else "run"
                render_notice(self.info, f"▸ {verb} {run_id} · {task}")
            case ev.StepStarted() as started:
                self._max_steps = started.max_steps
                self._answered = False
                if started.best_effort:
                    render_notice(self.info, "step limit reached: one last call, without tools, for a best-effort answer")
            case ev.ThinkingDelta(text=text):
                self._end_answer()
                self.info.print(Text(sanitize(text), style="dim"), end="", soft_wrap=True)
                self._thinking_open = not text.endswith("\n")
            case ev.AnswerDelta(text=text):
                self._end_thinking()
                if self._answer is None:
                    self._answer = MarkdownStream(self.out)
                self._answer.update(text)
                self._answered = True
            case base.ToolCallStarted(name=name, arguments=args):
                self._end_streams()
                render_tool_call(self.info, name, args)
            case base.ToolCallFinished(name=name, content=content, is_error=is_error, duration_ms=ms, approved=approved):
                if not approved:
                    render_notice(self.info, f"✗ {name} declined; the model was told")
                else:
                    render_tool_result(self.info, name, content, is_error, ms)
            case ev.LoopGuardTriggered(name=name, count=count):
                render_notice(self.info, f"⟳ {name} called {count}× with the same arguments; not run again (the model was told)")
            case base.SkillActivated(name=name):
                render_notice(self.info, f"✦ skill activated: {name}")
            case base.RetryWaiting(seconds=s, model=m, reason=why):
                self._end_streams()
                render_notice(self.info, f"⏳ {m} is rate limited ({why}); retrying in {s:g} s")
            case base.FallbackTriggered() as f:
                if f.discarded_text and self._answer is not None:
                    self._answer.discard()
                    self._answer = None
                self._end_streams()
                render_notice(
                    self.info, f"↪ {f.failed_provider}/{f.failed_model} failed ({f.error}); trying {f.next_tier} · {f.next_model}"
                )
            case ev.StepsCompacted(messages_folded=n, summary_model=model):
                how = f"a summary ({model})" if model else "a note (no summary could be made)"
                render_notice(self.info, f"⋯ folded {n} earlier messages into {how}")
            case ev.AskUser(question=question):
                self._end_streams()
                self.info.bell()
                self.info.print(Text.assemble(("? ", "bold yellow"), (sanitize(question), "bold")))
            case ev.UserAnswered():
                pass  # typed answers are on screen already; the asker notes the others
            case ev.FinalAnswer(text=text):
                self._end_thinking()
                if not self._answered and text:
                    stream = self._answer or MarkdownStream(self.out)
                    stream.update(text)
                    self._answer = stream
                self._end_answer()
            case ev.StepFinished(step=step):
                self._end_streams()
                self.info.rule(Text(step_title(step, self._max_steps)), style="dim", characters="─")
            case ev.RunFinished(run=run):
                self._end_streams()
                self._finished(run)
            case _:
                pass

    def interrupted(self) -> None:
        if self._answer is not None:
            self._answer.finish(interrupted=True)
            self._answer = None
        self._end_thinking()

    def _finished(self, run: Run) -> None:
        status = str(run.status)
        summary = run_summary(run)
        if status == "completed":
            render_notice(self.info, f"✓ completed · {summary}")
        elif status == "max_steps_reached":
            label = "the answer above is a best effort" if run.best_effort and run.output else "no answer"
            render_notice(self.info, f"■ step limit reached ({label}) · {summary}")
            render_notice(self.info, f"  continue with: persona agent --resume {run.id} --max-steps N")
        elif status == "needs_input":
            render_notice(self.info, f"⏸ waiting for an answer · {summary}")
            render_notice(self.info, f"  answer it with: persona agent --resume {run.id}")
        elif status == "cancelled":
            render_notice(self.info, f"⏹ cancelled · {summary}")
            render_notice(self.info, f"  continue with: persona agent --resume {run.id}")
        else:
            self.info.print(Text(f"✗ {run.error or 'the run failed'}", style="red"))
            render_notice(self.info, f"✗ error · {summary}")

    def _end_thinking(self) -> None:
        if self._thinking_open:
            self.info.print()
            self._thinking_open = False

    def _end_answer(self) -> None:
        if self._answer is not None:
            self._answer.finish()
            self._answer = None

    def _end_streams(self) -> None:
        self._end_thinking()
        self._end_answer()


class JsonView:
    """One JSON object per event, one per line, on ``stream`` (stdout)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def handle(self, event: Any) -> None:
        from persona_runtime.agentic.events import event_to_dict

        self.stream.write(json.dumps(event_to_dict(event), ensure_ascii=False, default=str) + "\n")
        self.stream.flush()

    def interrupted(self) -> None:
        pass
