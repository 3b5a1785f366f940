"""The approval question shows the whole tool call before yes/no, or says what is hidden."""

from __future__ import annotations

import asyncio
import io

from persona.schema.tools import ToolCall
from rich.console import Console

from persona_cli.approval import SHOWN_LINES, make_approver


class Answers:
    """A prompt session that answers from a list and records the questions."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)
        self.questions: list[str] = []

    async def prompt_async(self, question: str, **_kwargs: object) -> str:
        self.questions.append(question)
        return self.answers.pop(0)


def ask(call: ToolCall, *answers: str) -> tuple[bool, str, Answers]:
    buffer = io.StringIO()
    info = Console(file=buffer, force_terminal=False, width=60)
    session = Answers(*answers)
    approve = make_approver(auto_approve=False, interactive=True, info=info, prompt_session=lambda: session)
    return asyncio.run(approve(call)), buffer.getvalue(), session


def test_a_long_url_is_shown_whole_before_the_question() -> None:
    url = "https://example.com/" + "segment/" * 30 + "the-end?token=visible-tail"
    approved, shown, session = ask(ToolCall(name="web_fetch", args={"url": url}), "y")
    assert approved and "the-end?token=visible-tail" in shown.replace("\n", "")
    assert "[v]iew" not in session.questions[0]


def test_a_long_file_body_says_how_much_is_hidden_and_v_shows_it() -> None:
    body = "\n".join(f"line {n}" for n in range(1, 101))
    approved, shown, session = ask(ToolCall(name="file_write", args={"path": "notes.md", "content": body}), "v", "n")
    assert not approved
    hidden = 100 + 1 - SHOWN_LINES  # the path line and 100 body lines
    assert f"{hidden} more lines not shown" in shown and "[v]iew all" in session.questions[0]
    assert shown.count("line 100") == 1 and shown.count("line 1\n") == 2  # shown first, then again in full
