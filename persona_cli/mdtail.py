"""Cheap repaints for :class:`persona_cli.mdstream.MarkdownStream`'s live tail.

Most deltas of a streamed reply add a few plain words to the paragraph being written. Rendered
again, such a delta changes only the end of the last line, as long as it still fits there: the
paragraph's earlier line breaks cannot move (Rich wraps greedily), and its styles cannot change
(the delta holds no markdown syntax). :class:`TailPatch` remembers, from the last full render,
where that line's text ends and how much room is left, and extends the line in place.
Anything else (a newline, markdown punctuation, a line that would wrap, a code block, a table,
a heading) falls back to a full render, which also recomputes the patch.

:func:`markdown_class` is ``rich.markdown.Markdown`` with code blocks that reuse their Pygments
lexer and theme: Rich looks both up by name on every render, a few ms per repaint of an open
code block, for the same output.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from markdown_it.token import Token
from pygments.lexer import Lexer
from pygments.lexers import get_lexer_by_name
from pygments.util import ClassNotFound
from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderResult
from rich.control import Control, ControlType
from rich.markdown import CodeBlock, Markdown
from rich.segment import Segment
from rich.style import Style
from rich.syntax import Syntax, SyntaxTheme

__all__ = ["BSU", "ESU", "RawControl", "TailPatch", "markdown_class", "plain_words", "redraw_last_line"]

Line = list[Segment]
BSU, ESU = "\x1b[?2026h", "\x1b[?2026l"  # DEC 2026 begin/end synchronized update

# Characters that never start, end or change inline markdown in the middle of a line (with
# Rich's parser: CommonMark, no linkify, no typographer). Left out, among others: * _ ` ~ [ ]
# < > & \ | ! ; and every kind of whitespace but the space. Parentheses only matter after a
# link text ("[text](url)"), so they count as plain in a paragraph without a "[".
_PLAIN = frozenset(" .,:?'\"/%@$^{}+=-#")
_PARENS = frozenset("()")
_CONTAINER_CLOSES = frozenset({"list_item_close", "bullet_list_close", "ordered_list_close", "blockquote_close"})


def plain_words(text: str, parens: bool = False) -> bool:
    """The delta is plain text that cannot start a block or change inline markup."""
    return all(c in _PLAIN or c.isalnum() or (parens and c in _PARENS) for c in text)


class TailPatch:
    """The last rendered line of an open paragraph, ready to take more plain words."""

    def __init__(self, head: Line, style: Style | None, pad: int, pad_style: Style | None, held: str) -> None:
        self.head = head  # the line up to its last character of text
        self.style = style  # the style of that text, which new words share
        self.pad = pad  # cells of padding left after it
        self.pad_style = pad_style
        self.held = held  # trailing spaces of the source: shown only once a word follows them
        self.parens = False  # parentheses are plain here (the paragraph has no link text)

    @classmethod
    def after(cls, tokens: list[Token], source: str, line: Line) -> TailPatch | None:
        """The patch for ``line``, the last line of the full render of ``source``, or None when
        the source does not end in a paragraph's plain text (the patch would not be exact)."""
        end = len(tokens) - 1
        while end >= 0 and tokens[end].type in _CONTAINER_CLOSES:
            end -= 1  # a paragraph inside list items and block quotes is fine
        if end < 2 or tokens[end].type != "paragraph_close" or tokens[end - 1].type != "inline":
            return None
        inline = tokens[end - 1]
        children = inline.children or []
        if not children or children[-1].type != "text" or not children[-1].content.strip():
            return None  # ends in bold, code, a link...: new words would not share its style
        last = inline.content.rsplit("\n", 1)[-1]
        shown = source.rstrip(" ")
        if not last[:1].isalpha() or not shown.endswith(last) or not plain_words(last[-1]):
            return None  # a line starting with a letter cannot turn into another block, and
            # after plain text no delta of plain words can complete an escape or an entity
        text = "".join(segment.text for segment in line)
        stop = len(text.rstrip(" "))
        if not stop or text[stop - 1] != last[-1]:
            return None
        head: Line = []
        pad_styles: set[Style | None] = set()
        style: Style | None = None
        at = 0
        for segment in line:
            if segment.control:
                return None
            size = len(segment.text)
            if at + size <= stop:
                head.append(segment)
            elif at >= stop:
                pad_styles.add(segment.style)
            else:
                head.append(Segment(segment.text[: stop - at], segment.style))
                pad_styles.add(segment.style)
            if at < stop <= at + size:
                style = segment.style
            at += size
        if len(pad_styles) > 1:
            return None
        pad_style = next(iter(pad_styles)) if pad_styles else style
        patch = cls(head, style, cell_len(text[stop:]), pad_style, source[len(shown):])
        patch.parens = "[" not in inline.content
        return patch

    def extend(self, delta: str) -> Line | None:
        """The line with ``delta`` added, or None (the patch unchanged) when a full render is
        needed: the delta is not plain words (:func:`plain_words`), or they do not fit (the
        paragraph must wrap). Newlines may end the delta: they change nothing on screen yet."""
        if "\n" in self.held:
            return None  # what follows a newline may start a new block
        body = delta.rstrip("\n")
        if "\n" in body or not plain_words(body, self.parens):
            return None
        more = self.held + delta
        words = more.rstrip(" \n")
        width = cell_len(words)
        if width > self.pad:
            return None
        if words:
            self.head.append(Segment(words, self.style))
            self.pad -= width
        self.held = more[len(words):]
        return [*self.head, Segment(" " * self.pad, self.pad_style)] if self.pad else list(self.head)


class RawControl(Control):
    """A control segment carrying an arbitrary escape sequence (Rich has no DEC 2026 type)."""

    def __init__(self, code: str) -> None:
        self.segment = Segment(code, None, [(ControlType.BELL,)])


class _Write(Control):
    """Styled text sent with ``Console.control``, which bypasses a Live region's render hook."""

    def __init__(self, segment: Segment) -> None:
        self.segment = segment


def redraw_last_line(console: Console, line: Line, *, sync: bool) -> None:
    """Overwrite the line the cursor is on (the last of a Live region) with ``line``."""
    with console:
        console.control(
            *([RawControl(BSU)] if sync else []),
            Control(ControlType.CARRIAGE_RETURN, (ControlType.ERASE_IN_LINE, 2)),
            *map(_Write, line),
            *([RawControl(ESU)] if sync else []),
        )


@cache
def _lexer(name: str, tab_size: int) -> Lexer | str:
    try:  # the options Syntax.lexer passes
        return get_lexer_by_name(name, stripnl=False, ensurenl=True, tabsize=tab_size)
    except ClassNotFound:
        return name  # Syntax falls back to plain text for it, as for an unknown name


@cache
def _theme(name: str) -> SyntaxTheme:
    return Syntax.get_theme(name)


class _CodeBlock(CodeBlock):
    """rich.markdown.CodeBlock, with its lexer and theme looked up once per name."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        code = str(self.text).rstrip()
        yield Syntax(code, _lexer(self.lexer_name, 8), theme=_theme(self.theme), word_wrap=True, padding=1)


@cache
def markdown_class() -> type[Markdown]:
    elements: dict[str, Any] = {**Markdown.elements, "fence": _CodeBlock, "code_block": _CodeBlock}
    return type("CachedMarkdown", (Markdown,), {"elements": elements})
