"""The live tail's cheap paints (persona_cli.mdtail): extending the last line in place shows
exactly what a full render would, and a throttled stream leaves exactly the one-shot render."""

from __future__ import annotations

import random

import pytest
from rich.console import Console

from persona_cli.mdstream import MarkdownStream
from tests.unit.test_render import Screen, one_shot, output, tty

PROSE = (
    "Streaming replies are mostly prose: words arrive a few at a time and extend the last line "
    "of the paragraph being written, until it wraps onto the next one. Numbers like 3.14, 42% "
    "and $5 stay plain, as do quotes ('single' and \"double\"), slashes/paths, e-mail@host and "
    "{braces}; parentheses (like these) too.  Trailing spaces are held until a word follows.\n"
)
INLINE = (
    "Then syntax: *emph* and **strong**, `code()`, a [link](https://example.com) (aside), "
    "snake_case_name, esc\\*aped, &amp; &copy; entities, <b>html</b>, ~~gone~~ and `x` (y).\n"
    "A soft break continues it, a hard break  \nends a line, and a trailing backslash\\\n"
    "before more words, a dot\\. and a hash\\# escaped.\n"
)
LISTS = (
    "- a bullet item whose text is long enough to wrap at narrow widths, then goes on\n"
    "- second item with **bold** in it and more words after the bold part\n"
    "  - nested item, plain words only here\n\n"
    "1. first step with words\n"
    "2. second step: words (and parens) then [a link](https://example.org/y)(right after)\n\n"
    "> a quote that keeps going with plain words for a while longer\n"
)
BLOCKS = (
    "# A heading that is typed word by word\n\n"
    "Para after it.\n\n"
    "```python\n\ndef f(x):\n    return x * 2  # doubled\n```\n\n"
    "| name | value |\n|------|-------|\n| a | 1 |\n| bb | 22 |\n\n"
    "Setext turns this\n---\n\n"
    "Words then a line that is only a number\n1\n\n"
    "Averyveryveryveryverylongwordwithoutanyspacesthatmustfoldacrossseveralnarrowlines ok\n"
)
REPLIES = {"prose": PROSE, "inline": INLINE, "lists": LISTS, "blocks": BLOCKS}


def chunks(text: str, sizes: list[int]) -> list[str]:
    out, pos, i = [], 0, 0
    while pos < len(text):
        n = sizes[i % len(sizes)]
        out.append(text[pos : pos + n])
        pos, i = pos + n, i + 1
    return out


class LiveScreen:
    """A Screen fed as the console writes, read with the live region included."""

    def __init__(self, console: Console) -> None:
        self.console, self.screen, self.fed = console, Screen(), 0

    def rows(self) -> list[str]:
        data = output(self.console)
        self.screen.feed(data[self.fed :])
        self.fed = len(data)
        rows = ["".join(row) for row in self.screen.rows]
        while rows and not rows[-1]:
            rows.pop()
        return rows


@pytest.mark.parametrize("width", [24, 80])
@pytest.mark.parametrize("sizes", [[1, 2], [3, 1, 8]], ids=str)
@pytest.mark.parametrize("name", list(REPLIES))
def test_a_patched_paint_shows_what_a_full_render_shows(name: str, sizes: list[int], width: int) -> None:
    # Two streams repaint on every delta; the reference never patches. After each delta the
    # screens (live region included) must be the same, styles and all.
    console, ref_console = tty("truecolor", width), tty("truecolor", width)
    kwargs = {"live_lines": 40, "min_refresh": 0.0, "max_refresh": 0.0}
    s = MarkdownStream(console, **kwargs)  # type: ignore[arg-type]
    ref = MarkdownStream(ref_console, **kwargs)  # type: ignore[arg-type]
    ref._patch_tail = lambda: False  # type: ignore[method-assign]
    screen, ref_screen = LiveScreen(console), LiveScreen(ref_console)
    for delta in chunks(REPLIES[name], sizes):
        s.update(delta)
        ref.update(delta)
        assert screen.rows() == ref_screen.rows(), repr(s.text[-60:])
    assert s.patched_paints > 0 and ref.patched_paints == 0
    s.finish()
    ref.finish()
    assert Screen().feed(output(console)).lines() == Screen().feed(output(ref_console)).lines()


class TickClock:
    """Advances a little on every reading, so renders take time and the throttle engages;
    the test moves it on by the time between two deltas."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 0.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


@pytest.mark.parametrize("width", [30, 100])
@pytest.mark.parametrize("seed", [1, 2])
def test_a_throttled_stream_ends_as_the_one_shot_render(seed: int, width: int) -> None:
    # Varied chunk sizes, some paints skipped, some patched, some full: the transcript left in
    # the terminal is still exactly the whole reply rendered at once, each line printed once.
    doc = "\n".join(REPLIES.values())
    rnd = random.Random(seed)
    sizes = [rnd.randint(1, 12) for _ in range(50)]
    console = tty("truecolor", width)
    s = MarkdownStream(console, live_lines=6)
    s._clock = clock = TickClock(0.0005)
    deltas = chunks(doc, sizes)
    for delta in deltas:
        clock.now += 0.01  # deltas arrive 10 ms apart
        s.update(delta)
    s.finish()
    expected = one_shot(doc, "truecolor", width)
    screen = Screen().feed(output(console))
    assert screen.lines() == expected
    assert s.stable_lines == len(expected)
    assert 0 < s.patched_paints < s.paints < len(deltas)  # throttled, and patches were used
    assert screen.max_up <= s.live_lines


def test_a_patched_paint_redraws_only_the_last_line() -> None:
    console = tty()
    s = MarkdownStream(console, min_refresh=0.0, max_refresh=0.0)
    s.update("- one item\n- two items, and the second is being written")
    before = len(output(console))
    s.update(" word by word")
    assert s.patched_paints == 1
    written = output(console)[before:]
    assert "\x1b[1A" not in written and "\x1b[A" not in written  # no cursor up: one line redrawn
    assert written.count("\x1b[2K") == 1 and "word by word" in written
    s.update("\n- three")  # a new item needs a full render, which redraws the whole tail
    assert s.patched_paints == 1
    s.finish()
    assert Screen().feed(output(console)).lines() == one_shot(s.text)


def test_patches_are_not_used_in_code_or_tables() -> None:
    for text in ("```\ncode line", "| a | b |\n|---|---|\n| c | d"):
        s = MarkdownStream(tty(), min_refresh=0.0, max_refresh=0.0)
        s.update(text)
        s.update(" more")
        assert s.patched_paints == 0, text
        s.finish()


def test_a_resized_terminal_gets_a_full_render() -> None:
    console = tty(width=80)
    s = MarkdownStream(console, min_refresh=0.0, max_refresh=0.0)
    s.update("A paragraph being written")
    s.update(" and more")
    assert s.patched_paints == 1
    console.width = 30  # the terminal was narrowed: the paragraph must wrap again
    s.update(" words")
    assert s.patched_paints == 1
    s.finish()
    assert Screen().feed(output(console)).lines() == one_shot(s.text, width=30)
