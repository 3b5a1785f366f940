"""One-line UI helpers (tool calls, notices), and the streaming renderer, loaded lazily.

``MarkdownStream`` lives in :mod:`persona_cli.mdstream`; it pulls in rich.markdown,
markdown-it and pygments (~0.4 s), so it is imported on first use, not at start-up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.text import Text

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.mdstream import MarkdownStream

__all__ = ["MarkdownStream", "is_plain", "render_notice", "render_tool_call", "render_tool_result"]

# Model text may contain raw escape sequences; show them as control pictures instead of
# letting them drive the terminal. Tab, LF and CR are harmless and left alone.
_CONTROL_PICTURES = {c: 0x2400 + c for c in range(32) if chr(c) not in "\t\n\r"}
_CONTROL_PICTURES |= {0x7F: 0x2421} | {c: 0xFFFD for c in range(0x80, 0xA0)}


def __getattr__(name: str) -> Any:
    if name == "MarkdownStream":
        from persona_cli.mdstream import MarkdownStream

        return MarkdownStream
    raise AttributeError(f"module 'persona_cli.render' has no attribute {name!r}")


def is_plain(console: Console) -> bool:
    """True when the console should get raw text: not a TTY, TERM=dumb or NO_COLOR."""
    return not console.is_terminal or console.is_dumb_terminal or console.no_color


def _sanitize(text: str) -> str:
    return text.translate(_CONTROL_PICTURES)


# -- one-line helpers for tool calls and notices ---------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(_sanitize(text).split())


def render_tool_call(console: Console, name: str, arguments: dict[str, Any]) -> None:
    args = ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in arguments.items()
    )
    line = Text(f"⚙ {_one_line(name)}({_one_line(args)})", style="dim")
    console.print(line, no_wrap=True, overflow="ellipsis", markup=False, emoji=False)


def render_tool_result(
    console: Console,
    name: str,
    content: str,
    is_error: bool,
    duration_ms: float,
    max_chars: int = 300,
) -> None:
    body = _one_line(content)
    if len(body) > max_chars:
        body = f"{body[:max_chars]}… ({len(body) - max_chars} more chars)"
    mark = Text("✗ " if is_error else "✓ ", style="red" if is_error else "green")
    line = Text.assemble(
        "  ↳ ", mark, f"{_one_line(name)} · {duration_ms:.0f} ms", (": " if body else ""), body
    )
    line.stylize("dim")
    console.print(line, markup=False, emoji=False)


def render_notice(console: Console, text: str) -> None:
    # Piped or plain: one notice is one line, whatever the width.
    console.print(Text(_one_line(text), style="dim"), markup=False, emoji=False, soft_wrap=not getattr(console, "is_terminal", True))
