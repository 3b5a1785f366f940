"""One-line UI helpers (tool calls, notices), and the streaming renderer, loaded lazily.

``MarkdownStream`` lives in :mod:`persona_cli.mdstream`; it pulls in rich.markdown,
markdown-it and pygments (~0.4 s), so it is imported on first use, not at start-up.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.text import Text

from persona_cli.term import one_line

if TYPE_CHECKING:
    from rich.console import Console

    from persona_cli.mdstream import MarkdownStream

__all__ = ["MarkdownStream", "render_notice", "render_tool_call", "render_tool_result"]


def __getattr__(name: str) -> Any:
    if name == "MarkdownStream":
        from persona_cli.mdstream import MarkdownStream

        return MarkdownStream
    raise AttributeError(f"module 'persona_cli.render' has no attribute {name!r}")


# -- one-line helpers for tool calls and notices (model and tool text made inert by one_line) --


def render_tool_call(console: Console, name: str, arguments: dict[str, Any]) -> None:
    args = ", ".join(
        f"{k}={json.dumps(v, ensure_ascii=False, default=str)}" for k, v in arguments.items()
    )
    line = Text(f"⚙ {one_line(name)}({one_line(args)})", style="dim")
    console.print(line, no_wrap=True, overflow="ellipsis", markup=False, emoji=False)


def render_tool_result(
    console: Console,
    name: str,
    content: str,
    is_error: bool,
    duration_ms: float,
    max_chars: int = 300,
) -> None:
    body = one_line(content)
    if len(body) > max_chars:
        body = f"{body[:max_chars]}… ({len(body) - max_chars} more chars)"
    mark = Text("✗ " if is_error else "✓ ", style="red" if is_error else "green")
    line = Text.assemble(
        "  ↳ ", mark, f"{one_line(name)} · {duration_ms:.0f} ms", (": " if body else ""), body
    )
    line.stylize("dim")
    console.print(line, markup=False, emoji=False)


def render_notice(console: Console, text: str) -> None:
    # Piped or plain: one notice is one line, whatever the width.
    console.print(Text(one_line(text), style="dim"), markup=False, emoji=False, soft_wrap=not getattr(console, "is_terminal", True))
