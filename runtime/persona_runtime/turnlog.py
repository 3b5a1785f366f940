"""TurnLog: one frozen, versioned telemetry record per turn (or agent step).

All turns of all conversations and agent runs go to one JSONL file,
``<data>/logs/turns.jsonl``, so ``persona logs tail`` can read it from the end.
:class:`JSONLTurnLogWriter` appends each record with a single ``write`` under an
exclusive ``flock``: concurrent processes never interleave or tear lines. When
the file passes ``max_bytes`` it is renamed to ``turns-<UTC stamp>.jsonl``
(under the same lock) and a new one is started; readers span rotated files.
At most ``keep`` rotated files are kept (``PERSONA_LOG_KEEP``, default 10): the
oldest are deleted when rotating, so the log never grows without bound. With the
default 64 MiB files that caps the log near 700 MiB.
"""

from __future__ import annotations

import os
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field, field_validator

from persona_runtime.paths import ensure_private_dir

__all__ = [
    "SCHEMA_VERSION",
    "AttemptRecord",
    "JSONLTurnLogWriter",
    "MemoryTurnLogWriter",
    "ToolCallRecord",
    "TurnLog",
    "TurnLogWriter",
    "keep_from_env",
    "new_id",
]

SCHEMA_VERSION = 1
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_KEEP = 10
TurnStatus = Literal["ok", "interrupted", "error"]


def new_id() -> str:
    return uuid.uuid4().hex


class _Record(BaseModel):
    # Readers must accept records written by a newer version: unknown fields are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


class ToolCallRecord(_Record):
    name: str
    ok: bool
    duration_ms: float = 0.0


class AttemptRecord(_Record):
    """One try at one model; a turn with more than one attempt fell back."""

    tier: str
    provider: str
    model: str
    outcome: Literal["ok", "error", "interrupted"]
    error_type: str | None = None
    error: str | None = None
    latency_ms: float = 0.0


class TurnLog(_Record):
    schema_version: int = SCHEMA_VERSION
    turn_id: str = Field(default_factory=new_id)
    kind: Literal["chat", "agent"] = "chat"
    conversation_id: str
    turn_index: int = Field(ge=0)
    persona_id: str
    run_id: str | None = None
    step: int | None = None
    tier: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    #: Cents. ``None`` when the price is unknown: never an invented 0.
    cost_cents: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    tool_calls: tuple[ToolCallRecord, ...] = ()
    skill_used: str | None = None
    history_compacted: bool = False
    routing: dict[str, object] | None = None
    attempts: tuple[AttemptRecord, ...] = ()
    status: TurnStatus = "ok"
    error: str | None = None
    timestamp: datetime = Field(default_factory=lambda: datetime.now(UTC))

    @field_validator("timestamp")
    @classmethod
    def _tz_aware(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            raise ValueError("timestamp must be timezone-aware")
        return value

    @property
    def fallback(self) -> bool:
        """True when more than one model was tried."""
        return len(self.attempts) > 1

    def to_json_line(self) -> str:
        return self.model_dump_json(exclude_none=False) + "\n"


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
                target = self._rotated_name()
                while target.exists():  # two rotations within one clock tick: never overwrite one
                    target = self._rotated_name()
                os.rename(self.path, target)
                self._prune()
            # Rotated by someone else between our open and our lock, or just now by us.
            os.close(fd)  # releases our lock
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            fcntl.flock(fd, fcntl.LOCK_EX)

    def _rotated_name(self) -> Path:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.path.with_name(f"{self.path.stem}-{stamp}{self.path.suffix}")

    def _prune(self) -> None:
        from persona_runtime.logread import rotated_files

        rotated = rotated_files(self.path)
        for old in rotated[: max(0, len(rotated) - self.keep)]:
            old.unlink(missing_ok=True)  # a reader holding it open keeps reading fine


def keep_from_env() -> int:
    """``PERSONA_LOG_KEEP`` (parsed in :mod:`persona_runtime.settings`)."""
    from persona_runtime.settings import log_keep_from_env

    return log_keep_from_env()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
