"""An SQLite index beside the turn log, so ``logs stats`` and filtered ``logs list`` need not
parse every line: ``<logs>/turns.index.sqlite`` (0600).

The JSONL stays the source of truth; the index is derived from it and can always be thrown
away. It is brought up to date by the reader before each query (:func:`open_index`), reading
only what was appended since the last query: each file's indexed byte offset is kept, along
with the bytes at its start and just before that offset, so a file that was rotated (renamed:
same inode, same bytes) keeps its rows, and one that was truncated or rewritten is indexed
again from the start. Rows of files that were pruned are dropped. A torn last line is left for
the next sync (it is indexed once it ends, or counted as a corrupt line once the writer ends
it). A record whose indexed fields have unexpected types is marked ``odd``; queries that would
touch one scan the JSONL instead (:mod:`.index_query`), so the index never answers differently.

Any SQLite fault (a corrupt, locked or unwritable index) makes :func:`open_index` delete the
index and build it once more, or return None: the caller then scans the JSONL.

Standard library only (``sqlite3``), like the other readers; the writer never imports it.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from persona_runtime.turnlog.files import log_files
from persona_runtime.turnlog.index_cells import CELLS_SCHEMA, CellDeltas, drop_cells
from persona_runtime.turnlog.query import Record, fast_loads, parse_timestamp

__all__ = ["INDEX_VERSION", "IndexedFile", "discard_index", "index_path", "open_index", "row_of"]

#: Bumped when the schema or what a row means changes: an older index is rebuilt.
INDEX_VERSION = 3
_HEAD = 256  # bytes at a file's start that identify it (with its inode)
_TAIL = 64  # bytes just before the indexed offset that must still be there
_CHUNK = 8 * 1024 * 1024
_BATCH = 20_000
_TAIL_PEEK = 1 << 20  # a torn last line longer than this is left to a full sync to look at
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)
_STR_FIELDS = ("persona_id", "tier", "model", "provider", "status", "conversation_id", "run_id", "turn_id", "kind")

_SCHEMA = """
CREATE TABLE meta(key TEXT PRIMARY KEY, value);
CREATE TABLE files(id INTEGER PRIMARY KEY, dev INTEGER, ino INTEGER, head BLOB, tail BLOB,
                   indexed_to INTEGER, bad INTEGER, odd INTEGER);
CREATE TABLE records(file INTEGER, off INTEGER, len INTEGER, ts INTEGER, persona, tier, model,
                     provider_model, status, kind, conversation_id, run_id, turn_id,
                     prompt_tokens, completion_tokens, cost, latency, fallback INTEGER, odd INTEGER,
                     estimated INTEGER, PRIMARY KEY(file, off)) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class IndexedFile:
    """One log file as the index saw it on this sync: rows up to ``indexed_to``."""

    id: int
    path: Path
    ino: int
    size: int
    mtime_ns: int
    indexed_to: int
    #: Lines that did not parse (corrupt); a torn last line is ``size > indexed_to``.
    bad: int
    #: Rows marked odd (see :func:`row_of`): queries over this file scan instead.
    odd: int


def index_path(log: Path) -> Path:
    return Path(log).with_name(Path(log).stem + ".index.sqlite")


def open_index(log: Path) -> tuple[sqlite3.Connection, list[IndexedFile]] | None:
    """The index of ``log``, synced with the files now; None when there is no usable index
    (the caller scans). A corrupt index is deleted and rebuilt once."""
    target = index_path(log)
    for attempt in range(2):
        conn = None
        try:
            conn = _connect(target)
            return conn, _sync(conn, Path(log))
        except (sqlite3.Error, OSError, ValueError):
            if conn is not None:
                conn.close()
            if attempt or not discard_index(log):
                return None
    return None


def discard_index(log: Path) -> bool:
    """Delete the index of ``log`` (it is rebuilt on the next query); False when it cannot be."""
    target = index_path(log)
    try:
        for suffix in ("", "-journal", "-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
    except OSError:
        return False
    return True


def _connect(target: Path) -> sqlite3.Connection:
    # Create it 0600 ourselves; SQLite gives its journal the same mode.
    os.close(os.open(target, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(target, timeout=30, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version != INDEX_VERSION:
            conn.execute("BEGIN IMMEDIATE")
            if conn.execute("PRAGMA user_version").fetchone()[0] != INDEX_VERSION:
                for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'").fetchall():
                    conn.execute(f'DROP TABLE "{name}"')
                for statement in [*filter(str.strip, _SCHEMA.split(";")), *CELLS_SCHEMA]:
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version={INDEX_VERSION}")
            conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


def _sync(conn: sqlite3.Connection, log: Path) -> list[IndexedFile]:
    unchanged = _unchanged(conn, log)
    if unchanged is not None:
        return unchanged  # nothing to write: no lock, no journal
    conn.execute("BEGIN IMMEDIATE")  # one syncing reader at a time; the others wait, then see its work
    try:
        result = _sync_locked(conn, log)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _unchanged(conn: sqlite3.Connection, log: Path) -> list[IndexedFile] | None:
    """The files as indexed when no complete line was added, none was pruned or rewritten;
    else None (a sync must write)."""
    known = {row[0]: row for row in conn.execute("SELECT id, dev, ino, head, tail, indexed_to, bad, odd FROM files")}
    seen: list[IndexedFile] = []
    for path in log_files(log):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        with f:
            st = os.fstat(f.fileno())
            entry = _find(known, f, st)
            if entry is None:
                return None
            file_id, indexed_to = entry[0], entry[5]
            if st.st_size > indexed_to:
                if st.st_size - indexed_to > _TAIL_PEEK:
                    return None
                f.seek(indexed_to)
                if b"\n" in f.read(st.st_size - indexed_to):
                    return None  # a new complete line
            known.pop(file_id)
            seen.append(IndexedFile(file_id, path, st.st_ino, st.st_size, st.st_mtime_ns, indexed_to, entry[6], entry[7]))
    return seen if not known else None


def _sync_locked(conn: sqlite3.Connection, log: Path) -> list[IndexedFile]:
    known = {row[0]: row for row in conn.execute("SELECT id, dev, ino, head, tail, indexed_to, bad, odd FROM files")}
    seen: list[IndexedFile] = []
    for path in log_files(log):
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            continue  # pruned since we listed
        with f:
            st = os.fstat(f.fileno())
            entry = _find(known, f, st)
            if entry is None:
                cursor = conn.execute("INSERT INTO files(dev, ino, head, tail, indexed_to, bad, odd) VALUES (?, ?, x'', x'', 0, 0, 0)",
                                      (st.st_dev, st.st_ino))  # fmt: skip
                file_id, indexed_to, bad, odd = cursor.lastrowid, 0, 0, 0
            else:
                file_id, indexed_to, bad, odd = entry[0], entry[5], entry[6], entry[7]
                known.pop(file_id)
            if st.st_size > indexed_to:
                indexed_to, bad, odd = _index_file(conn, file_id, f, indexed_to, st.st_size, (bad, odd))
            seen.append(IndexedFile(file_id, path, st.st_ino, st.st_size, st.st_mtime_ns, indexed_to, bad, odd))
    for file_id in known:  # pruned, or rewritten under the same inode
        _drop(conn, file_id)
    return seen


def _find(known: dict[int, tuple[Any, ...]], f: Any, st: os.stat_result) -> tuple[Any, ...] | None:
    """The files row that is this open file, unchanged up to its indexed offset; a row that
    has the inode but not the bytes is stale and dropped by the caller."""
    for row in known.values():
        _id, dev, ino, head, tail, indexed_to, _bad, _odd = row
        if dev != st.st_dev or ino != st.st_ino:
            continue
        if st.st_size < indexed_to:
            return None
        f.seek(0)
        if f.read(len(head)) != head:
            return None
        f.seek(indexed_to - len(tail))
        if f.read(len(tail)) != tail:
            return None
        return row
    return None


def _drop(conn: sqlite3.Connection, file_id: int) -> None:
    drop_cells(conn, file_id)
    conn.execute("DELETE FROM records WHERE file = ?", (file_id,))
    conn.execute("DELETE FROM files WHERE id = ?", (file_id,))


def _index_file(
    conn: sqlite3.Connection, file_id: int, f: Any, start: int, size: int, counts: tuple[int, int]
) -> tuple[int, int, int]:
    """Index complete lines of ``f`` from ``start`` to ``size``; the new (indexed_to, bad, odd)."""
    loads = fast_loads()
    bad, odd = counts
    cells = CellDeltas()
    rows: list[tuple[Any, ...]] = []
    end = start
    for off, line in _lines(f, start, size):
        end = off + len(line) + 1
        if not line.strip():
            continue
        try:
            record = loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(record, dict):
            bad += 1
            continue
        row = row_of(record, file_id, off, len(line) + 1)
        odd += row[18]
        rows.append(row)
        if not row[18]:
            cells.add(row)  # a file with odd rows is never read from its cells
        if len(rows) >= _BATCH:
            _insert(conn, rows)
            rows = []
    _insert(conn, rows)
    cells.flush(conn, file_id)
    f.seek(0)
    head = f.read(min(_HEAD, end))
    f.seek(max(0, end - _TAIL))
    tail = f.read(end - max(0, end - _TAIL))
    conn.execute("UPDATE files SET head = ?, tail = ?, indexed_to = ?, bad = ?, odd = ? WHERE id = ?",
                 (head, tail, end, bad, odd, file_id))  # fmt: skip
    return end, bad, odd


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        conn.executemany("INSERT INTO records VALUES (" + ", ".join("?" * 20) + ")", rows)


def _lines(f: Any, start: int, size: int) -> Iterator[tuple[int, bytes]]:
    """(offset, line without its newline) for every complete line in ``f[start:size]``."""
    pos = start
    carry = b""
    f.seek(start)
    while pos < size:
        block = f.read(min(_CHUNK, size - pos))
        if not block:
            break
        base = pos - len(carry)
        data = carry + block
        pos += len(block)
        lines = data.split(b"\n")
        carry = lines.pop()  # after the last newline: incomplete (or empty)
        off = base
        for line in lines:
            yield off, line
            off += len(line) + 1


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def row_of(record: Record, file_id: int, off: int, length: int) -> tuple[Any, ...]:
    """The index row of one record: the fields filters and stats use, exactly as the scan
    reads them. ``odd`` marks a record those fields cannot represent faithfully."""
    get = record.get
    odd = any(get(name) is not None and not isinstance(get(name), str) for name in _STR_FIELDS)
    prompt, completion, cost, latency = get("prompt_tokens"), get("completion_tokens"), get("cost_cents"), get("latency_ms")
    for tokens in (prompt, completion):
        odd = odd or (tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool)))
    odd = odd or (cost is not None and not _number(cost)) or isinstance(latency, bool)
    if _number(latency):
        latency = float(latency)  # type: ignore[arg-type]
        odd = odd or latency != latency  # NaN does not sort
    else:
        latency = None
    attempts = get("attempts")
    odd = odd or (attempts is not None and not isinstance(attempts, list))
    raw_ts = get("timestamp")
    odd = odd or (raw_ts is not None and not isinstance(raw_ts, str))
    ts = parse_timestamp(record)
    micros = (ts - _EPOCH) // _MICRO if ts is not None else None
    return (
        file_id, off, length, micros, get("persona_id"), get("tier"), get("model"),
        f"{get('provider')}/{get('model')}", get("status"), get("kind"), get("conversation_id"), get("run_id"),
        get("turn_id"), prompt or 0, completion or 0, cost, latency,
        int(isinstance(attempts, list) and len(attempts) > 1), int(odd), int(get("usage_estimated") is True),
    )  # fmt: skip
