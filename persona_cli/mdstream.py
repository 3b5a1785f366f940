"""Streaming markdown for model replies: a stable prefix printed once plus a small live tail.

The reply's source is split into a *committed* prefix (complete top-level markdown blocks) and
an *open* suffix (the block still being written). Committed blocks are rendered once and their
lines printed once into normal scrollback; only the open suffix is re-rendered on a repaint and
shown in a small Rich ``Live`` region. Total work is therefore linear in the reply length.

A repaint is cheaper still when the new text is plain words that fit on the open paragraph's
last line: that line alone is extended and redrawn (:mod:`persona_cli.mdtail`). Full renders
of the open block are paced by their cost (``RENDER_PACE``); ``finish()`` always does one, so
the transcript is exactly the whole reply rendered at once.
"""

from __future__ import annotations

import copy
import re
import time
from asyncio import CancelledError
from collections.abc import Callable
from types import TracebackType

from markdown_it import MarkdownIt
from markdown_it.token import Token
from rich.console import Console, ConsoleOptions, RenderResult
from rich.live import Live
from rich.markdown import Markdown
from rich.segment import Segment
from rich.text import Text

from persona_cli.mdtail import BSU, ESU, TailPatch, RawControl, markdown_class, redraw_last_line
from persona_cli.render import render_notice
from persona_cli.term import sanitize

__all__ = ["MarkdownStream"]

Line = list[Segment]

_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})(.*)$")
_LIST_ITEM = re.compile(r"(?:[-+*]|\d{1,9}[.)])(?:[ \t]|$)")
_TABLE_RULE = re.compile(r"[ \t]*\|?[ \t]*:?-+:?[ \t]*(?:\|[ \t]*:?-+:?[ \t]*)*\|?[ \t]*$")
_MARGIN_LINE = re.compile(r"\n(?=\S)")
# The same parser configuration rich.markdown.Markdown uses, so block boundaries agree.
_PARSER = MarkdownIt().enable("strikethrough").enable("table")
# A full render (markdown-it + Rich) of the open block takes 1-3 ms; one is due again only after
# RENDER_PACE times as long as the last took (at least min_refresh, at most max_refresh): full
# renders then use under 1% of a core, and show a new code line or list item 3-6 times a second.
# Paints that only extend the last line (mdtail.TailPatch) cost ~0.05 ms and run at up to
# 1 / min_refresh (20) times a second, so prose still streams word by word.
RENDER_PACE = 150


class _Lines:
    """Pre-rendered lines; each line is followed by a newline."""

    def __init__(self, lines: list[Line]) -> None:
        self.lines = lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        newline = Segment.line()
        for line in self.lines:
            yield from line
            yield newline


class _TailView:
    """The Live renderable: always the stream's current tail, so the render hook that runs
    when stable lines are printed above the Live region already draws the new tail."""

    def __init__(self, stream: MarkdownStream) -> None:
        self.stream = stream

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield _Lines(self.stream._tail)


class MarkdownStream:
    """Render a streamed markdown reply: stable lines go to scrollback once, the tail is live.

    For a terminal; :func:`persona_cli.plainstream.answer_stream` picks the plain stream for a
    piped, dumb or NO_COLOR console.
    """

    def __init__(
        self,
        console: Console,
        *,
        live_lines: int = 6,
        min_refresh: float = 1 / 20,
        max_refresh: float = 2.0,
        code_theme: str = "monokai",
    ) -> None:
        self.console = console
        self.live_lines = max(1, live_lines)
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self.code_theme = code_theme
        self._sync = not console.legacy_windows
        self._clock: Callable[[], float] = time.monotonic
        # Instrumentation (tests and the benchmark read these).
        self.rendered_chars = 0  # markdown source characters handed to the renderer
        self.stable_lines = 0  # lines printed to scrollback
        self.paints = 0
        self.patched_paints = 0  # paints that extended the tail's last line in place
        self._finished = False
        self._live: Live | None = None
        self._template: Markdown | None = None
        self._reset()

    def _reset(self) -> None:
        self._chunks: list[str] = []  # every delta, for .text
        self._pending: list[str] = []  # deltas not yet folded into _open
        self._open = ""  # source after the committed prefix
        self._scan_pos = 0  # offset in _open of the first line not yet scanned
        self._scan_line = 0  # index of that line within _open
        self._fence: tuple[str, int] | None = None  # (char, length) of an open code fence
        self._fence_at = 0  # offset in _open of the line that opened it
        self._after_blank = False
        self._in_list = False
        self._candidates: list[tuple[int, int]] = []  # (offset, line) where a block may start
        self._separate = False  # Rich puts a blank line before the next top-level block
        self._tail: list[Line] = []
        self._parsed: list[Token] = []  # the tokens of the last render
        self._patch: TailPatch | None = None  # how to extend the tail's last line, if possible
        self._patch_width = 0  # the console width it was made for
        self._last_paint = self._last_render = float("-inf")
        self._interval = self._render_interval = 0.0

    # -- public API -----------------------------------------------------------------------

    @property
    def text(self) -> str:
        return "".join(self._chunks)

    def update(self, delta: str) -> None:
        if self._finished:
            raise RuntimeError("MarkdownStream.update() after finish()")
        if not delta:
            return
        self._chunks.append(delta)
        self._pending.append(sanitize(delta))
        if self._clock() - self._last_paint >= self._interval:
            self._paint()

    def finish(self, *, interrupted: bool = False) -> None:
        if self._finished:
            return
        self._finished = True
        self._fold_pending()
        try:
            lines = self._render_block(self._open)
        except Exception:
            # Never leave the Live region (and a hidden cursor) behind; show the raw text.
            options = self.console.options
            lines = self.console.render_lines(Text(self._open), options, pad=False)
        self._open = ""
        self._tail = []
        self._frame(lines, stop=True)
        if interrupted:
            render_notice(self.console, "⏹ interrupted")

    def discard(self) -> None:
        """Abandon the partial reply: drop the live tail, start over on the next update."""
        if self._finished:
            return
        if self._live is not None:
            self._tail = []
            self._frame([], stop=True)
        self._reset()

    def __enter__(self) -> MarkdownStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        interrupted = (KeyboardInterrupt, CancelledError)
        self.finish(interrupted=exc_type is not None and issubclass(exc_type, interrupted))

    # -- internals --------------------------------------------------------------------------

    def _fold_pending(self) -> None:
        if self._pending:
            self._open += "".join(self._pending)
            self._pending.clear()

    def _paint(self) -> None:
        started = self._clock()
        if not self._patch_tail():
            if started - self._last_render < self._render_interval:
                return  # a full render is not due yet: the pending text waits for it
            self._fold_pending()
            self._scan()
            stable = self._commit()
            source = self._preview_source()
            preview = self._render_block(source, preview=True)
            height = max(1, min(self.live_lines, self.console.height - 1))
            self._tail = preview[-height:]
            tokens = self._parsed if preview else []
            self._patch = TailPatch.after(tokens, source, preview[-1]) if preview else None
            self._patch_width = self.console.width
            self._frame(stable)
            self._last_render = self._clock()
            elapsed = self._last_render - started
            self._render_interval = min(max(elapsed * RENDER_PACE, self.min_refresh), self.max_refresh)
        self.paints += 1
        self._last_paint = self._clock()
        elapsed = self._last_paint - started
        self._interval = min(max(elapsed * 10, self.min_refresh), self.max_refresh)

    def _patch_tail(self) -> bool:
        """Repaint by extending the tail's last line with the pending plain words, if that
        is exactly what a full render would show (see :mod:`persona_cli.mdtail`)."""
        if self._patch is None or self.console.width != self._patch_width:
            return False  # (a resized terminal needs the paragraph wrapped again)
        line = self._patch.extend("".join(self._pending))
        if line is None:
            self._patch = None
            return False
        # The only line the delta can complete is this paragraph's last, which starts nothing
        # new, so nothing can be committed now; _scan() catches up on the next full render.
        self._fold_pending()
        self._tail[-1] = line
        if self._live is None:
            self._frame([])
        else:  # only the last line changed: redraw just that one (the Live region keeps its shape)
            redraw_last_line(self.console, line, sync=self._sync)
        self.patched_paints += 1
        return True

    def _scan(self) -> None:
        """Walk the newly completed lines, tracking fences and where a top-level block may start."""
        text = self._open
        pos, index = self._scan_pos, self._scan_line
        while (end := text.find("\n", pos)) != -1:
            line = text[pos:end]
            if self._fence is not None:
                m = _FENCE.match(line)
                char, length = self._fence
                if m and m[1][0] == char and len(m[1]) >= length and not m[2].strip():
                    self._fence = None
            elif not line.strip():
                self._after_blank = pos > 0
            else:
                at_margin = line[0] not in " \t"
                is_item = at_margin and _LIST_ITEM.match(line) is not None
                # A list item after a blank line usually continues the list; skip the parse.
                if self._after_blank and at_margin and not (is_item and self._in_list):
                    self._candidates.append((pos, index))
                if is_item:
                    self._in_list = True
                elif self._after_blank and at_margin:
                    self._in_list = False
                self._after_blank = False
                m = _FENCE.match(line)
                if m and not (m[1][0] == "`" and "`" in m[2]):
                    self._fence, self._fence_at = (m[1][0], len(m[1])), pos
            pos, index = end + 1, index + 1
        self._scan_pos, self._scan_line = pos, index

    def _commit(self) -> list[Line]:
        """Render and return the lines of every block that can no longer change."""
        if not self._candidates:
            return []
        last_offset = self._candidates[-1][0]
        upto = self._open.index("\n", last_offset) + 1
        # A block that starts at a candidate line in the parse of the text so far proves every
        # block before it is closed: CommonMark never reopens a closed block.
        starts = {
            t.map[0]
            for t in _PARSER.parse(self._open[:upto])
            if t.level == 0 and t.nesting >= 0 and t.map
        }
        self.rendered_chars += upto
        chosen = next(((o, i) for o, i in reversed(self._candidates) if i in starts), None)
        self._candidates.clear()
        if chosen is None:
            return []
        offset, index = chosen
        lines = self._render_block(self._open[:offset])
        self._open = self._open[offset:]
        self._scan_pos -= offset
        self._scan_line -= index
        self._fence_at -= offset
        return lines

    def _render_block(self, source: str, *, preview: bool = False) -> list[Line]:
        """Render markdown blocks to lines exactly as they would appear inside the whole reply."""
        if not source.strip():
            return []
        # Whether Rich puts a blank line before a block depends on the element closed just
        # before it, so render after a one-line stand-in paragraph and drop that line.
        lead = self._separate
        if lead:
            source = "P\n\n" + source
        self.rendered_chars += len(source)
        markdown = self._markdown(source)
        self._parsed = markdown.parsed
        options = self.console.options.update_width(self.console.width)
        lines = self.console.render_lines(markdown, options, pad=False)
        top = [t for t in markdown.parsed if t.level == 0 and t.nesting <= 0]
        if not preview and len(top) > lead:
            self._separate = top[-1].type != "hr"  # Rich adds no blank line after a rule
        return lines[1:] if lead else lines

    def _markdown(self, source: str) -> Markdown:
        """``Markdown(source)`` without building a new parser each time: Rich's constructor
        makes a fresh MarkdownIt (~0.7 ms, a quarter of a repaint); ours is configured alike."""
        if self._template is None:
            self._template = markdown_class()("", code_theme=self.code_theme)
        markdown = copy.copy(self._template)
        markdown.markup = source
        markdown.parsed = _PARSER.parse(source)
        return markdown

    def _preview_source(self) -> str:
        """The open suffix, or for a very long open block just its end (the tail is all we show)."""
        text = self._open
        if self._fence is not None:
            # Code lines render one by one: the last few source lines are enough for the tail.
            cut = len(text)
            for _ in range(self.live_lines):
                cut = text.rfind("\n", 0, cut)
                if cut <= self._fence_at:
                    return text
            # Reopen the code block inside the window so it still renders as code.
            return text[self._fence_at : text.index("\n", self._fence_at) + 1] + text[cut + 1 :]
        # Prose re-wraps if cut, so keep a generous window: it only bounds pathological blocks.
        budget = max(2000, 4 * self.live_lines * self.console.width)
        if len(text) <= budget:
            return text
        margin = _MARGIN_LINE.search(text, len(text) - budget)  # don't start inside an item
        cut = margin.end() if margin else len(text) - budget
        first = text.find("\n")
        second = text.find("\n", first + 1)
        if 0 < first < second < cut and "|" in text[:second]:
            if _TABLE_RULE.match(text, first + 1, second):
                return text[: second + 1] + text[cut:]  # keep a table's header row and rule
        return text[cut:]

    def _frame(self, stable: list[Line], *, stop: bool = False) -> None:
        """Print ``stable`` above the live region and redraw the tail, as one terminal update."""
        console = self.console
        if self._live is None:
            if stop or (not stable and not self._tail):
                if stable:
                    console.print(_Lines(stable))
                    self.stable_lines += len(stable)
                return
            self._live = Live(
                _TailView(self),
                console=console,
                auto_refresh=False,
                transient=True,
                redirect_stdout=False,
                redirect_stderr=False,
                vertical_overflow="crop",
            )
            self._live.start()
        with console:
            if self._sync:
                console.control(RawControl(BSU))
            if stop:
                self._live.stop()
                self._live = None
                if stable:
                    console.print(_Lines(stable))
            elif stable:
                console.print(_Lines(stable))  # the Live render hook redraws the tail below
            else:
                self._live.refresh()
            if self._sync:
                console.control(RawControl(ESU))
        self.stable_lines += len(stable)


