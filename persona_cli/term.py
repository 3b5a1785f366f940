"""What the terminal may be sent, and how costs and token counts read: one place for both.

* Plain mode (no colour, no escape codes, no live regions): stdout is not a TTY, ``TERM`` is
  dumb, or ``NO_COLOR`` is set to something other than the empty string (no-color.org).
* Model and tool text never drives the terminal: :func:`sanitize` shows control characters
  as visible pictures instead of sending them.
* One cost format and one token format for chat, agent, slash commands and ``persona logs``.

Standard library only (Rich appears in type hints alone): ``persona logs tail`` and
``persona --help`` import this module, and their start-up time is measured.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from rich.console import Console

__all__ = [
    "DUMB_TERMS",
    "ESTIMATE_MARK",
    "console_is_plain",
    "format_cost",
    "format_tokens",
    "is_tty",
    "no_color_requested",
    "one_line",
    "plain_output",
    "sanitize",
]

#: TERM values that cannot take escape codes; the same two Rich treats as dumb, so a Rich
#: console and :func:`plain_output` never disagree.
DUMB_TERMS = frozenset({"dumb", "unknown"})

# -- plain mode ------------------------------------------------------------------------------


def no_color_requested(environ: Mapping[str, str] | None = None) -> bool:
    """NO_COLOR present and not empty (no-color.org: an empty NO_COLOR means colour is fine)."""
    env = os.environ if environ is None else environ
    return env.get("NO_COLOR", "") != ""


def is_tty(stream: TextIO) -> bool:
    """``stream.isatty()``, and False for a stream that has no such method or is closed."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or already closed
        return False


def plain_output(stream: TextIO | None = None, environ: Mapping[str, str] | None = None) -> bool:
    """True when ``stream`` (stdout) must get plain text: not a TTY, a dumb TERM, or NO_COLOR."""
    env = os.environ if environ is None else environ
    return (
        not is_tty(sys.stdout if stream is None else stream)
        or env.get("TERM", "").lower() in DUMB_TERMS
        or no_color_requested(env)
    )


def console_is_plain(console: Console) -> bool:
    """The same rule for a Rich console that already exists (it may write to a test buffer).

    Rich reads NO_COLOR (non-empty) and TERM (``DUMB_TERMS``) exactly as :func:`plain_output`
    does, and a console made plain by :func:`persona_cli.console.make_consoles` has
    ``no_color`` set and is not a terminal.
    """
    return not console.is_terminal or console.is_dumb_terminal or console.no_color


# -- sanitising ------------------------------------------------------------------------------

# C0 controls except tab and newline -> U+2400.., DEL -> U+2421, C1 (0x80-0x9F, where a single
# byte can start an escape sequence) -> U+FFFD: visible, and inert on any terminal.
_CONTROL_PICTURES: dict[int, int] = {c: 0x2400 + c for c in range(0x20) if chr(c) not in "\t\n"}
_CONTROL_PICTURES[0x7F] = 0x2421
_CONTROL_PICTURES.update(dict.fromkeys(range(0x80, 0xA0), 0xFFFD))


def sanitize(text: str) -> str:
    """``text`` with every control character but tab and newline shown as a picture.

    A CRLF line ending is a newline; a lone CR (which would move the cursor back over what
    was written) is shown as ``␍``.
    """
    return text.replace("\r\n", "\n").translate(_CONTROL_PICTURES)


def one_line(text: str) -> str:
    """Sanitised, with every run of whitespace (newlines too) made one space."""
    return " ".join(sanitize(text).split())


# -- numbers ---------------------------------------------------------------------------------


def format_cost(cents: float | None) -> str:
    """``$0.0012`` (``$1.23`` from a dollar up); ``$0 (local)`` for a model priced at zero (gguf,
    ollama); ``<$0.0001`` for a real but tiny cost; ``unpriced`` when the price is unknown,
    never a bare 0."""
    if cents is None:
        return "unpriced"
    if cents == 0:
        return "$0 (local)"
    dollars = round(cents / 100, 4)
    if dollars == 0:
        return "<$0.0001"
    return f"${dollars:.4f}" if dollars < 1 else f"${cents / 100:,.2f}"


#: In front of tokens and costs that are our own count (the provider reported no usage).
ESTIMATE_MARK = "~"


def format_tokens(n: int) -> str:
    """``950``, ``1.2k``, ``123.4k``, ``1.2M``."""
    if n < 1000:
        return str(n)
    if n < 999_950:  # 999,950 would round to "1000.0k"
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def counted(n: int, noun: str) -> str:
    """``1 turn``, ``2 turns``: the count and the noun, plural when it is not one."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"
