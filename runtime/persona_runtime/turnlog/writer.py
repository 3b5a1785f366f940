"""Writing the turn log: one JSON line per record, safe across processes.

All turns of all conversations and agent runs go to one JSONL file,
``<data>/logs/turns.jsonl``, so ``persona logs tail`` can read it from the end.
:class:`JSONLTurnLogWriter` appends each record with a single ``write`` under an
exclusive ``flock``: concurrent processes never interleave or tear lines. When
the file passes ``max_bytes`` it is renamed to ``turns-<UTC stamp>.jsonl``
(under the same lock) and a new one is started; readers span rotated files.
At most ``keep`` rotated files are kept (``PERSONA_LOG_KEEP``, default 10): the
oldest are deleted when rotating, so the log never grows without bound. With the
default 64 MiB files that caps the log near 700 MiB.

Imports the record models and the file layout only, never the readers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol, runtime_checkable

from persona_runtime.paths import ensure_private_dir
from persona_runtime.turnlog.files import DEFAULT_MAX_BYTES, keep_from_env, rotated_files, rotated_name
from persona_runtime.turnlog.record import TurnLog

__all__ = ["JSONLTurnLogWriter", "MemoryTurnLogWriter", "TurnLogWriter"]


@runtime_checkable
class TurnLogWriter(Protocol):
    def write(self, log: TurnLog) -> None: ...


class MemoryTurnLogWriter:
    """Keeps records in a list; for tests."""

    def __init__(self) -> None:
        self.logs: list[TurnLog] = []

    def write(self, log: TurnLog) -> None:
        self.logs.append(log)


class JSONLTurnLogWriter:
    """Appends one line per record to ``path`` (0600), rotating by size, keeping ``keep``
    rotated files (default: ``PERSONA_LOG_KEEP`` or 10; 0 keeps none)."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES, keep: int | None = None) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.keep = keep if keep is not None else keep_from_env()
        if self.keep < 0:
            raise ValueError("keep must be >= 0")

    def write(self, log: TurnLog) -> None:
        import fcntl

        data = log.to_json_line().encode("utf-8")
        ensure_private_dir(self.path.parent)
        # O_RDWR, not O_WRONLY: we peek at the last byte (see below).
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                fd = self._rotate_if_needed(fd)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    # A writer died mid-line (or the disk filled): end that torn line, so
                    # it does not swallow this record too.
                    data = b"\n" + data
                _write_all(fd, data)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _rotate_if_needed(self, fd: int) -> int:
        """Given ``fd`` locked, return a locked descriptor of the live file with room left.

        Every lock acquisition is followed by a fresh check: the file may have been rotated
        (by us or another writer) while we waited, and a write must never land in a file
        that was already renamed (a follower that moved on would never see it)."""
        import fcntl

        while True:
            st = os.fstat(fd)
            try:
                current = os.stat(self.path)
            except FileNotFoundError:
                current = None
            if current is not None and current.st_ino == st.st_ino:
                if st.st_size < self.max_bytes:
                    return fd
                target = rotated_name(self.path)
                while target.exists():  # two rotations within one clock tick: never overwrite one
                    target = rotated_name(self.path)
                os.rename(self.path, target)
                self._prune()
            # Rotated by someone else between our open and our lock, or just now by us.
            os.close(fd)  # releases our lock
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)

    def _prune(self) -> None:
        rotated = rotated_files(self.path)
        for old in rotated[: max(0, len(rotated) - self.keep)]:
            old.unlink(missing_ok=True)  # a reader holding it open keeps reading fine


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
