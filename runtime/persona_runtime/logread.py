"""Reading the turn log: tail from the end, follow live, filter, aggregate.

Records are plain dicts as written by :class:`persona_runtime.turnlog.TurnLog`
(``model_dump_json``); they are never turned back into pydantic models here, so
reading is fast and records of a newer schema (unknown fields) read fine.

The log is one live file plus rotated siblings ``turns-<UTC stamp>.jsonl``.
A line that does not parse (a killed writer, a full disk) is skipped and counted
in a :class:`ReadCounter`, never raised. A last line without ``\\n`` is a write
that has not finished (or never will): it is skipped too.

This module imports only the standard library: ``persona logs tail`` must start fast.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

__all__ = [
    "LogFilter",
    "ReadCounter",
    "StatsRow",
    "TailResult",
    "follow",
    "is_fallback",
    "iter_records",
    "iter_reverse_lines",
    "log_files",
    "parse_since",
    "parse_timestamp",
    "rotated_files",
    "stats",
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
        if self.conversation_id is not None and record.get("conversation_id") != self.conversation_id:
            return False
        if self.run_id is not None and record.get("run_id") != self.run_id:
            return False
        if self.since is not None:
            ts = parse_timestamp(record)
            if ts is None or ts < self.since:
                return False
        return True


ALL = LogFilter()


@dataclass
class ReadCounter:
    """Lines skipped because they did not parse (or were torn)."""

    skipped: int = 0


def _parse(line: bytes, counter: ReadCounter) -> Record | None:
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


# --- files -------------------------------------------------------------------------------


def _rotated_pattern(path: Path) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(path.stem)}-\d{{8}}T\d{{12}}Z{re.escape(path.suffix)}$")


def rotated_files(path: Path) -> list[Path]:
    """Rotated siblings of ``path``, oldest first (the UTC stamp sorts by name)."""
    path = Path(path)
    pattern = _rotated_pattern(path)
    try:
        names = [name for name in os.listdir(path.parent) if pattern.match(name)]
    except FileNotFoundError:
        return []
    return [path.parent / name for name in sorted(names)]


def log_files(path: Path) -> list[Path]:
    """Rotated files oldest to newest, then the live file (when it exists)."""
    path = Path(path)
    live = path.exists()  # before listing: a rotation in between then shows up in the list
    files = rotated_files(path)
    if live and path.exists():
        files.append(path)
    return files


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


def _reverse_lines(
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
        _, lines = _reverse_lines(f, end, chunk, counter)
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
    live = _open_or_none(path)
    live_ino = os.fstat(live.fileno()).st_ino if live is not None else None
    sources: list[IO[bytes] | Path] = [live] if live is not None else []
    sources += reversed(rotated_files(path))
    done = n <= 0
    for source in sources:
        if done:
            break
        f = source if not isinstance(source, Path) else _open_or_none(source)
        if f is None:
            continue  # pruned since we listed
        with f:
            if f is not live and os.fstat(f.fileno()).st_ino == live_ino:
                continue
            offset, lines = _reverse_lines(f, os.fstat(f.fileno()).st_size, chunk, counter)
            if f is live:
                position = (live_ino, offset)
            for line in lines:
                record = _parse(line, counter)
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


def _open_or_none(path: Path) -> IO[bytes] | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


# --- reading forwards ----------------------------------------------------------------------


def _fast_loads() -> Any:
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
    loads = _fast_loads()
    matches = None if flt == ALL else flt.matches
    # A file last written before --since holds nothing newer: skip it unread.
    oldest_ns = (flt.since - _SINCE_SLACK).timestamp() * 1e9 if flt.since is not None else None
    for file in log_files(Path(path)):
        f = _open_or_none(file)
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


# --- following -----------------------------------------------------------------------------


def _snapshot(path: Path) -> list[tuple[Path, int, int]]:
    """(path, inode, mtime_ns) of every log file, oldest first, with no file missed.

    The live file is looked at before the directory is listed: if it is rotated in between,
    it appears in the listing under its new name, along with anything rotated after it."""
    try:
        live = os.stat(path)
    except FileNotFoundError:
        live = None
    entries: list[tuple[Path, int, int]] = []
    for p in rotated_files(path):
        try:
            st = os.stat(p)
        except FileNotFoundError:
            continue  # pruned
        entries.append((p, st.st_ino, st.st_mtime_ns))
    if live is not None and all(e[1] != live.st_ino for e in entries):
        entries.append((path, live.st_ino, live.st_mtime_ns))
    return entries


def _open_entry(entry: tuple[Path, int, int]) -> tuple[IO[bytes], int] | None:
    """Open ``entry`` if its name still holds that inode (the live file may have rotated)."""
    f = _open_or_none(entry[0])
    if f is None:
        return None
    if os.fstat(f.fileno()).st_ino != entry[1]:
        f.close()
        return None
    return f, entry[1]


def _next_file(path: Path, ino: int, mtime_ns: int) -> tuple[IO[bytes], int] | None:
    """Open the file written after the one with inode ``ino``, or None if there is none yet."""
    for _ in range(100):  # each retry means another rotation raced us
        entries = _snapshot(path)
        index = next((i for i, e in enumerate(entries) if e[1] == ino), None)
        if index is not None:
            if index + 1 >= len(entries):
                return None
            target = entries[index + 1]
        else:
            # Ours was pruned or deleted: resume with the oldest file not older than it.
            later = [e for e in entries if e[2] >= mtime_ns]
            if not later:
                return None
            target = later[0]
        opened = _open_entry(target)
        if opened is not None:
            return opened
    return None


def _first_new_file(path: Path, existing: set[int]) -> tuple[IO[bytes], int] | None:
    for _ in range(100):
        entries = [e for e in _snapshot(path) if e[1] not in existing]
        if not entries:
            return None
        opened = _open_entry(entries[0])
        if opened is not None:
            return opened
    return None


def _open_start(path: Path, start: tuple[int, int] | None) -> tuple[IO[bytes], int] | None:
    """The file and offset ``follow`` begins at: ``start``, else the end of the live file."""
    if start is not None:
        ino, offset = start
        for p in reversed(log_files(path)):
            f = _open_or_none(p)
            if f is None:
                continue
            if os.fstat(f.fileno()).st_ino == ino:
                f.seek(offset)
                return f, ino
            f.close()
    f = _open_or_none(path)
    if f is None:
        return None
    end = os.fstat(f.fileno()).st_size
    offset, _ = _reverse_lines(f, end, 64 * 1024, ReadCounter())
    f.seek(offset)  # after the last complete line: a write in progress is read once finished
    return f, os.fstat(f.fileno()).st_ino


def follow(
    path: Path,
    flt: LogFilter = ALL,
    stop: threading.Event | None = None,
    poll: float = 0.2,
    *,
    start: tuple[int, int] | None = None,
    counter: ReadCounter | None = None,
) -> Iterator[Record]:
    """Yield records appended by any process from now on (or from ``start``) until ``stop``.

    Rotation (the live file gets a new inode) drains the old file, then continues through
    every file rotated after it; truncation restarts the file from its beginning. A line is
    only parsed once its newline has arrived.
    """
    # Not a generator itself: "from now on" means from this call, not from the first next().
    path = Path(path)
    opened = _open_start(path, start)
    # No log yet: every file that appears from now on is new, including ones already rotated
    # by the time we look again.
    existing = {e[1] for e in _snapshot(path)} if opened is None else set()
    return _follow(
        path,
        flt,
        stop if stop is not None else threading.Event(),
        poll,
        opened,
        existing,
        counter if counter is not None else ReadCounter(),
    )


def _follow(
    path: Path,
    flt: LogFilter,
    stop: threading.Event,
    poll: float,
    opened: tuple[IO[bytes], int] | None,
    existing: set[int],
    counter: ReadCounter,
) -> Iterator[Record]:
    f, ino = opened if opened is not None else (None, None)
    buf = b""

    def emit(data: bytes) -> Iterator[Record]:
        nonlocal buf
        lines = (buf + data).split(b"\n")
        buf = lines.pop()
        for line in lines:
            record = _parse(line, counter)
            if record is not None and flt.matches(record):
                yield record

    try:
        while not stop.is_set():
            if f is None:
                first = _first_new_file(path, existing)
                if first is None:
                    stop.wait(poll)
                    continue
                f, ino = first
            data = f.read()
            if data:
                yield from emit(data)
                continue
            try:
                st = os.stat(path)
            except FileNotFoundError:
                st = None
            if st is not None and st.st_ino == ino:
                if st.st_size < f.tell():
                    f.seek(0)  # truncated in place
                    buf = b""
                    continue
                stop.wait(poll)
                continue
            # Rotated (or removed). Nothing is written to a file once it is renamed, so read
            # what is left, then move on to the next file in order.
            data = f.read()
            if data:
                yield from emit(data)
            assert ino is not None
            nxt = _next_file(path, ino, os.fstat(f.fileno()).st_mtime_ns)
            if nxt is None:
                stop.wait(poll)
                continue
            if buf:
                counter.skipped += 1  # a torn last line in a finished file
                buf = b""
            f.close()
            f, ino = nxt
    finally:
        if f is not None:
            f.close()


# --- statistics ----------------------------------------------------------------------------


@dataclass
class StatsRow:
    key: str
    turns: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: Sum over priced turns only; ``unpriced`` counts the others.
    cost_cents: float = 0.0
    unpriced: int = 0
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    fallbacks: int = 0
    errors: int = 0
    interrupted: int = 0
    _latencies: list[float] = field(default_factory=list, repr=False, compare=False)

    @property
    def fallback_rate(self) -> float:
        return self.fallbacks / self.turns if self.turns else 0.0

    @property
    def error_rate(self) -> float:
        return self.errors / self.turns if self.turns else 0.0


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile: an observed value, so p95 of a few turns is a real turn."""
    if not sorted_values:
        return None
    rank = max(1, -(-len(sorted_values) * p // 100))  # ceil without floats drifting
    return sorted_values[int(rank) - 1]


_GROUP_FIELDS = {"tier": "tier", "model": "model", "persona": "persona_id"}


def stats(records: Iterable[Record], by: str = "tier", *, total: bool = False) -> list[StatsRow]:
    """One row per group (``tier``/``model``/``persona``/``day``/``all``); with ``total``,
    a last row keyed ``"total"`` over everything."""
    if by not in ("tier", "model", "persona", "day", "all"):
        raise ValueError(f"cannot group by {by!r}: use tier, model, persona or day")
    field_name = _GROUP_FIELDS.get(by)
    groups: dict[str, StatsRow] = {}
    days: dict[str, str] = {}  # UTC minute -> local day: parsing every timestamp doubles the cost
    for record in records:
        if field_name is not None:
            key = record.get(field_name)
            if not isinstance(key, str):
                key = "-" if key is None else str(key)
        elif by == "day":
            raw = record.get("timestamp")
            minute = raw[:16] if isinstance(raw, str) and raw.endswith("Z") else None
            key = days.get(minute) if minute is not None else None
            if key is None:
                ts = parse_timestamp(record)
                key = ts.astimezone().date().isoformat() if ts is not None else "-"
                if minute is not None:
                    days[minute] = key
        else:
            key = "all"
        row = groups.get(key)
        if row is None:
            row = groups[key] = StatsRow(key)
        _add(row, record)
    rows = list(groups.values())
    if by == "day":
        rows.sort(key=lambda r: r.key)
    else:
        rows.sort(key=lambda r: (-r.turns, r.key))
    if total:
        rows.append(_merge("total", rows))
    for row in rows:
        row._latencies.sort()
        row.latency_p50_ms = percentile(row._latencies, 50)
        row.latency_p95_ms = percentile(row._latencies, 95)
        row._latencies = []
    return rows


def _merge(key: str, rows: list[StatsRow]) -> StatsRow:
    merged = StatsRow(key)
    for row in rows:
        merged.turns += row.turns
        merged.prompt_tokens += row.prompt_tokens
        merged.completion_tokens += row.completion_tokens
        merged.cost_cents += row.cost_cents
        merged.unpriced += row.unpriced
        merged.fallbacks += row.fallbacks
        merged.errors += row.errors
        merged.interrupted += row.interrupted
        merged._latencies.extend(row._latencies)
    return merged


def _add(row: StatsRow, record: Record) -> None:
    row.turns += 1
    row.prompt_tokens += record.get("prompt_tokens") or 0
    row.completion_tokens += record.get("completion_tokens") or 0
    cost = record.get("cost_cents")
    if cost is None:
        row.unpriced += 1
    else:
        row.cost_cents += cost
    latency = record.get("latency_ms")
    if isinstance(latency, (int, float)):
        row._latencies.append(float(latency))
    attempts = record.get("attempts")
    if attempts and len(attempts) > 1:
        row.fallbacks += 1
    status = record.get("status")
    if status == "error":
        row.errors += 1
    elif status == "interrupted":
        row.interrupted += 1
