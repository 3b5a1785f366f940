"""Querying the turn log: filters, and reading it backwards (tail) or forwards (every record).

Records are plain dicts as written by :class:`persona_runtime.turnlog.record.TurnLog`
(``model_dump_json``); they are never turned back into pydantic models here, so
reading is fast and records of a newer schema (unknown fields) read fine.

The log is one live file plus rotated siblings (see :mod:`persona_runtime.turnlog.files`).
A line that does not parse (a killed writer, a full disk) is skipped and counted
in a :class:`ReadCounter`, never raised. A last line without ``\\n`` is a write
that has not finished (or never will): it is skipped too.

This module imports only the standard library: ``persona logs tail`` must start fast.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from persona_runtime.turnlog.files import log_files, open_if_exists, rotated_files

__all__ = [
    "ALL",
    "LogFilter",
    "ReadCounter",
    "Record",
    "TailResult",
    "complete_lines_reversed",
    "fast_loads",
    "is_fallback",
    "iter_records",
    "iter_reverse_lines",
    "parse_line",
    "parse_since",
    "parse_timestamp",
    "tail",
]

Record = dict[str, Any]

_DURATION = re.compile(r"^(\d+)\s*([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Concurrent writers append in lock order, not timestamp order: a long turn stamped at its
# start can land after shorter ones. Reading backwards with --since, keep going this far past.
_SINCE_SLACK = timedelta(minutes=10)


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """``90s``/``15m``/``2h``/``3d``/``1w`` ago, or an ISO date/datetime (naive = local time)."""
    value = text.strip()
    match = _DURATION.match(value.lower())
    if match:
        base = now if now is not None else datetime.now(UTC)
        return base - timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(
            f"cannot read {text!r} as a time: use a duration like 90s, 15m, 2h, 3d, 1w "
            "or a date/time like 2026-11-01 or 2026-11-01T14:30"
        ) from None
    return parsed if parsed.tzinfo is not None else parsed.astimezone()


def parse_timestamp(record: Record) -> datetime | None:
    raw = record.get("timestamp")
    if not isinstance(raw, str):
        return None
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=UTC)


def is_fallback(record: Record) -> bool:
    attempts = record.get("attempts")
    return isinstance(attempts, list) and len(attempts) > 1


@dataclass(frozen=True)
class LogFilter:
    persona: str | None = None
    tier: str | None = None
    #: Matches ``model`` or ``provider/model``.
    model: str | None = None
    errors_only: bool = False
    fallbacks_only: bool = False
    since: datetime | None = None
    conversation_id: str | None = None
    run_id: str | None = None

    def matches(self, record: Record) -> bool:
        if self.persona is not None and record.get("persona_id") != self.persona:
            return False
        if self.tier is not None and record.get("tier") != self.tier:
            return False
        if self.model is not None:
            model = record.get("model")
            if model != self.model and f"{record.get('provider')}/{model}" != self.model:
                return False
        if self.errors_only and record.get("status") != "error":
            return False
        if self.fallbacks_only and not is_fallback(record):
            return False
        if self.conversation_id is not None and not id_matches(record.get("conversation_id"), self.conversation_id):
            return False
        if self.run_id is not None and not id_matches(record.get("run_id"), self.run_id):
            return False
        if self.since is not None:
            ts = parse_timestamp(record)
            if ts is None or ts < self.since:
                return False
        return True


ALL = LogFilter()

MIN_ID_PREFIX = 6


def id_matches(value: object, ident: str) -> bool:
    """One rule for every id `logs` takes (show, --run, -c): the whole id, or a prefix of 6+
    characters of it (of a chat id, ``chat-`` may be left out)."""
    if not isinstance(value, str) or not ident:
        return False
    if value == ident:
        return True
    return len(ident) >= MIN_ID_PREFIX and (value.startswith(ident) or value.removeprefix("chat-").startswith(ident))


@dataclass
class ReadCounter:
    """Lines skipped because they did not parse (or were torn)."""

    skipped: int = 0


def parse_line(line: bytes, counter: ReadCounter) -> Record | None:
    """One complete line as a record; None for a blank line, or (counted) one that does not parse."""
    if not line.strip():
        return None
    try:
        record = json.loads(line)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError
        counter.skipped += 1
        return None
    if not isinstance(record, dict):
        counter.skipped += 1
        return None
    return record


# --- reading backwards ---------------------------------------------------------------------


def _raw_reverse(f: IO[bytes], end: int, chunk: int) -> Iterator[bytes]:
    """Every ``\\n``-separated segment of ``f[:end]``, last first; the first one yielded is
    what follows the final newline (``b""`` when the data ends with one)."""
    pos = end
    carry = b""
    while pos > 0:
        size = min(chunk, pos)
        pos -= size
        f.seek(pos)
        parts = (f.read(size) + carry).split(b"\n")
        carry = parts[0]
        for i in range(len(parts) - 1, 0, -1):
            yield parts[i]
    yield carry


def complete_lines_reversed(
    f: IO[bytes], end: int, chunk: int, counter: ReadCounter
) -> tuple[int, Iterator[bytes]]:
    """(offset just past the last complete line, complete lines last first)."""
    segments = _raw_reverse(f, end, chunk)
    partial = next(segments)
    if partial:
        counter.skipped += 1
    return end - len(partial), segments


def iter_reverse_lines(
    path: Path, chunk: int = 64 * 1024, counter: ReadCounter | None = None
) -> Iterator[bytes]:
    """Complete lines of one file, last first, reading blocks from the end."""
    counter = counter if counter is not None else ReadCounter()
    with open(path, "rb") as f:
        end = os.fstat(f.fileno()).st_size
        _, lines = complete_lines_reversed(f, end, chunk, counter)
        yield from lines


@dataclass
class TailResult:
    records: list[Record]
    skipped: int = 0
    #: (inode, offset) of the live file where the records end; ``follow(start=...)`` resumes
    #: there, so ``tail -f`` neither misses nor repeats a record written in between.
    position: tuple[int, int] | None = None


def tail(path: Path, n: int, flt: LogFilter = ALL, chunk: int = 64 * 1024) -> TailResult:
    """The last ``n`` matching records across all files, newest last; reads from the end."""
    path = Path(path)
    counter = ReadCounter()
    found: list[Record] = []
    position: tuple[int, int] | None = None
    stop_before = flt.since - _SINCE_SLACK if flt.since is not None else None
    # The live file first, then rotated ones newest first; listing after opening the live
    # file means a rotation in between shows our live file again, which we skip by inode.
    live = open_if_exists(path)
    live_ino = os.fstat(live.fileno()).st_ino if live is not None else None
    sources: list[IO[bytes] | Path] = [live] if live is not None else []
    sources += reversed(rotated_files(path))
    done = n <= 0
    for source in sources:
        if done:
            break
        f = source if not isinstance(source, Path) else open_if_exists(source)
        if f is None:
            continue  # pruned since we listed
        with f:
            if f is not live and os.fstat(f.fileno()).st_ino == live_ino:
                continue
            offset, lines = complete_lines_reversed(f, os.fstat(f.fileno()).st_size, chunk, counter)
            if f is live:
                position = (live_ino, offset)
            for line in lines:
                record = parse_line(line, counter)
                if record is None:
                    continue
                if stop_before is not None:
                    ts = parse_timestamp(record)
                    if ts is not None and ts < stop_before:
                        done = True  # everything further back is older still
                        break
                if flt.matches(record):
                    found.append(record)
                    if len(found) >= n:
                        done = True
                        break
    for source in sources:
        if not isinstance(source, Path):
            source.close()
    found.reverse()
    return TailResult(found, counter.skipped, position)


# --- reading forwards ----------------------------------------------------------------------


def fast_loads() -> Any:
    """orjson's loads when installed (3x faster on a full scan; it comes with persona-core's
    dependencies), falling back to json.loads for whatever orjson refuses (e.g. huge ints)."""
    try:
        from orjson import loads as orjson_loads
    except ImportError:
        return json.loads

    def loads(line: bytes) -> Any:
        try:
            return orjson_loads(line)
        except ValueError:
            return json.loads(line)

    return loads


def iter_records(
    path: Path, flt: LogFilter = ALL, counter: ReadCounter | None = None, *, needle: bytes | None = None
) -> Iterator[Record]:
    """Every matching record, oldest file first, in file order. With ``needle``, lines not
    containing those bytes are dropped before parsing (``show ID`` scans fast)."""
    counter = counter if counter is not None else ReadCounter()
    loads = fast_loads()
    matches = None if flt == ALL else flt.matches
    # A file last written before --since holds nothing newer: skip it unread.
    oldest_ns = (flt.since - _SINCE_SLACK).timestamp() * 1e9 if flt.since is not None else None
    for file in log_files(Path(path)):
        f = open_if_exists(file)
        if f is None:
            continue
        with f:
            if oldest_ns is not None and os.fstat(f.fileno()).st_mtime_ns < oldest_ns:
                continue
            for line in f:
                if not line.endswith(b"\n"):
                    counter.skipped += 1  # torn last line
                    break
                if needle is not None and needle not in line:
                    continue
                try:
                    record = loads(line)
                except ValueError:
                    if line.strip():
                        counter.skipped += 1
                    continue
                if not isinstance(record, dict):
                    counter.skipped += 1
                elif matches is None or matches(record):
                    yield record
