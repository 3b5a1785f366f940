"""`persona logs`: tail (and follow), list, show and aggregate the turn log.

Reading is done by :mod:`persona_runtime.turnlog`'s readers (standard library only), printing
by :mod:`persona_cli.commands.logs_format`. Each command's options are defined once, in its signature;
``persona logs tail`` runs them through :mod:`persona_cli.commands.fast_invoke` so it costs about as
much as ``persona --help``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from persona_cli import exit_codes
from persona_cli.commands.fast_invoke import invoke_without_pydantic
from persona_cli.commands.logs_format import TurnPrinter, dumps_record, pipe_safe, render_stats, show_turns, stats_row_dict
from persona_runtime.turnlog.files import log_files
from persona_runtime.turnlog.follow import follow as follow_log
from persona_runtime.turnlog.query import MIN_ID_PREFIX, LogFilter, ReadCounter, Record, id_matches, iter_records, parse_since
from persona_runtime.turnlog.query import tail as tail_log
from persona_runtime.turnlog.stats import StatsRow, stats

logs_app = typer.Typer(
    help="Read the turn log: tail (and follow) it, list, show, and aggregate turns.",
    no_args_is_help=True,
)


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
ConversationOpt = Annotated[
    str | None, typer.Option("--conversation", "-c", help="Only this conversation (its id or 6+ first chars), e.g. -c 20261130-0820.")
]
RunOpt = Annotated[str | None, typer.Option("--run", help="Only this agent run (its id or 6+ first chars).")]
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
            raise _fail(f"--since: {exc}", exit_codes.USAGE) from None
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
    out = TurnPrinter()
    if not follow and result.position is None and not log_files(path):
        _no_log(path)
        return
    with pipe_safe():
        emit = out.json if as_json else out.record
        for record in result.records:
            emit(record)
        out.footer(result.skipped, to_stderr=as_json)
        if follow:
            _follow(path, flt, result.position, out, as_json)


def _follow(path: Path, flt: LogFilter, start: tuple[int, int] | None, out: TurnPrinter, as_json: bool) -> None:
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


def fast_tail(argv: list[str]) -> int | None:
    """Run ``logs tail ...`` from raw ``argv`` (after the program name) with the options of
    ``tail_cmd`` but without importing pydantic; None = not handled here, let Typer run it."""
    if argv[:2] != ["logs", "tail"]:
        return None
    return invoke_without_pydantic(logs_app, "tail", argv[2:])


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
    out = TurnPrinter()
    counter = ReadCounter()
    records: Iterable[Record]
    indexed = _indexed_list(path, flt, limit)
    if indexed is not None:
        records, counter.skipped = indexed
    elif limit is not None or flt.since is not None:
        # Reading backwards stops at the limit or at --since without touching older data.
        result = tail_log(path, limit if limit is not None else sys.maxsize, flt)
        records, counter.skipped = result.records, result.skipped
    else:
        records = iter_records(path, flt, counter)
    with pipe_safe():
        emit = out.json if as_json else out.record
        shown = 0
        for record in records:
            emit(record)
            shown += 1
        if not shown and not as_json:
            out.text("No matching turns.", "dim")
        out.footer(counter.skipped, to_stderr=as_json)


def _index_on() -> bool:
    from persona_runtime.errors import ConfigError
    from persona_runtime.settings import log_index_from_env

    try:
        return log_index_from_env()
    except ConfigError as exc:
        raise _fail(str(exc), exit_codes.USAGE) from None


def _indexed_list(path: Path, flt: LogFilter, limit: int | None) -> tuple[list[Record], int] | None:
    """From the SQLite index beside the log when it can answer exactly (None: scan). A filter
    or a limit is needed: listing everything reads every line anyway."""
    if (flt == LogFilter() and limit is None) or not _index_on():
        return None
    from persona_runtime.turnlog.index_query import indexed_records

    return indexed_records(path, flt, limit)


def _indexed_stats(path: Path, flt: LogFilter, by: str) -> tuple[list[StatsRow], int] | None:
    if not _index_on():
        return None
    from persona_runtime.turnlog.index_query import indexed_stats

    return indexed_stats(path, flt, by)


def _id_matches(record: Record, ident: str) -> bool:
    return any(id_matches(record.get(key), ident) for key in ("turn_id", "conversation_id", "run_id"))


def _words(records: list[Record]) -> dict[str, object]:
    """Turn id → the stored turn (its messages and tool calls), from the conversation files."""
    from persona_runtime.conversations import ConversationStore
    from persona_runtime.paths import DataPaths

    store = ConversationStore(DataPaths().conversations)
    words: dict[str, object] = {}
    for persona_id, conversation_id in {(r.get("persona_id"), r.get("conversation_id")) for r in records if r.get("kind") == "chat"}:
        try:
            path = store.path_for(str(persona_id), str(conversation_id))
        except ValueError:
            continue
        words.update((t.turn_id, t) for t in store.read(path, include_undone=True).turns)
    return words


@logs_app.command("show")
def show_cmd(
    ident: Annotated[str, typer.Argument(metavar="ID", help="A turn, conversation or run id (or its first 6+ chars).")],
    as_json: JsonOpt = False,
) -> None:
    """A turn, or a whole conversation or agent run: what was said, routing and fallbacks.

    Example: persona logs show 20261130-0820 (a conversation), persona logs show 3f2a9c (a turn)."""
    path = _log_path()
    ident = ident.strip()
    prefix = len(ident) >= MIN_ID_PREFIX
    counter = ReadCounter()
    needle = ident.encode()
    matches = [
        r
        for r in iter_records(path, counter=counter, needle=needle)
        if _id_matches(r, ident)
    ]
    if not matches:
        hint = "" if prefix else " (a prefix needs at least 6 characters)"
        where = "" if log_files(path) else f"; no log yet at {path}"
        raise _fail(f"no turn, conversation or run matches {ident!r}{hint}{where}", exit_codes.RUNTIME_ERROR)
    out = TurnPrinter()
    with pipe_safe():
        if as_json:
            for record in matches:
                out.json(record)
            out.footer(counter.skipped, to_stderr=True)
            return
        show_turns(out, matches, _words(matches))
        out.footer(counter.skipped)


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
    indexed = _indexed_stats(path, flt, by.value)
    if indexed is not None:
        rows, counter.skipped = indexed
    else:
        rows = stats(iter_records(path, flt, counter), by.value, total=True)
    with pipe_safe():
        if as_json:
            for row in rows:
                sys.stdout.write(dumps_record(stats_row_dict(row, by.value)) + "\n")
            TurnPrinter().footer(counter.skipped, to_stderr=True)
            return
        render_stats(rows, by.value, chart.value, counter.skipped)


@logs_app.command("path")
def path_cmd() -> None:
    """Print where the turn log lives."""
    typer.echo(str(_log_path()))
