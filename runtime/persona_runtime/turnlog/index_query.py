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
from collections.abc import Callable, Iterator
from dataclasses import fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from persona_runtime.turnlog.index import IndexedFile, discard_index, fast_loads, open_index
from persona_runtime.turnlog.query import LogFilter, Record
from persona_runtime.turnlog.stats import StatsRow

__all__ = ["indexed_records", "indexed_stats"]

_T = TypeVar("_T")

_SINCE_SLACK = timedelta(minutes=10)  # as in query.iter_records: files older than this are skipped
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_FILTERS = {"persona", "tier", "model", "errors_only", "fallbacks_only", "since", "conversation_id", "run_id"}
_STATS_FIELDS = {"key", "turns", "prompt_tokens", "completion_tokens", "cost_cents", "unpriced", "latency_p50_ms",
                 "latency_p95_ms", "fallbacks", "errors", "interrupted", "_latencies"}  # fmt: skip
_KEYS = {
    "tier": "COALESCE(tier, '-')",
    "model": "COALESCE(model, '-')",
    "persona": "COALESCE(persona, '-')",
    "day": "COALESCE(date(ts / 1000000, 'unixepoch', 'localtime'), '-')",
    "all": "'all'",
}


def _where(flt: LogFilter) -> tuple[str, list[Any]] | None:
    """The SQL condition of ``flt``; None when it has a field the index does not know."""
    for f in fields(flt):
        if f.name not in _FILTERS and getattr(flt, f.name) != f.default:
            return None
    terms: list[str] = []
    args: list[Any] = []
    for column, value in (("persona", flt.persona), ("tier", flt.tier), ("conversation_id", flt.conversation_id),
                          ("run_id", flt.run_id)):  # fmt: skip
        if value is not None:
            terms.append(f"{column} = ?")
            args.append(value)
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
    prepared = _prepare(log, flt)
    if prepared is None:
        return None
    conn, files, where, args = prepared
    key = _KEYS[by]
    try:
        conn.execute("BEGIN")  # one snapshot for every query below
        rows = [
            StatsRow(k, turns, prompt, completion, cost, unpriced, None, None, fallbacks, errors or 0, interrupted or 0)
            for k, turns, prompt, completion, cost, unpriced, fallbacks, errors, interrupted in conn.execute(
                f"SELECT {key} AS k, COUNT(*), SUM(prompt_tokens), SUM(completion_tokens), TOTAL(cost), "
                "SUM(cost IS NULL), SUM(fallback), SUM(status = 'error'), SUM(status = 'interrupted') "
                f"FROM records WHERE {where} GROUP BY k", args)
        ]  # fmt: skip
        rows.sort(key=(lambda r: r.key) if by == "day" else (lambda r: (-r.turns, r.key)))
        total = StatsRow("total")
        for row in rows:  # summed in the scan's order, so float sums agree
            total.turns += row.turns
            total.prompt_tokens += row.prompt_tokens
            total.completion_tokens += row.completion_tokens
            total.cost_cents += row.cost_cents
            total.unpriced += row.unpriced
            total.fallbacks += row.fallbacks
            total.errors += row.errors
            total.interrupted += row.interrupted
        rows.append(total)
        by_key = {row.key: row for row in rows[:-1]}
        for k, p50, p95 in _percentiles(conn, key, where, args):
            target = by_key[k] if k is not None else total
            target.latency_p50_ms, target.latency_p95_ms = p50, p95
        conn.execute("COMMIT")
    finally:
        conn.close()
    return rows, _skipped(files)


def _percentiles(conn: sqlite3.Connection, key: str, where: str, args: list[Any]) -> Iterator[tuple[Any, float, float]]:
    """(group key, p50, p95) per group, then (None, p50, p95) over all: nearest rank, as
    :func:`~persona_runtime.turnlog.stats.percentile`."""
    for part, label in ((key, "k"), ("NULL", "NULL")):
        ranks: dict[Any, dict[int, float]] = {}
        sql = (
            f"SELECT {label}, rn, n, latency FROM (SELECT {key} AS k, latency, "
            f"ROW_NUMBER() OVER (PARTITION BY {part} ORDER BY latency) AS rn, COUNT(*) OVER (PARTITION BY {part}) AS n "
            f"FROM records WHERE {where} AND latency IS NOT NULL) "
            "WHERE rn = MAX(1, (n * 50 + 99) / 100) OR rn = MAX(1, (n * 95 + 99) / 100)"
        )
        counts: dict[Any, int] = {}
        for k, rn, n, latency in conn.execute(sql, args):
            ranks.setdefault(k, {})[rn] = latency
            counts[k] = n
        for k, at in ranks.items():
            n = counts[k]
            yield k, at[max(1, (n * 50 + 99) // 100)], at[max(1, (n * 95 + 99) // 100)]


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
