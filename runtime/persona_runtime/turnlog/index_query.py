"""``logs stats`` and filtered ``logs list`` answered from the SQLite index (:mod:`.index`).

Each function returns None whenever the index cannot give exactly the answer a full scan
would (no usable index, a filter or stats field it does not know, an odd record in range);
the caller then scans the JSONL with :func:`~persona_runtime.turnlog.query.iter_records`.
The scan's rules are kept: ``--since`` skips files last written before it (as the scan
does), a record without a readable timestamp never matches ``--since``, corrupt and torn
lines are counted, and ``list`` returns the stored JSON lines themselves, read back from the
JSONL by offset, so fields the index does not know pass through.

Standard library only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
import time
from dataclasses import fields, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from persona_runtime.turnlog.index import IndexedFile, discard_index, open_index
from persona_runtime.turnlog.query import MIN_ID_PREFIX, LogFilter, Record, fast_loads
from persona_runtime.turnlog.index_cells import DAY_US, add_cell, kth, local_days, unpack
from persona_runtime.turnlog.stats import StatsRow, percentile

__all__ = ["indexed_records", "indexed_stats"]

_T = TypeVar("_T")

_SINCE_SLACK = timedelta(minutes=10)  # as in query.iter_records: files older than this are skipped
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FILTERS = {"persona", "tier", "model", "errors_only", "fallbacks_only", "since", "conversation_id", "run_id"}
_STATS_FIELDS = {"key", "turns", "prompt_tokens", "completion_tokens", "cost_cents", "unpriced", "estimated", "latency_p50_ms",
                 "latency_p95_ms", "fallbacks", "errors", "interrupted", "_latencies"}  # fmt: skip
_COLUMN = {"persona": 0, "tier": 1, "model": 2}  # in the cells and edge rows of _stats
_KEYS = {"tier", "model", "persona", "day", "all"}


def _where(flt: LogFilter) -> tuple[str, list[Any]] | None:
    """The SQL condition of ``flt``; None when it has a field the index does not know."""
    for f in fields(flt):
        if f.name not in _FILTERS and getattr(flt, f.name) != f.default:
            return None
    terms: list[str] = []
    args: list[Any] = []
    for column, value in (("persona", flt.persona), ("tier", flt.tier)):
        if value is not None:
            terms.append(f"{column} = ?")
            args.append(value)
    for column, ident in (("conversation_id", flt.conversation_id), ("run_id", flt.run_id)):
        if ident is not None:  # query.id_matches: the whole id, or a prefix of 6+ (``chat-`` optional)
            if len(ident) >= MIN_ID_PREFIX:
                terms.append(f"({column} = ? OR substr({column}, 1, ?) = ? OR substr({column}, 1, ?) = ?)")
                args += [ident, len(ident), ident, len(ident) + 5, "chat-" + ident]
            else:
                terms.append(f"{column} = ?")
                args.append(ident)
    if flt.model is not None:
        terms.append("(model = ? OR provider_model = ?)")
        args += [flt.model, flt.model]
    if flt.errors_only:
        terms.append("status = 'error'")
    if flt.fallbacks_only:
        terms.append("fallback = 1")
    if flt.since is not None:
        terms.append("ts >= ?")
        args.append((flt.since - _EPOCH) // timedelta(microseconds=1))
    return " AND ".join(terms) or "1", args


def _in_range(files: list[IndexedFile], flt: LogFilter) -> list[IndexedFile]:
    if flt.since is None:
        return files
    oldest_ns = (flt.since - _SINCE_SLACK).timestamp() * 1e9
    return [f for f in files if f.mtime_ns >= oldest_ns]


def _skipped(files: list[IndexedFile]) -> int:
    return sum(f.bad + (f.size > f.indexed_to) for f in files)


def _prepare(log: Path, flt: LogFilter) -> tuple[sqlite3.Connection, list[IndexedFile], str, list[Any]] | None:
    where = _where(flt)
    if where is None:
        return None
    opened = open_index(log)
    if opened is None:
        return None
    conn, files = opened
    files = _in_range(files, flt)
    if any(f.odd for f in files):
        conn.close()
        return None
    ids = ", ".join(str(f.id) for f in files) or "NULL"
    return conn, files, f"file IN ({ids}) AND {where[0]}", where[1]


def _twice(log: Path, job: Callable[[], _T | None]) -> _T | None:
    """``job()``; an index damaged where the sync did not look is deleted and built once more."""
    for attempt in range(2):
        try:
            return job()
        except sqlite3.Error:
            if attempt or not discard_index(log):
                return None
    return None


def indexed_stats(log: Path, flt: LogFilter, by: str) -> tuple[list[StatsRow], int] | None:
    """(rows as :func:`~persona_runtime.turnlog.stats.stats` gives them with ``total=True``,
    corrupt lines skipped), or None: scan instead."""
    if by not in _KEYS or {f.name for f in fields(StatsRow)} != _STATS_FIELDS:
        return None
    return _twice(log, lambda: _stats(log, flt, by))


def _stats(log: Path, flt: LogFilter, by: str) -> tuple[list[StatsRow], int] | None:
    if flt.conversation_id is not None or flt.run_id is not None:
        return None  # not in the cells (and not a `logs stats` option)
    prepared = _prepare(log, flt)
    if prepared is None:
        return None
    conn, files, _where_all, _args = prepared
    terms, args = _where(replace(flt, since=None))  # type: ignore[misc]
    inside = f"file IN ({', '.join(str(f.id) for f in files) or 'NULL'})"
    cells = (f"SELECT persona, tier, model, day, turns, prompt, completion, cost, unpriced, status, fallback, lat, estimated "
             f"FROM cells WHERE {inside} AND {terms}")
    cell_args = list(args)
    edge: list[Any] = []
    try:
        conn.execute("BEGIN")  # one snapshot for both queries
        if flt.since is not None:
            since = (flt.since - _EPOCH) // timedelta(microseconds=1)
            day = since // DAY_US
            cells += " AND day > ?"
            cell_args.append(day)
            edge = conn.execute(
                "SELECT persona, tier, model, ts, 1, prompt_tokens, completion_tokens, COALESCE(cost, 0.0), cost IS NULL, "
                f"status, fallback, latency, estimated FROM records WHERE {inside} AND {terms} AND ts >= ? AND ts < ? "
                "AND (kind IS NULL OR kind != 'undo')",
                [*args, since, (day + 1) * DAY_US]).fetchall()  # fmt: skip
        found = conn.execute(cells, cell_args).fetchall()
        conn.execute("COMMIT")
    finally:
        conn.close()
    rows = _group(found, edge, by)
    return (rows, _skipped(files)) if rows is not None else None


def _group(cells: list[tuple[Any, ...]], edge: list[tuple[Any, ...]], by: str) -> list[StatsRow] | None:
    """Rows as the scan's ``stats(..., total=True)``: cells whole, ``edge`` records one by one."""
    days: dict[int, str] | None = {}
    if by == "day":
        days = local_days({c[3] for c in cells if c[3] is not None})
        if days is None:
            return None  # a UTC day spans two local dates here: the scan groups exactly

    def key_of(item: tuple[Any, ...], is_cell: bool) -> str:
        if by == "day":
            if item[3] is None:
                return "-"
            if is_cell:
                return days[item[3]]  # type: ignore[index]
            return time.strftime("%Y-%m-%d", time.localtime(item[3] // 1_000_000))
        value = item[_COLUMN[by]] if by != "all" else "all"
        return "-" if value is None else value

    groups: dict[str, StatsRow] = {}
    latencies: dict[str, list[Any]] = {}
    for items, is_cell in ((cells, True), (edge, False)):
        for item in items:
            k = key_of(item, is_cell)
            row = groups.get(k)
            if row is None:
                row = groups[k] = StatsRow(k)
                latencies[k] = []
            add_cell(row, *item[4:11], item[12])
            if is_cell:
                latencies[k].extend(unpack(item[11]))
            elif item[11] is not None:
                latencies[k].append(item[11])
    rows = sorted(groups.values(), key=(lambda r: r.key) if by == "day" else (lambda r: (-r.turns, r.key)))
    total = StatsRow("total")
    for row in rows:  # in the scan's order
        add_cell(total, row.turns, row.prompt_tokens, row.completion_tokens, row.cost_cents, row.unpriced, None, 0, row.estimated)
        total.fallbacks += row.fallbacks
        total.errors += row.errors
        total.interrupted += row.interrupted
    ordered = []
    for row in rows:
        values = latencies[row.key]
        values.sort()
        ordered.append(values)
        row.latency_p50_ms = percentile(values, 50)
        row.latency_p95_ms = percentile(values, 95)
    count = sum(len(v) for v in ordered)
    if count:
        total.latency_p50_ms = kth(ordered, max(1, (count * 50 + 99) // 100))
        total.latency_p95_ms = kth(ordered, max(1, (count * 95 + 99) // 100))
    return [*rows, total]


def indexed_records(log: Path, flt: LogFilter, limit: int | None = None) -> tuple[list[Record], int] | None:
    """(matching records oldest first, the last ``limit`` of them when given; corrupt lines
    skipped), or None: scan instead."""
    return _twice(log, lambda: _records(log, flt, limit))


def _records(log: Path, flt: LogFilter, limit: int | None) -> tuple[list[Record], int] | None:
    prepared = _prepare(log, flt)
    if prepared is None:
        return None
    conn, files, where, args = prepared
    spans: list[tuple[IndexedFile, list[tuple[int, int]]]] = []
    try:
        conn.execute("BEGIN")
        if limit is None:
            for f in files:
                found = conn.execute(f"SELECT off, len FROM records WHERE file = {f.id} AND {where} ORDER BY off", args).fetchall()
                spans.append((f, found))
        else:
            left = limit
            for f in reversed(files):
                if left <= 0:
                    break
                found = conn.execute(f"SELECT off, len FROM records WHERE file = {f.id} AND {where} ORDER BY off DESC "
                                     f"LIMIT {left}", args).fetchall()  # fmt: skip
                left -= len(found)
                spans.insert(0, (f, found[::-1]))
        conn.execute("COMMIT")
    finally:
        conn.close()
    records = _read(spans)
    return (records, _skipped(files)) if records is not None else None


def _read(spans: list[tuple[IndexedFile, list[tuple[int, int]]]]) -> list[Record] | None:
    """The stored lines at those offsets, parsed; None when one no longer parses as a record
    (the file changed under us: the caller scans)."""
    records: list[Record] = []
    loads = fast_loads()
    for f, found in spans:
        if not found:
            continue
        try:
            fd = os.open(f.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            if os.fstat(fd).st_ino != f.ino:
                return None  # rotated since the sync: a new file has that name now
            for off, length in found:
                line = os.pread(fd, length, off)
                try:
                    record = loads(line)
                except ValueError:
                    return None
                if not isinstance(record, dict):
                    return None
                records.append(record)
        finally:
            os.close(fd)
    return records
