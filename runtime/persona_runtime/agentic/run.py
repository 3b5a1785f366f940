"""Run records: what an agent run did, step by step, saved as one JSON file per run.

A :class:`Run` is frozen; the loop makes a new one after every step and saves it
(``<runs>/<id>.json``, written to a temporary file and renamed into place, mode 0600),
so a crash or Ctrl-C never leaves a torn record and ``persona agent --list`` always
sees the latest state. ``context`` holds the messages the model saw (after compaction),
so a run that stopped can be resumed exactly where it was.

While a process works on a run it holds an exclusive ``flock`` on ``<runs>/<id>.lock``
(:class:`RunLock`). The kernel drops that lock when the process dies, however it dies, so
a record still saying ``running`` with nobody holding its lock was abandoned (SIGKILL, a
crash, power loss): :func:`list_runs` and :func:`find_run` report it as ``abandoned``, and
it resumes from its last saved step. The lock also keeps two processes off the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator

from persona_runtime.paths import ensure_private_dir

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are never reported abandoned there
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "RUN_SCHEMA_VERSION",
    "Run",
    "RunBusyError",
    "RunLock",
    "RunNotFoundError",
    "RunStatus",
    "Step",
    "StepToolCall",
    "StepType",
    "find_run",
    "list_runs",
]

RUN_SCHEMA_VERSION = 1


class RunStatus(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    #: Stopped on an ``[ASK_USER]`` question nobody could answer; resumable.
    NEEDS_INPUT = "needs_input"
    MAX_STEPS_REACHED = "max_steps_reached"
    #: The next step could cross the spend cap and no cheaper model fits; resumable (with a higher cap).
    SPEND_CAP_REACHED = "spend_cap_reached"
    CANCELLED = "cancelled"
    ERROR = "error"
    #: Read as ``running`` but no process holds the run (it was killed); never saved, only
    #: reported by :func:`list_runs` / :func:`find_run`. Resumable from the last saved step.
    ABANDONED = "abandoned"

    @property
    def resumable(self) -> bool:
        return self in (
            RunStatus.NEEDS_INPUT, RunStatus.MAX_STEPS_REACHED, RunStatus.SPEND_CAP_REACHED, RunStatus.CANCELLED,
            RunStatus.ERROR, RunStatus.ABANDONED,
        )


class StepType(StrEnum):
    TOOL_CALL = "tool_call"
    ASK_USER = "ask_user"
    FINAL = "final"
    REASONING = "reasoning"
    #: Every model failed for this step.
    ERROR = "error"
    #: The step was cancelled before it finished.
    CANCELLED = "cancelled"


class _Frozen(BaseModel):
    # Records written by a newer version still load: unknown fields are ignored.
    model_config = ConfigDict(frozen=True, extra="ignore")


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return value


class StepToolCall(_Frozen):
    """One tool call made in a step, with its result."""

    call_id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    result: str = ""
    is_error: bool = False
    duration_ms: float = 0.0
    #: The person's time at the approval question, apart from the tool's.
    approval_ms: float = 0.0
    #: False when the person declined to run it.
    approved: bool = True
    #: True when the loop guard refused to run a repeated call.
    repeated: bool = False


class Step(_Frozen):
    index: int = Field(ge=1)
    type: StepType
    tier: str | None = None
    provider: str | None = None
    model: str | None = None
    prompt_tokens: int = Field(default=0, ge=0)
    completion_tokens: int = Field(default=0, ge=0)
    #: The provider reported no usage: the tokens (and cost) are our own count.
    usage_estimated: bool = False
    #: Cents; ``None`` when the model's price is unknown (never an invented 0).
    cost_cents: float | None = None
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    #: Text before the marker, or the whole reasoning/tool-step text.
    thinking: str = ""
    #: The final answer or the question (the text after the marker).
    content: str = ""
    tool_calls: tuple[StepToolCall, ...] = ()
    question: str | None = None
    answer: str | None = None
    #: A final answer made without tools after the step limit.
    best_effort: bool = False
    compacted: bool = False
    error: str | None = None
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    @field_validator("started_at", "finished_at")
    @classmethod
    def _tz_aware(cls, value: datetime | None) -> datetime | None:
        return _aware(value)

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


class Run(_Frozen):
    schema_version: int = RUN_SCHEMA_VERSION
    #: Names the run's files (``<id>.json``, ``<id>.lock``): never a path, whatever a file says.
    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    task: str
    persona_id: str
    #: The persona file the run was started with (so ``--resume`` can reload it).
    persona_path: str | None = None
    status: RunStatus = RunStatus.RUNNING
    max_steps: int = Field(default=8, ge=1)
    steps: tuple[Step, ...] = ()
    output: str | None = None
    #: True when ``output`` is the best-effort answer made after the step limit.
    best_effort: bool = False
    error: str | None = None
    #: The open ``[ASK_USER]`` question, while the run waits for an answer.
    pending_question: str | None = None
    #: The messages the model sees, after compaction (persona-core message dicts).
    context: tuple[dict[str, Any], ...] = ()
    created_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    updated_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    finished_at: datetime | None = None

    @field_validator("created_at", "updated_at", "finished_at")
    @classmethod
    def _tz_aware(cls, value: datetime | None) -> datetime | None:
        return _aware(value)

    # -- derived -------------------------------------------------------------------------

    @property
    def model_steps(self) -> int:
        """Steps that count against ``max_steps`` (the best-effort answer does not)."""
        return sum(1 for s in self.steps if not s.best_effort)

    @property
    def prompt_tokens(self) -> int:
        return sum(s.prompt_tokens for s in self.steps)

    @property
    def completion_tokens(self) -> int:
        return sum(s.completion_tokens for s in self.steps)

    @property
    def usage_estimated(self) -> bool:
        """Some step's tokens are our own count (its provider reported none)."""
        return any(s.usage_estimated for s in self.steps)

    @property
    def cost_cents(self) -> float | None:
        """Sum over priced steps; ``None`` when no step had a known price."""
        priced = [s.cost_cents for s in self.steps if s.cost_cents is not None]
        return round(sum(priced), 6) if priced else None

    @property
    def unpriced_steps(self) -> int:
        return sum(1 for s in self.steps if s.cost_cents is None and (s.prompt_tokens or s.completion_tokens))

    @property
    def tools_used(self) -> tuple[str, ...]:
        return tuple(sorted({c.name for s in self.steps for c in s.tool_calls}))

    # -- persistence ---------------------------------------------------------------------

    def to_json(self) -> str:
        return self.model_dump_json(indent=1)

    @classmethod
    def from_json(cls, text: str) -> Run:
        return cls.model_validate_json(text)

    def path_in(self, runs_dir: Path) -> Path:
        return Path(runs_dir) / f"{self.id}.json"

    def save(self, runs_dir: Path) -> Path:
        """Write ``<runs_dir>/<id>.json`` atomically (temp file + rename), mode 0600."""
        directory = ensure_private_dir(Path(runs_dir))
        target = self.path_in(directory)
        data = self.to_json().encode("utf-8")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.id}.", suffix=".tmp", dir=directory)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return target

    @classmethod
    def load(cls, path: Path) -> Run:
        return cls.from_json(Path(path).read_text(encoding="utf-8"))


class RunNotFoundError(LookupError):
    """No run matches the id (or the prefix matches more than one)."""


class RunBusyError(ValueError):
    """Another process is working on this run."""


class RunLock:
    """An exclusive, non-blocking ``flock`` on ``<runs_dir>/<run_id>.lock`` for as long as a
    process works on the run. The file holds the owner's pid (for messages only)."""

    def __init__(self, runs_dir: Path, run_id: str) -> None:
        self.path = Path(runs_dir) / f"{run_id}.lock"
        self.run_id = run_id
        self._fd: int | None = None

    def acquire(self) -> Self:
        """Take the lock or raise :class:`RunBusyError` at once (never waits)."""
        if fcntl is None or self._fd is not None:
            return self
        while True:
            try:
                fd = os.open(ensure_private_dir(self.path.parent) / self.path.name, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return self  # no place for a lock (read-only dir): the run's own save reports that
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                owner = _read_pid(self.path)
                raise RunBusyError(
                    f"run {self.run_id} is being worked on by another process" + (f" (pid {owner})" if owner else "")
                ) from None
            # The owner before us may have unlinked the file between our open and our lock:
            # then we hold a lock nobody else can see; take the file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def release(self) -> None:
        """Unlink, then unlock: whoever opens the path next gets a fresh file."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> Self:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def is_held(runs_dir: Path, run_id: str) -> bool:
    """Whether some live process holds ``run_id``'s lock (True where flock is unavailable)."""
    if fcntl is None:
        return True
    try:
        fd = os.open(Path(runs_dir) / f"{run_id}.lock", os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return True  # unreadable: assume the run is alive rather than offer to resume it twice
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the probe's shared lock
    return False


def _read_pid(path: Path) -> str:
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return text if text.isdigit() else ""


def _as_seen(run: Run, runs_dir: Path) -> Run:
    """``running`` with no live owner reads as ``abandoned``."""
    if run.status is RunStatus.RUNNING and not is_held(runs_dir, run.id):
        return run.model_copy(update={"status": RunStatus.ABANDONED})
    return run


def list_runs(runs_dir: Path, *, limit: int | None = None) -> list[Run]:
    """Runs in ``runs_dir``, most recently updated first; unreadable files are skipped."""
    directory = Path(runs_dir)
    if not directory.is_dir():
        return []
    runs: list[Run] = []
    for path in directory.glob("*.json"):
        try:
            runs.append(_as_seen(Run.load(path), directory))
        except (OSError, ValueError, json.JSONDecodeError):
            continue
    runs.sort(key=lambda r: r.updated_at, reverse=True)
    return runs[:limit] if limit is not None else runs


def find_run(runs_dir: Path, run_id: str) -> Run:
    """The run whose id is ``run_id`` or starts with it (a unique prefix of 4+ characters)."""
    run_id = run_id.strip()
    if not run_id or any(c in run_id for c in "/\\.") or len(run_id) > 64:
        raise RunNotFoundError(f"not a run id: {run_id!r}")
    directory = Path(runs_dir)
    exact = directory / f"{run_id}.json"
    if exact.is_file():
        return _as_seen(Run.load(exact), directory)
    if len(run_id) < 4:
        raise RunNotFoundError(f"no run {run_id!r} (give at least 4 characters of the id)")
    matches = sorted(p for p in directory.glob(f"{run_id}*.json")) if directory.is_dir() else []
    if not matches:
        raise RunNotFoundError(f"no run {run_id!r} in {directory}")
    if len(matches) > 1:
        raise RunNotFoundError(f"run id {run_id!r} is ambiguous ({len(matches)} runs start with it)")
    return _as_seen(Run.load(matches[0]), directory)
