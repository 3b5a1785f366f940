"""Renders an agent run's typed events: a rule per step, reasoning dim, tools as in chat,
the final answer as markdown. ``JsonView`` prints one JSON object per event instead.

The final answer goes to ``out`` (stdout); everything else to ``info`` (stderr when piped,
the same terminal otherwise), so a piped ``persona agent`` prints only the answer.
Model and tool text is always wrapped in ``Text``, never parsed as Rich markup.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

from rich.text import Text

from persona_cli.event_view import EventView
from persona_cli.render import render_notice
from persona_cli.term import ESTIMATE_MARK, counted, format_cost, format_tokens, sanitize

if TYPE_CHECKING:

    from persona_runtime.agentic.run import Run, Step


def step_title(step: Step, max_steps: int) -> str:
    """``step 3/8 · mid · 1.2k tok · $0.0020 · 1.4 s`` (plus what went wrong, if anything)."""
    head = "best effort" if step.best_effort else f"step {step.index}/{max_steps}"
    parts = [head, step.tier or "?"]
    mark = ESTIMATE_MARK if step.usage_estimated else ""  # our own count: the provider sent none
    parts.append(f"{mark}{format_tokens(step.tokens)} tok")
    if step.tokens:  # nothing reported (cancelled, failed): no cost to show
        parts.append(format_cost(step.cost_cents) if step.cost_cents is None else mark + format_cost(step.cost_cents))
    parts.append(f"{step.latency_ms / 1000:.1f} s")
    if str(step.type) in ("cancelled", "error"):
        parts.append(str(step.type))
    return " · ".join(parts)


def run_summary(run: Run) -> str:
    mark = ESTIMATE_MARK if run.usage_estimated else ""
    cost = format_cost(run.cost_cents) if run.cost_cents is None else mark + format_cost(run.cost_cents)
    if run.unpriced_steps and run.cost_cents is not None:
        cost += f" (+{run.unpriced_steps} unpriced)"
    steps = counted(len(run.steps), "step")
    tokens = run.prompt_tokens + run.completion_tokens
    cost_part = f" · {cost}" if tokens else ""
    estimated = " (tokens estimated: the provider reported none)" if mark else ""
    return f"{steps} · {mark}{format_tokens(tokens)} tok{cost_part}{estimated} · run {run.id}"


@dataclass
class AgentView(EventView):
    """Feeds one run's events to the screen."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._max_steps = 0
        self._answered = False

    def handle_own(self, event: Any) -> bool:
        from persona_runtime.agentic import events as ev

        match event:
            case ev.RunStarted(run_id=run_id, task=task, resumed=resumed):
                self._max_steps = event.max_steps
                verb = "resuming run" if resumed else "run"
                render_notice(self.info, f"▸ {verb} {run_id} · {sanitize(task)}")
            case ev.StepStarted() as started:
                self._max_steps = started.max_steps
                self._answered = False
                if started.best_effort:
                    render_notice(self.info, "step limit reached: one last call, without tools, for a best-effort answer")
            case ev.AnswerDelta(text=text):
                self.write_answer(text)
                self._answered = True
            case ev.StepsCompacted(messages_folded=n, summary_model=model):
                how = f"a summary ({model})" if model else "a note (no summary could be made)"
                render_notice(self.info, f"⋯ folded {n} earlier messages into {how}")
            case ev.AskUser(question=question):
                self.end_streams()
                self.info.bell()
                self.info.print(Text.assemble(("? ", "bold yellow"), (sanitize(question), "bold")))
            case ev.UserAnswered():
                pass  # typed answers are on screen already; the asker notes the others
            case ev.FinalAnswer(text=text):
                if not self._answered and text:
                    self.write_answer(text)
                self.end_streams()
            case ev.StepFinished(step=step):
                self.end_streams()
                self.info.rule(Text(step_title(step, self._max_steps)), style="dim", characters="─")
            case ev.RunFinished(run=run):
                self.end_streams()
                self._finished(run)
            case _:
                return False
        return True

    def _finished(self, run: Run) -> None:
        status = str(run.status)
        summary = run_summary(run)
        if status == "completed":
            render_notice(self.info, f"✓ completed · {summary}")
        elif status == "max_steps_reached":
            label = "the answer above is a best effort" if run.best_effort and run.output else "no answer"
            render_notice(self.info, f"■ step limit reached ({label}) · {summary}")
            render_notice(self.info, f"  continue with: persona agent --resume {run.id} --max-steps N")
        elif status == "spend_cap_reached":
            self.info.print(Text(f"✗ {sanitize(run.error or 'the spend cap was reached')}", style="red"), soft_wrap=not self.info.is_terminal)
            render_notice(self.info, f"■ spend cap reached · {summary}")
            render_notice(self.info, f"  continue with: persona agent --resume {run.id} --max-cost USD")
        elif status == "needs_input":
            render_notice(self.info, f"⏸ waiting for an answer · {summary}")
            render_notice(self.info, f"  answer it with: persona agent --resume {run.id}")
        elif status == "cancelled":
            render_notice(self.info, f"⏹ cancelled · {summary}")
            render_notice(self.info, f"  continue with: persona agent --resume {run.id}")
        else:
            self.info.print(Text(f"✗ {sanitize(run.error or 'the run failed')}", style="red"), soft_wrap=not self.info.is_terminal)
            render_notice(self.info, f"✗ error · {summary}")


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
