"""The streaming markdown renderer: scrollback gets every line exactly once, the tail is live."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console
from rich.markdown import Markdown

from persona_cli.render import (
    MarkdownStream,
    render_notice,
    render_tool_call,
    render_tool_result,
)
from persona_cli.plainstream import PlainStream, answer_stream
from persona_cli.term import console_is_plain

WIDTH = 80

# -- a tiny terminal emulator ------------------------------------------------------------------

# Each cell records the SGR style and OSC 8 link in effect when it was written; Rich's random
# link ids are dropped so two renders of the same markdown compare equal.
_ESC = re.compile(r"\x1b\[(\??)(\d*(?:;\d+)*)([A-Za-z])|\x1b\]8;[^;]*;([^\x1b]*)\x1b\\")


class Screen:
    """Infinite-scrollback terminal: text, \\n, \\r, cursor up, erase line, SGR, OSC 8.

    Anything else fails the test, so a stray escape sequence cannot go unnoticed.
    """

    def __init__(self) -> None:
        self.rows: list[list[str]] = [[]]
        self.row = self.col = 0
        self.max_up = 0  # how far above the bottom row the cursor ever went
        self.sgr = ""
        self.link = ""

    def feed(self, data: str) -> Screen:
        i = 0
        while i < len(data):
            if data[i] == "\x1b":
                m = _ESC.match(data, i)
                assert m, f"unexpected escape {data[i : i + 12]!r}"
                private, params, cmd, link = m.groups()
                if link is not None:
                    self.link = f"<link {link}>" if link else ""
                elif private:
                    assert params + cmd in {"25l", "25h", "2026h", "2026l"}, m.group()
                elif cmd == "m":
                    self.sgr = "" if params in ("", "0") else self.sgr + m.group()
                elif cmd == "A":
                    self.row -= int(params or 1)
                    assert self.row >= 0
                    self.max_up = max(self.max_up, len(self.rows) - 1 - self.row)
                elif cmd == "K" and params == "2":
                    self.rows[self.row] = []
                else:
                    raise AssertionError(f"unexpected escape {m.group()!r}")
                i = m.end()
                continue
            ch = data[i]
            if ch == "\n":
                self.row, self.col = self.row + 1, 0
                if self.row == len(self.rows):
                    self.rows.append([])
            elif ch == "\r":
                self.col = 0
            else:
                line = self.rows[self.row]
                line.extend([""] * (self.col + 1 - len(line)))
                line[self.col] = self.link + self.sgr + ch
                self.col += 1
            i += 1
        return self

    def lines(self) -> list[str]:
        """The finished transcript: every row above the cursor; nothing may be left below it."""
        assert self.col == 0 and not any(self.rows[self.row :]), "output left below the cursor"
        return ["".join(row) for row in self.rows[: self.row]]


def plain_text(line: str) -> str:
    return re.sub(r"\x1b\[[\d;]*m|<link [^>]*>", "", line)


# -- helpers -----------------------------------------------------------------------------------


def tty(color: str | None = None, width: int = WIDTH) -> Console:
    return Console(
        file=io.StringIO(),
        force_terminal=True,
        width=width,
        height=30,
        color_system=color,  # type: ignore[arg-type]
        legacy_windows=False,
        _environ={},
    )


def piped() -> Console:
    return Console(file=io.StringIO(), force_terminal=False, width=WIDTH, _environ={})


def output(console: Console) -> str:
    return console.file.getvalue()  # type: ignore[attr-defined]


def one_shot(markdown: str, color: str | None = None, width: int = WIDTH) -> list[str]:
    console = tty(color, width)
    console.print(Markdown(markdown))
    return Screen().feed(output(console)).lines()


def stream(
    console: Console, text: str, step: int = 3, *, finish: bool = True, **kwargs: object
) -> MarkdownStream | PlainStream:
    """Feed ``text`` in ``step``-char deltas, repainting on every delta unless told otherwise."""
    kwargs = {"min_refresh": 0.0, "max_refresh": 0.0, **kwargs}
    s = answer_stream(console, **kwargs)  # what a reply gets: plain on a plain console
    for i in range(0, len(text), step):
        s.update(text[i : i + step])
    if finish:
        s.finish()
    return s


DOC = """# Release notes

Intro paragraph with **bold**, *emphasis*, `inline code`, ~~strike~~ and a
[link](https://example.com) that wraps across more than one terminal line at eighty columns.

## Install

1. Create a virtualenv:

   ```bash
   python -m venv .venv

   source .venv/bin/activate
   ```

2. Install the package

3. Run it

- bullet one
- bullet two
  - nested bullet
- bullet three

```python
def fib(n: int) -> int:
    # [bold red]not markup[/]

    return n if n < 2 else fib(n - 1) + fib(n - 2)
```

> A quote that
> spans two lines.

> And a second quote.

| Option | Meaning |
|--------|---------|
| `-v`   | verbose |
| `-q`   | quiet   |

---
Text right after a rule.

~~~
tilde fence with ``` inside

~~~

Setext heading
==============

    indented code

    more indented code

Final words.
"""


# -- scrollback invariants ---------------------------------------------------------------------


@pytest.mark.parametrize("step", [1, 3, 7])
def test_every_stable_line_printed_once(step: int) -> None:
    console = tty()
    s = stream(console, DOC, step)
    raw = output(console)
    screen = Screen().feed(raw)
    expected = one_shot(DOC)
    # The transcript left in the terminal is exactly the one-shot render: nothing doubled.
    assert screen.lines() == expected
    # Every line went through the print-above-Live path exactly once...
    assert s.stable_lines == len(expected)
    # ...and the cursor never went back further than the live tail, so a line that has
    # scrolled above the tail is never touched again.
    assert screen.max_up <= s.live_lines
    assert s.paints > 50
    assert raw.count("\x1b[?2026h") == raw.count("\x1b[?2026l") > 0


def test_styles_and_links_match_one_shot_render() -> None:
    console = tty("truecolor")
    stream(console, DOC, 4)
    assert Screen().feed(output(console)).lines() == one_shot(DOC, "truecolor")


_BLOCKS = [
    "# Heading one",
    "## Heading *two*",
    "A paragraph with **bold**, `code` and a [link](https://example.com). " * 3,
    "Soft\nbreaks\nhere.",
    "- a\n- b\n  - nested\n- c",
    "1. one\n\n2. two\n\n3. three",
    "1. step\n\n   ```bash\n   ls\n\n   echo hi\n   ```\n\n2. next",
    "* star\n\n  continued in item\n\n* another",
    "```python\ndef f():\n\n    return 1\n```",
    "~~~\nraw ``` text\n\n~~~",
    "````md\n```\ninner\n```\n````",
    "> quote\n> more\n\n> second quote",
    "| h1 | h2 |\n|----|----|\n| a | b |",
    "---",
    "***",
    "Setext\n======",
    "    indented code\n\n    still code",
    "<!-- comment\n\nstill comment -->",
    "Literal [bold red]markup[/] :smile:",
    "1) paren list\n2) second",
    "Para\n```\nfence interrupting a paragraph\n```",
]


@settings(max_examples=40, deadline=None)
@given(
    blocks=st.lists(st.sampled_from(_BLOCKS), min_size=1, max_size=14),
    cuts=st.lists(st.integers(1, 9), min_size=1, max_size=30),
    width=st.sampled_from([24, 60, 100]),
    live_lines=st.sampled_from([1, 3, 6]),
    newline=st.booleans(),
)
def test_stream_equals_one_shot_for_any_split(
    blocks: list[str], cuts: list[int], width: int, live_lines: int, newline: bool
) -> None:
    doc = "\n\n".join(blocks) + ("\n" if newline else "")
    console = tty("truecolor", width)
    s = MarkdownStream(console, live_lines=live_lines, min_refresh=0.0, max_refresh=0.0)
    pos = 0
    for n in cuts * (len(doc) // sum(cuts) + 1):
        if pos >= len(doc):
            break
        s.update(doc[pos : pos + n])
        pos += n
    s.finish()
    screen = Screen().feed(output(console))
    expected = one_shot(doc, "truecolor", width)
    assert screen.lines() == expected
    assert s.stable_lines == len(expected)
    assert screen.max_up <= live_lines


def test_open_code_fence_is_not_committed() -> None:
    console = tty()
    s = stream(console, "Intro paragraph.\n\n```python\nx = 1\n", finish=False)
    assert s.stable_lines == 1  # just the intro paragraph
    # Blank lines and unindented lines inside the fence do not end it.
    for delta in ["\n\n", "print(x)\n", "\n", "# not a heading\n", "\nmore\n"]:
        s.update(delta)
        assert s.stable_lines == 1
    s.update("```\n\nAfter the code.\n")
    assert s.stable_lines > 1  # the closed block is committed once something follows it
    s.finish()
    lines = [plain_text(x) for x in Screen().feed(output(console)).lines()]
    assert lines == one_shot(
        "Intro paragraph.\n\n```python\nx = 1\n\n\nprint(x)\n\n# not a heading\n\nmore\n```\n\n"
        "After the code.\n"
    )


def test_unfinished_blocks_stay_live() -> None:
    console = tty()
    s = stream(console, "1. first\n\n2. second\n\n", finish=False)
    assert s.stable_lines == 0  # the list may still continue
    s.update("Not a list item.\n")
    assert s.stable_lines > 0  # now it cannot
    s.update("| a | b |\n")
    committed = s.stable_lines
    s.update("|---|---|\n| 1 | 2 |\n")  # turns the open paragraph into a table
    assert s.stable_lines == committed
    s.finish()
    assert Screen().feed(output(console)).lines() == one_shot(s.text)


def test_rich_markup_in_model_text_is_literal() -> None:
    text = "Say [bold red]hi[/] and [link=x]there[/link] :smile:\n"
    console = tty("truecolor")
    stream(console, text)
    lines = [plain_text(x).rstrip() for x in Screen().feed(output(console)).lines()]
    assert lines == ["Say [bold red]hi[/] and [link=x]there[/link] :smile:"]

    console = piped()
    stream(console, text)
    assert output(console) == text


def test_escape_sequences_in_model_text_are_neutralised() -> None:
    console = tty()
    stream(console, "evil \x1b[2J clear\n")
    assert "\x1b[2J" not in output(console)
    assert "␛[2J" in "".join(Screen().feed(output(console)).lines())


# -- plain mode --------------------------------------------------------------------------------


def test_plain_mode_writes_deltas_verbatim() -> None:
    console = piped()
    deltas = ["# Ti", "tle\n\n", "Some **bold** ", "[red]x[/]\n```py\n", "x = 1\n```"]
    s = answer_stream(console)
    for delta in deltas:
        s.update(delta)
        assert output(console) == "".join(deltas[: deltas.index(delta) + 1])
    s.finish()
    assert output(console) == "".join(deltas) + "\n"  # finish ends the line
    assert "\x1b" not in output(console)
    assert s.text == "".join(deltas)


class _TtyBuffer(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    "console",
    [
        Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"}),
        Console(file=io.StringIO(), force_terminal=True, _environ={"NO_COLOR": "1"}),
        # what make_consoles builds for a NO_COLOR terminal: not a "terminal" to Rich, a TTY all the same
        Console(file=_TtyBuffer(), force_terminal=False, no_color=True, color_system=None),
    ],
    ids=["dumb", "no-color", "made-plain"],
)
def test_plain_mode_on_a_terminal_still_neutralises_escapes(console: Console) -> None:
    stream(console, "evil \x1b[2J\x9b1m clear\r\n", step=100)  # one delta: CRLF not split
    assert output(console) == "evil ␛[2J\ufffd1m clear\n"


def test_plain_mode_piped_neutralises_escapes_too_and_keeps_newlines_and_tabs() -> None:
    """`persona chat ... | tee out.txt` shows the reply on a terminal: OSC 52 (clipboard), OSC 0
    (window title) and CSI 6n (a cursor report typed back) must not reach it."""
    console = piped()
    replies = ["a\tb \x1b]52;c;ZXZpbA==\x07 \x1b]0;pwned\x07 \x1b[6n done\r", "\nnext line\n"]  # a CRLF split in two
    s = answer_stream(console)
    for delta in replies:
        s.update(delta)
    s.finish()
    shown = output(console)
    assert "\x1b" not in shown and "\x07" not in shown and "\r" not in shown
    assert shown == "a\tb ␛]52;c;ZXZpbA==␇ ␛]0;pwned␇ ␛[6n done\nnext line\n"


def test_plain_mode_adds_no_extra_newline() -> None:
    console = piped()
    stream(console, "done\n")
    assert output(console) == "done\n"


@pytest.mark.parametrize(
    "console",
    [
        Console(file=io.StringIO(), force_terminal=True, _environ={"TERM": "dumb"}),
        Console(file=io.StringIO(), force_terminal=True, _environ={"NO_COLOR": "1"}),
        Console(file=io.StringIO(), force_terminal=False),
    ],
    ids=["dumb", "no-color", "pipe"],
)
def test_plain_mode_detection(console: Console) -> None:
    assert console_is_plain(console)
    stream(console, "**x** `y`\n")
    assert output(console) == "**x** `y`\n"


def test_tty_is_not_plain() -> None:
    assert not console_is_plain(tty())


# -- finish, interrupt, discard ----------------------------------------------------------------


def test_interrupted_finish_prints_marker() -> None:
    console = tty()
    stream(console, "Partial answer\n\nstill writ", finish=False).finish(interrupted=True)
    lines = [x.rstrip() for x in Screen().feed(output(console)).lines()]
    assert lines == ["Partial answer", "", "still writ", "⏹ interrupted"]

    console = piped()
    stream(console, "Partial", finish=False).finish(interrupted=True)
    assert output(console) == "Partial\n⏹ interrupted\n"


def test_context_manager_marks_keyboard_interrupt() -> None:
    console = tty()
    with pytest.raises(KeyboardInterrupt), MarkdownStream(console) as s:
        s.update("Hello")
        raise KeyboardInterrupt
    lines = [x.rstrip() for x in Screen().feed(output(console)).lines()]
    assert lines == ["Hello", "⏹ interrupted"]


def test_finish_is_idempotent_and_final() -> None:
    console = tty()
    s = stream(console, "Hi\n")
    before = output(console)
    s.finish()
    assert output(console) == before
    with pytest.raises(RuntimeError):
        s.update("more")


def test_empty_reply_prints_nothing() -> None:
    console = tty()
    MarkdownStream(console).finish()
    assert Screen().feed(output(console)).lines() == []


def test_discard_drops_the_tail_and_starts_fresh() -> None:
    console = tty()
    s = stream(console, "Committed paragraph.\n\n## Heading\n\nhalf a sent", finish=False)
    assert s.stable_lines == 1  # the heading waits for a complete line after it
    s.discard()
    assert s.text == ""
    stream_more = "Fresh **reply**.\n"
    for i in range(0, len(stream_more), 2):
        s.update(stream_more[i : i + 2])
    s.finish()
    lines = [x.rstrip() for x in Screen().feed(output(console)).lines()]
    assert lines == ["Committed paragraph.", "Fresh reply."]
    assert s.text == stream_more


def test_discard_in_plain_mode_ends_the_line() -> None:
    console = piped()
    s = stream(console, "abandoned", finish=False)
    s.discard()
    s.update("again")
    s.finish()
    assert output(console) == "abandoned\nagain\n"


# -- refresh throttle and cost -----------------------------------------------------------------


def test_adaptive_refresh_throttles_and_finish_flushes() -> None:
    console = tty()
    now = [0.0]
    s = MarkdownStream(console, min_refresh=1.0, max_refresh=2.0)
    s._clock = lambda: now[0]  # a frozen clock: only the first delta may repaint
    for i in range(0, len(DOC), 4):
        s.update(DOC[i : i + 4])
    assert s.paints == 1
    now[0] = 1.0
    s.update(" ")
    assert s.paints == 2
    s.finish()
    assert Screen().feed(output(console)).lines() == one_shot(DOC + " ")


def _rendered_chars(doc: str) -> int:
    return stream(tty(), doc, 8).rendered_chars


_PARAGRAPHS = "Paragraph text that goes on and on. " * 8 + "\n\n- item\n- item\n\n"
_CODE_LINE = "value = compute(value) + 1  # comment\n"


@pytest.mark.parametrize(
    ("short", "long"),
    [
        (DOC * 2, DOC * 4),
        (_PARAGRAPHS * 6, _PARAGRAPHS * 12),
        (f"```python\n{_CODE_LINE * 30}```\n", f"```python\n{_CODE_LINE * 60}```\n"),
    ],
    ids=["mixed", "paragraphs", "one-huge-code-block"],
)
def test_render_work_is_linear_in_reply_length(short: str, long: str) -> None:
    # Repainting on every delta is the worst case; the markdown handed to the renderer over
    # the whole stream must still grow linearly, not quadratically, with the reply length.
    ratio = _rendered_chars(long) / _rendered_chars(short)
    assert 1.5 <= ratio <= 2.5, ratio


# -- one-line helpers --------------------------------------------------------------------------


def test_tool_call_line_is_literal_and_single_line() -> None:
    console = tty("truecolor")
    render_tool_call(console, "search[bold]", {"q": "[red]x[/]\nnext", "n": 3})
    lines = [plain_text(x).rstrip() for x in Screen().feed(output(console)).lines()]
    assert lines == ['⚙ search[bold](q="[red]x[/]\\nnext", n=3)']


def test_tool_result_truncates_and_neutralises() -> None:
    console = tty(width=400)
    render_tool_result(console, "read", "[b]x[/b] \x1b[2J" + "y" * 500, False, 12.4, max_chars=20)
    raw = output(console)
    assert "\x1b[2J" not in raw
    (line,) = [plain_text(x).rstrip() for x in Screen().feed(raw).lines()]
    assert line == "  ↳ ✓ read · 12 ms: [b]x[/b] ␛[2Jyyyyyyy… (493 more chars)"

    console = piped()
    render_tool_result(console, "read", "boom", True, 3.0)
    assert output(console) == "  ↳ ✗ read · 3 ms: boom\n"


def test_notice_is_dim_and_literal() -> None:
    console = tty("truecolor")
    render_notice(console, "↪ fell back to [tier-2]: 429")
    raw = output(console)
    assert "\x1b[2m" in raw
    assert plain_text(Screen().feed(raw).lines()[0]).rstrip() == "↪ fell back to [tier-2]: 429"


# -- the views chat and agent share ------------------------------------------------------------


@pytest.mark.parametrize("view_name", ["chat", "agent"])
def test_both_views_show_reasoning_dim_apart_from_the_reply_and_say_when_a_reply_was_cut(view_name: str) -> None:
    from persona_cli.agent_view import AgentView
    from persona_cli.turn_view import TurnView
    from persona_runtime import events as ev
    from persona_runtime.agentic import events as agent_events

    out, info = piped(), piped()
    view = (TurnView if view_name == "chat" else AgentView)(out=out, info=info)
    view.handle(ev.ThinkingDelta("Weighing the \x1b[31mquestion\x1b[0m."))
    view.handle(ev.TextDelta("The answer.") if view_name == "chat" else agent_events.AnswerDelta("The answer."))
    view.handle(ev.ReplyCut(384, "PERSONA_LOCAL_REPLY_TOKENS"))
    assert output(out).strip() == "The answer."
    shown = output(info)
    assert "Weighing the ␛[31mquestion␛[0m." in shown and "\x1b" not in shown
    assert "384-token limit" in shown and "PERSONA_LOCAL_REPLY_TOKENS" in shown


def test_session_totals_say_0_before_any_turn_and_unpriced_only_for_unpriced_turns() -> None:
    from types import SimpleNamespace

    from persona_cli.turn_view import SessionTotals

    totals = SessionTotals()
    assert totals.cost_text() == "$0"
    turn = SimpleNamespace(prompt_tokens=10, completion_tokens=2, tier="mid", model="m", cost_cents=None)
    totals.add(turn)
    assert totals.cost_text() == "unpriced"
