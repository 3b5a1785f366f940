"""Following the turn log live, like ``tail -f``, across rotation and truncation.

Rotation renames the live file and starts a new one (see :mod:`persona_runtime.turnlog.files`);
nothing is written to a file once it is renamed, so a follower drains the old file and moves on
through every file rotated after it. Standard library only, like the rest of the readers.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from persona_runtime.turnlog.files import log_files, open_if_exists, rotated_files
from persona_runtime.turnlog.query import ALL, LogFilter, ReadCounter, Record, complete_lines_reversed, parse_line

__all__ = ["follow"]


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
    f = open_if_exists(entry[0])
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
            f = open_if_exists(p)
            if f is None:
                continue
            if os.fstat(f.fileno()).st_ino == ino:
                f.seek(offset)
                return f, ino
            f.close()
    f = open_if_exists(path)
    if f is None:
        return None
    end = os.fstat(f.fileno()).st_size
    offset, _ = complete_lines_reversed(f, end, 64 * 1024, ReadCounter())
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
            record = parse_line(line, counter)
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
