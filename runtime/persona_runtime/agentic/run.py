"""Run records: what an agent run did, step by step, saved as one JSON file per run.

A :class:`Run` is frozen; the loop makes a new one after every step and saves it
(``<runs>/<id>.json``, written to a temporary file and renamed into place, mode 0600),
so a crash or Ctrl-C never leaves a torn record and ``persona agent --list`` always
sees the latest state. ``context`` holds the messages the model saw (after compaction),
so a run that stopped can be resumed exactly where it was.
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from persona_runtime.paths import ensure_private_dir

__all__ = [
    "RUN_SCHEMA_VERSION",
    "Run",
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
    CANCELLED = "cancelled"
    ERROR = "error"

    @property
    def resumable(self) -> bool:
        return self in (RunStatus.NEEDS_INPUT, RunStatus.MAX_STEPS_REACHED, RunStatus.CANCELLED, RunStatus.ERROR)


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
    id: str
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


def list_runs(runs_dir: Path, *, limit: int | None = None) -> list[Run]:
    """Runs in ``runs_dir``, most recently updated first; unreadable files are skipped."""
    directory = Path(runs_dir)
    if not directory.is_dir():
        return []
    runs: list[Run] = []
    for path in directory.glob("*.json"):
        try:
            runs.append(Run.load(path))
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
        return Run.load(exact)
    if len(run_id) < 4:
        raise RunNotFoundError(f"no run {run_id!r} (give at least 4 characters of the id)")
    matches = sorted(p for p in directory.glob(f"{run_id}*.json")) if directory.is_dir() else []
    if not matches:
        raise RunNotFoundError(f"no run {run_id!r} in {directory}")
    if len(matches) > 1:
        raise RunNotFoundError(f"run id {run_id!r} is ambiguous ({len(matches)} runs start with it)")
    return Run.load(matches[0])
