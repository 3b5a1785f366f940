"""`persona logs`: tail (and follow), list, show and aggregate the turn log.

Reading is done by :mod:`persona_runtime.turnlog`'s readers (standard library only); Rich is
imported only when a terminal wants colour or a table is drawn, so
``persona logs tail`` costs about as much as ``persona --help``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import date
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from persona_runtime.turnlog.files import log_files
from persona_runtime.turnlog.follow import follow as follow_log
from persona_runtime.turnlog.query import LogFilter, ReadCounter, is_fallback, iter_records, parse_since, parse_timestamp
from persona_runtime.turnlog.query import tail as tail_log
from persona_runtime.turnlog.stats import StatsRow, stats

logs_app = typer.Typer(
    help="Read the turn log: tail (and follow) it, list, show, and aggregate turns.",
    no_args_is_help=True,
)

Record = dict[str, Any]
Segments = list[tuple[str, str]]  # (text, rich style)

EXIT_RUNTIME = 1
EXIT_USAGE = 2


class By(str, Enum):
    tier = "tier"
    model = "model"
    persona = "persona"
    day = "day"


class Chart(str, Enum):
    turns = "turns"
    cost = "cost"


# --- options shared by tail, list and stats ---------------------------------------------------

PersonaOpt = Annotated[str | None, typer.Option("--persona", "-p", help="Only this persona id.")]
TierOpt = Annotated[str | None, typer.Option("--tier", "-t", help="Only turns answered by this tier.")]
ModelOpt = Annotated[str | None, typer.Option("--model", "-m", help="Only this model (or provider/model).")]
ErrorsOpt = Annotated[bool, typer.Option("--errors", help="Only turns that ended in an error.")]
FallbacksOpt = Annotated[bool, typer.Option("--fallbacks", help="Only turns that fell back to another model.")]
SinceOpt = Annotated[
    str | None,
    typer.Option("--since", "-s", help="Only turns since: 90s, 15m, 2h, 3d, 1w, 2026-11-01, 2026-11-01T14:30."),
]
ConversationOpt = Annotated[str | None, typer.Option("--conversation", "-c", help="Only this conversation id.")]
RunOpt = Annotated[str | None, typer.Option("--run", help="Only this agent run id.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the stored records as JSON lines (for jq).")]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"persona logs: {message}", err=True)
    return typer.Exit(code)


def _filter(
    persona: str | None = None,
    tier: str | None = None,
    model: str | None = None,
    errors: bool = False,
    fallbacks: bool = False,
    since: str | None = None,
    conversation: str | None = None,
    run: str | None = None,
) -> LogFilter:
    since_at = None
    if since is not None:
        try:
            since_at = parse_since(since)
        except ValueError as exc:
            raise _fail(f"--since: {exc}", EXIT_USAGE) from None
    return LogFilter(
        persona=persona,
        tier=tier,
        model=model,
        errors_only=errors,
        fallbacks_only=fallbacks,
        since=since_at,
        conversation_id=conversation,
        run_id=run,
    )


def _log_path() -> Path:
    from persona_runtime.paths import DataPaths

    return DataPaths().turn_log


# --- output ------------------------------------------------------------------------------------


def _use_color() -> bool:
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    return sys.stdout.isatty()


class _Out:
    """One-line-per-turn printer: Rich styles on a colour terminal, plain text otherwise."""

    def __init__(self) -> None:
        self.console: Any = None
        if _use_color():
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
        sys.stdout.write(_dumps(record) + "\n")

    def footer(self, skipped: int, *, to_stderr: bool = False) -> None:
        if not skipped:
            return
        message = f"{skipped} corrupt line{'s' if skipped != 1 else ''} skipped"
        if to_stderr:
            typer.echo(message, err=True)
        else:
            self.text(message, "dim")


def _dumps(record: Record) -> str:
    # Same shape as the writer's model_dump_json: compact, UTF-8.
    return json.dumps(record, ensure_ascii=False, separators=(",", ":"))


@contextmanager
def _pipe_safe() -> Iterator[None]:
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


def _cost(cents: object) -> str:
    value = _num(cents)
    return "unpriced" if value is None else f"${value / 100:.4f}"


def _when(record: Record, today: date | None = None) -> str:
    ts = parse_timestamp(record)
    if ts is None:
        return "?".ljust(8)
    local = ts.astimezone()
    if local.date() == (today or date.today()):
        return local.strftime("%H:%M:%S")
    return local.strftime("%Y-%m-%d %H:%M")


def turn_line(record: Record, today: date | None = None) -> Segments:
    """time  persona  tier → model  in/out  cost  latency  ttft  ↪  status"""
    segs: Segments = [(_when(record, today), "dim"), ("  ", "")]
    persona = str(record.get("persona_id") or "-")
    segs.append((persona.ljust(12), "bold cyan"))
    if record.get("kind") == "agent" or record.get("run_id"):
        run = str(record.get("run_id") or "")[:6]
        segs.append((f" run {run}#{record.get('step', '?')}", "magenta"))
    route = f"{record.get('tier') or '-'} → {record.get('model') or '-'}"
    segs += [("  ", ""), (route.ljust(28), "")]
    tokens = f"{int(_num(record.get('prompt_tokens')) or 0)}/{int(_num(record.get('completion_tokens')) or 0)}"
    segs += [("  ", ""), (tokens.rjust(11), "")]
    cost = _cost(record.get("cost_cents"))
    segs += [("  ", ""), (cost.rjust(9), "yellow" if cost == "unpriced" else "green")]
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
    return segs


def _short(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _no_log(path: Path) -> None:
    typer.echo(f"No turns logged yet (the log will be {path}).")


# --- commands ----------------------------------------------------------------------------------


@logs_app.command("tail")
def tail_cmd(
    n: Annotated[int, typer.Option("-n", "--lines", min=0, help="How many turns to show.")] = 20,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new turns until Ctrl-C.")] = False,
    persona: PersonaOpt = None,
    tier: TierOpt = None,
    model: ModelOpt = None,
    errors: ErrorsOpt = False,
    fallbacks: FallbacksOpt = False,
    since: SinceOpt = None,
    conversation: ConversationOpt = None,
    run: RunOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The last N turns across all conversations and agent runs; -f follows new ones."""
    flt = _filter(persona, tier, model, errors, fallbacks, since, conversation, run)
    path = _log_path()
    result = tail_log(path, n, flt)
    out = _Out()
    if not follow and result.position is None and not log_files(path):
        _no_log(path)
        return
    with _pipe_safe():
        emit = out.json if as_json else out.record
        for record in result.records:
            emit(record)
        out.footer(result.skipped, to_stderr=as_json)
        if follow:
            _follow(path, flt, result.position, out, as_json)


def _follow(path: Path, flt: LogFilter, start: tuple[int, int] | None, out: _Out, as_json: bool) -> None:
    if start is None:
        typer.echo(f"Waiting for turns at {path} (Ctrl-C to stop)…", err=True)
    sys.stdout.flush()
    counter = ReadCounter()
    reported = 0
    try:
        emit = out.json if as_json else out.record
        for record in follow_log(path, flt, start=start, counter=counter):
            emit(record)
            if counter.skipped != reported:
                out.footer(counter.skipped - reported, to_stderr=as_json)
                reported = counter.skipped
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


# `persona logs tail` without Typer's parameter processing. Typer coerces every non-bool
# option through a pydantic TypeAdapter, and importing pydantic costs several times our
# whole budget (tail must cost about what `persona --help` costs). The entry point calls
# this first; anything it does not fully understand (--help, a bad number, an unknown
# option) returns None and goes through Typer as usual, errors and all.
_TAIL_VALUES = {
    "-n": "n", "--lines": "n", "-p": "persona", "--persona": "persona", "-t": "tier", "--tier": "tier",
    "-m": "model", "--model": "model", "-s": "since", "--since": "since",
    "-c": "conversation", "--conversation": "conversation", "--run": "run",
}  # fmt: skip
_TAIL_FLAGS = {"-f": "follow", "--follow": "follow", "--json": "as_json", "--errors": "errors", "--fallbacks": "fallbacks"}


def fast_tail(argv: list[str]) -> int | None:
    """Run ``logs tail ...`` from raw ``argv`` (after the program name); None = not handled."""
    if argv[:2] != ["logs", "tail"]:
        return None
    kwargs: dict[str, Any] = {}
    args = iter(argv[2:])
    for arg in args:
        name, eq, inline = arg.partition("=")
        if not eq and arg in _TAIL_FLAGS:
            kwargs[_TAIL_FLAGS[arg]] = True
        elif name in _TAIL_VALUES and (eq or name == arg):
            value = inline if eq else next(args, None)
            if value is None or (value.startswith("-") and value != "-"):
                return None
            kwargs[_TAIL_VALUES[name]] = value
        else:
            return None
    if "n" in kwargs:
        if not kwargs["n"].isdigit():
            return None
        kwargs["n"] = int(kwargs["n"])
    try:
        tail_cmd(**kwargs)
    except typer.Exit as exc:
        return exc.exit_code
    return 0


@logs_app.command("list")
def list_cmd(
    since: SinceOpt = None,
    limit: Annotated[int | None, typer.Option("-n", "--limit", min=1, help="Only the last N matching turns.")] = None,
    persona: PersonaOpt = None,
    tier: TierOpt = None,
    model: ModelOpt = None,
    errors: ErrorsOpt = False,
    fallbacks: FallbacksOpt = False,
    conversation: ConversationOpt = None,
    run: RunOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Turns matching the filters, oldest first (all of them unless --since or -n)."""
    flt = _filter(persona, tier, model, errors, fallbacks, since, conversation, run)
    path = _log_path()
    if not log_files(path):
        _no_log(path)
        return
    out = _Out()
    counter = ReadCounter()
    records: Iterable[Record]
    if limit is not None or flt.since is not None:
        # Reading backwards stops at the limit or at --since without touching older data.
        result = tail_log(path, limit if limit is not None else sys.maxsize, flt)
        records, counter.skipped = result.records, result.skipped
    else:
        records = iter_records(path, flt, counter)
    with _pipe_safe():
        emit = out.json if as_json else out.record
        shown = 0
        for record in records:
            emit(record)
            shown += 1
        if not shown and not as_json:
            out.text("No matching turns.", "dim")
        out.footer(counter.skipped, to_stderr=as_json)


def _id_matches(record: Record, ident: str, prefix: bool) -> bool:
    for key in ("turn_id", "conversation_id", "run_id"):
        value = record.get(key)
        if isinstance(value, str) and (value == ident or (prefix and value.startswith(ident))):
            return True
    return False


@logs_app.command("show")
def show_cmd(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A turn, conversation or run id (or its first 6+ chars).")],
    as_json: JsonOpt = False,
) -> None:
    """A turn, or a whole conversation or agent run, with routing and fallbacks."""
    path = _log_path()
    ident = ident.strip()
    prefix = len(ident) >= 6
    counter = ReadCounter()
    needle = ident.encode()
    matches = [
        r
        for r in iter_records(path, counter=counter, needle=needle)
        if _id_matches(r, ident, prefix)
    ]
    if not matches:
        hint = "" if prefix else " (a prefix needs at least 6 characters)"
        where = "" if log_files(path) else f"; no log yet at {path}"
        raise _fail(f"no turn, conversation or run matches {ident!r}{hint}{where}", EXIT_RUNTIME)
    out = _Out()
    with _pipe_safe():
        if as_json:
            for record in matches:
                out.json(record)
            out.footer(counter.skipped, to_stderr=True)
            return
        _show_header(out, matches)
        for record in matches:
            _show_turn(out, record)
        out.footer(counter.skipped)


def _show_header(out: _Out, records: list[Record]) -> None:
    conversations = {r.get("conversation_id") for r in records}
    runs = {r.get("run_id") for r in records} - {None}
    cost = [c for r in records if (c := _num(r.get("cost_cents"))) is not None]
    parts = [f"{len(records)} turn{'s' if len(records) != 1 else ''}"]
    if len(conversations) == 1:
        parts.append(f"conversation {next(iter(conversations))}")
    if len(runs) == 1:
        parts.append(f"run {next(iter(runs))}")
    parts.append(f"cost {_cost(sum(cost)) if cost else 'unpriced'}")
    if len(cost) < len(records) and cost:
        parts[-1] += f" (+{len(records) - len(cost)} unpriced)"
    out.text(" · ".join(parts), "bold")


def _show_turn(out: _Out, r: Record) -> None:
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
    extras = []
    if r.get("skill_used"):
        extras.append(f"skill {r['skill_used']}")
    if r.get("history_compacted"):
        extras.append("history compacted")
    if extras:
        out.text("  " + " · ".join(extras), "dim")
    if r.get("error"):
        out.segments([("  error ", "dim"), (_short(str(r["error"]), 200), "red")])


@logs_app.command("stats")
def stats_cmd(
    since: SinceOpt = None,
    by: Annotated[By, typer.Option("--by", "-b", help="Group by tier, model, persona or day.")] = By.tier,
    chart: Annotated[Chart, typer.Option("--chart", help="What the bars show.")] = Chart.turns,
    persona: PersonaOpt = None,
    tier: TierOpt = None,
    model: ModelOpt = None,
    errors: ErrorsOpt = False,
    fallbacks: FallbacksOpt = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object per group.")] = False,
) -> None:
    """Turns, tokens, cost, latency p50/p95, fallback and error rates per group, with a chart."""
    flt = _filter(persona, tier, model, errors, fallbacks, since)
    path = _log_path()
    if not log_files(path):
        _no_log(path)
        return
    counter = ReadCounter()
    rows = stats(iter_records(path, flt, counter), by.value, total=True)
    with _pipe_safe():
        if as_json:
            for row in rows:
                sys.stdout.write(_dumps(_row_dict(row, by.value)) + "\n")
            _Out().footer(counter.skipped, to_stderr=True)
            return
        _render_stats(rows, by.value, chart, counter.skipped)


def _row_dict(row: StatsRow, by: str) -> dict[str, Any]:
    return {
        by if row.key != "total" else "total": row.key,
        "turns": row.turns,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "cost_cents": round(row.cost_cents, 6),
        "unpriced": row.unpriced,
        "latency_p50_ms": row.latency_p50_ms,
        "latency_p95_ms": row.latency_p95_ms,
        "fallback_rate": row.fallback_rate,
        "error_rate": row.error_rate,
        "interrupted": row.interrupted,
    }


def _render_stats(rows: list[StatsRow], by: str, chart: Chart, skipped: int) -> None:
    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    color = _use_color()
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

    def cost(row: StatsRow) -> str:
        return "unpriced" if row.unpriced == row.turns else _cost(row.cost_cents)

    def pct(value: float) -> str:
        return f"{value * 100:.1f}%"

    columns: list[tuple[str, Any]] = [
        (by, lambda r: r.key),
        ("turns", lambda r: f"{r.turns:,}"),
        ("tokens in/out", lambda r: f"{_compact(r.prompt_tokens)}/{_compact(r.completion_tokens)}"),
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

    values = [float(r.turns) if chart is Chart.turns else r.cost_cents for r in groups]
    label_width = min(24, max(len(r.key) for r in groups))
    width = max(10, min(50, console.width - label_width - 16))
    top = max(values) or 1.0
    console.print()
    console.print(f"{chart.value} by {by}", style="bold")
    for row, value in zip(groups, values, strict=True):
        shown = str(row.turns) if chart is Chart.turns else _cost(value)
        console.print(
            Text.assemble(
                _short(row.key, label_width).ljust(label_width) + " ", (_bar(value / top * width), "cyan"), f" {shown}"
            )
        )
    if skipped:
        console.print(f"{skipped} corrupt line{'s' if skipped != 1 else ''} skipped", style="dim")


def _compact(n: int) -> str:
    if n < 10_000:
        return f"{n:,}"
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.2f}M"


_EIGHTHS = " ▏▎▍▌▋▊▉"


def _bar(cells: float) -> str:
    """A bar ``cells`` wide in block characters, to an eighth of a cell."""
    eighths = max(0, round(cells * 8))
    full, rest = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[rest] if rest else "")


@logs_app.command("path")
def path_cmd() -> None:
    """Print where the turn log lives."""
    typer.echo(str(_log_path()))
