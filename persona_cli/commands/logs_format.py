"""What `persona logs` prints: one line per turn, a turn in full (`show`), the stats table and chart.

Rich is imported only when a terminal wants colour or a table is drawn, so
``persona logs tail`` costs about as much as ``persona --help``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from typing import Any

import typer

from persona_cli.term import ESTIMATE_MARK, counted, format_cost, format_tokens, plain_output
from persona_runtime.turnlog.query import Record, is_fallback, parse_timestamp
from persona_runtime.turnlog.stats import StatsRow

__all__ = ["Segments", "TurnPrinter", "dumps_record", "pipe_safe", "render_stats", "show_turns", "stats_row_dict", "turn_line"]

Segments = list[tuple[str, str]]  # (text, rich style)


# --- one line per turn -------------------------------------------------------------------------


class TurnPrinter:
    """One-line-per-turn printer: Rich styles on a colour terminal, plain text otherwise."""

    def __init__(self) -> None:
        self.console: Any = None
        if not plain_output():
            from rich.console import Console

            self.console = Console(highlight=False, soft_wrap=True)

    def segments(self, segs: Segments) -> None:
        if self.console is None:
            sys.stdout.write("".join(text for text, _ in segs).rstrip() + "\n")
        else:
            from rich.text import Text

            self.console.print(Text.assemble(*segs))

    def text(self, text: str, style: str = "") -> None:
        self.segments([(text, style)])

    def record(self, record: Record) -> None:
        self.segments(turn_line(record))

    def json(self, record: Record) -> None:
        sys.stdout.write(dumps_record(record) + "\n")

    def footer(self, skipped: int, *, to_stderr: bool = False) -> None:
        if not skipped:
            return
        message = f"{skipped} corrupt line{'s' if skipped != 1 else ''} skipped"
        if to_stderr:
            typer.echo(message, err=True)
        else:
            self.text(message, "dim")


def dumps_record(record: Record) -> str:
    # Same shape as the writer's model_dump_json: compact, UTF-8.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def pipe_safe() -> Iterator[None]:
    """`persona logs list | head`: a closed pipe ends output quietly."""
    try:
        yield
        sys.stdout.flush()
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise typer.Exit(0) from None


def _num(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _seconds(ms: object) -> str:
    value = _num(ms)
    return "-" if value is None else f"{value / 1000:.1f}s"


def _when(record: Record, today: date | None = None) -> str:
    ts = parse_timestamp(record)
    if ts is None:
        return "?".ljust(8)
    local = ts.astimezone()
    if local.date() == (today or date.today()):
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def turn_line(record: Record, today: date | None = None) -> Segments:
    """time  id  persona  tier → model  in/out  cost  latency  ttft  ↪  status  “preview”"""
    segs: Segments = [(_when(record, today), "dim"), ("  ", ""), (str(record.get("turn_id") or "-")[:SHORT_ID], "dim"), ("  ", "")]
    persona = str(record.get("persona_id") or "-")
    segs.append((persona.ljust(12), "bold cyan"))
    if record.get("kind") == "undo":
        segs += [("  ", ""), (f"undo of turn {str(record.get('undoes') or '?')[:SHORT_ID]}", "yellow")]
        return segs + _preview(record)
    if record.get("kind") == "agent" or record.get("run_id"):
        run = str(record.get("run_id") or "")[:6]
        segs.append((f" run {run}#{record.get('step', '?')}", "magenta"))
    route = f"{record.get('tier') or '-'} → {record.get('model') or '-'}"
    segs += [("  ", ""), (route.ljust(28), "")]
    tokens = "/".join(format_tokens(int(_num(record.get(key)) or 0)) for key in ("prompt_tokens", "completion_tokens"))
    estimated = record.get("usage_estimated") is True  # our own count: the provider sent none
    segs += [("  ", ""), ((ESTIMATE_MARK + tokens if estimated else tokens).rjust(11), "")]
    cost = format_cost(_num(record.get("cost_cents")))
    cost = ESTIMATE_MARK + cost if estimated and cost != "unpriced" else cost
    segs += [("  ", ""), (cost.rjust(10), "yellow" if cost == "unpriced" else "green")]
    segs += [("  ", ""), (_seconds(record.get("latency_ms")).rjust(6), "")]
    ttft = record.get("ttft_ms")
    segs += [("  ", ""), ((f"ttft {_seconds(ttft)}" if _num(ttft) is not None else "").ljust(10), "dim")]
    if is_fallback(record):
        segs += [("  ", ""), ("↪", "bold yellow")]
    status = record.get("status") or "ok"
    if status != "ok":
        detail = status
        if status == "error" and record.get("error"):
            detail = f"error: {_short(str(record['error']), 60)}"
        segs += [("  ", ""), (detail, "bold red" if status == "error" else "yellow")]
    return segs + _preview(record)


SHORT_ID = 8


def _preview(record: Record) -> Segments:
    text = record.get("preview")
    return [("  ", ""), (f"“{_short(text, 50)}”", "dim")] if isinstance(text, str) and text else []


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


# --- show: turns in full -------------------------------------------------------------------------


def show_turns(out: TurnPrinter, records: list[Record], words: dict[str, Any] | None = None) -> None:
    """A header (turns, conversation or run, cost), then each turn with its routing, attempts and
    tools, and its words (``words``: turn id → the stored turn, from the conversation files)."""
    _show_header(out, records)
    for record in records:
        _show_turn(out, record)
        turn = (words or {}).get(str(record.get("turn_id")))
        if turn is not None:
            _show_words(out, turn, str(record.get("persona_id") or "persona"))


def _show_words(out: TurnPrinter, turn: Any, persona: str) -> None:
    from persona_cli.term import sanitize
    from persona_runtime.conversations import message_text

    final = turn.messages[-1:] if len(turn.messages) > 1 else []
    for m in [*turn.messages[:-1], *turn.tools, *final] if final else [*turn.messages, *turn.tools]:
        role = m.get("role")
        who = {"user": "you", "assistant": persona, "tool": "tool"}.get(role, str(role))
        for call in m.get("tool_calls") or []:
            out.segments([(f"  {who} ", "dim"), (f"→ {call.get('name')}({_short(json.dumps(call.get('arguments', {}), ensure_ascii=False), 100)})", "magenta")])
        text = sanitize(message_text(m)).strip()
        if text:
            lines = text.splitlines()
            out.segments([(f"  {who}: ", "bold" if role == "user" else "dim"), (lines[0], "")])
            for line in lines[1:]:
                out.text(f"  {' ' * (len(who) + 1)} {line}")


def _show_header(out: TurnPrinter, records: list[Record]) -> None:
    conversations = {r.get("conversation_id") for r in records}
    runs = {r.get("run_id") for r in records} - {None}
    cost = [c for r in records if (c := _num(r.get("cost_cents"))) is not None]
    parts = [counted(len(records), "turn")]
    if len(conversations) == 1:
        parts.append(f"conversation {next(iter(conversations))}")
    if len(runs) == 1:
        parts.append(f"run {next(iter(runs))}")
    estimated = ESTIMATE_MARK if any(r.get("usage_estimated") is True for r in records) else ""
    parts.append(f"cost {estimated + format_cost(_num(sum(cost))) if cost else 'unpriced'}")
    if len(cost) < len(records) and cost:
        parts[-1] += f" (+{len(records) - len(cost)} unpriced)"
    out.text(" · ".join(parts), "bold")


def _show_turn(out: TurnPrinter, r: Record) -> None:
    out.text("")
    out.segments(turn_line(r))
    where = f"conversation {r.get('conversation_id')} turn {r.get('turn_index')}"
    if r.get("run_id"):
        where += f" · run {r.get('run_id')} step {r.get('step')}"
    out.segments([("  turn ", "dim"), (str(r.get("turn_id")), "bold"), (f"  {r.get('kind', 'chat')} · {where}", "dim")])
    ts = parse_timestamp(r)
    if ts is not None:
        out.text(f"  at {ts.astimezone().isoformat(timespec='seconds')}", "dim")
    routing = r.get("routing")
    if isinstance(routing, dict) and routing:
        out.segments([("  routing ", "dim"), (", ".join(f"{k}={_short(str(v), 80)}" for k, v in routing.items()), "")])
    attempts = r.get("attempts") if isinstance(r.get("attempts"), list) else []
    for i, a in enumerate(attempts, 1):
        if not isinstance(a, dict):
            continue
        outcome = str(a.get("outcome", "?"))
        segs: Segments = [
            (f"  attempt {i}  ", "dim"),
            (f"{a.get('tier', '-')}  {a.get('provider', '-')}/{a.get('model', '-')}  ", ""),
            (outcome, "green" if outcome == "ok" else "bold red"),
            (f"  {_seconds(a.get('latency_ms'))}", "dim"),
        ]
        if a.get("error_type") or a.get("error"):
            segs.append((f"  {a.get('error_type') or 'error'}: {_short(str(a.get('error') or ''), 100)}", "red"))
        out.segments(segs)
    tools = r.get("tool_calls") if isinstance(r.get("tool_calls"), list) else []
    if tools:
        calls = ", ".join(
            f"{t.get('name')}{'' if t.get('ok', True) else ' ✗'} {_seconds(t.get('duration_ms'))}"
            for t in tools
            if isinstance(t, dict)
        )
        out.segments([("  tools ", "dim"), (calls, "")])
    recalled = r.get("recalled") if isinstance(r.get("recalled"), list) else []
    if recalled:  # memory entries sent with the turn (persona memory show PERSONA ID)
        out.segments([("  recalled ", "dim"), (", ".join(str(i).split("::", 1)[-1] for i in recalled), "")])
    extras = []
    if r.get("usage_estimated") is True:
        extras.append(f"{ESTIMATE_MARK} tokens estimated (the provider reported no usage)")
    if r.get("skill_used"):
        extras.append(f"skill {r['skill_used']}")
    if r.get("history_compacted"):
        extras.append("history compacted")
    if extras:
        out.text("  " + " · ".join(extras), "dim")
    if r.get("error"):
        out.segments([("  error ", "dim"), (_short(str(r["error"]), 200), "red")])


# --- stats -------------------------------------------------------------------------------------


def stats_row_dict(row: StatsRow, by: str) -> dict[str, Any]:
    return {
        by if row.key != "total" else "total": row.key,
        "turns": row.turns,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_cents": round(row.cost_cents, 6),
        "unpriced": row.unpriced,
        "estimated": row.estimated,
        "latency_p50_ms": row.latency_p50_ms,
        "latency_p95_ms": row.latency_p95_ms,
        "fallback_rate": row.fallback_rate,
        "error_rate": row.error_rate,
        "interrupted": row.interrupted,
    }


def render_stats(rows: list[StatsRow], by: str, chart: str, skipped: int) -> None:
    """The table (groups, then a total row) and a bar chart of ``chart``: "turns" or "cost"."""
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    color = not plain_output()
    # Piped output has no width to fit; 80 columns would squeeze the table into ellipses.
    width = None if sys.stdout.isatty() else 120
    console = Console(
        highlight=False, color_system="auto" if color else None, force_terminal=color or None, width=width
    )
    groups, total = rows[:-1], rows[-1]
    if not total.turns:
        console.print("No matching turns.", style="dim")
        return
    table = Table(
        title=f"Turns by {by}",
        title_justify="left",
        show_footer=len(groups) > 1,
        box=box.SIMPLE_HEAD,
        collapse_padding=True,
        pad_edge=False,
    )

    def mark(row: StatsRow) -> str:
        return ESTIMATE_MARK if row.estimated else ""

    def cost(row: StatsRow) -> str:
        return "unpriced" if row.unpriced == row.turns else mark(row) + format_cost(_num(row.cost_cents))

    def pct(value: float) -> str:
        return f"{value * 100:.1f}%"

    columns: list[tuple[str, Any]] = [
        (by, lambda r: r.key),
        ("turns", lambda r: f"{r.turns:,}"),
        ("tokens in/out", lambda r: f"{mark(r)}{format_tokens(r.prompt_tokens)}/{format_tokens(r.completion_tokens)}"),
        ("cost", cost),
        ("unpriced", lambda r: f"{r.unpriced:,}"),
        ("p50", lambda r: _seconds(r.latency_p50_ms)),
        ("p95", lambda r: _seconds(r.latency_p95_ms)),
        ("fallback", lambda r: pct(r.fallback_rate)),
        ("errors", lambda r: pct(r.error_rate)),
        ("intr", lambda r: f"{r.interrupted:,}"),
    ]
    for i, (name, get) in enumerate(columns):
        table.add_column(name, footer=Text(get(total)), justify="left" if i == 0 else "right", no_wrap=i == 0)
    for row in groups:
        table.add_row(*(Text(get(row)) for _, get in columns))  # Text: a key is never markup
    console.print(table)
    if total.unpriced:
        console.print("cost sums priced turns only; unpriced turns have no known price", style="dim")
    if total.estimated:
        console.print(
            f"{ESTIMATE_MARK} estimated: the provider reported no token usage for {counted(total.estimated, 'turn')}; "
            "those tokens (and their cost) are our own count",
            style="dim",
        )

    values = [float(r.turns) if chart == "turns" else r.cost_cents for r in groups]
    label_width = min(24, max(len(r.key) for r in groups))
    width = max(10, min(50, console.width - label_width - 16))
    top = max(values) or 1.0
    console.print()
    console.print(f"{chart} by {by}", style="bold")
    for row, value in zip(groups, values, strict=True):
        shown = str(row.turns) if chart == "turns" else format_cost(_num(value))
        console.print(
            Text.assemble(
                _short(row.key, label_width).ljust(label_width) + " ", (_bar(value / top * width), "cyan"), f" {shown}"
            )
        )
    if skipped:
        console.print(f"{skipped} corrupt line{'s' if skipped != 1 else ''} skipped", style="dim")


_EIGHTHS = " ▏▎▍▌▋▊▉"


def _bar(cells: float) -> str:
    """A bar ``cells`` wide in block characters, to an eighth of a cell."""
    eighths = max(0, round(cells * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")
