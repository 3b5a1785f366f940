"""Turn-log fixtures: stored records, a log file of them, and a follower thread."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

from persona_runtime.turnlog.follow import follow
from persona_runtime.turnlog.query import ReadCounter
from persona_runtime.turnlog.record import TurnLog

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def rec(i: int, **fields: object) -> dict[str, object]:
    base = TurnLog(
        turn_id=f"turn-{i:04d}-" + "f" * 20,
        conversation_id=str(fields.pop("conversation_id", "conv-aaaaaaaa")),
        turn_index=i,
        persona_id=str(fields.pop("persona_id", "ada")),
        tier="fast",
        provider="openai",
        model="gpt-4o-mini",
        prompt_tokens=100,
        completion_tokens=10,
        cost_cents=0.5,
        latency_ms=1000.0,
        ttft_ms=200.0,
        routing={"router": "heuristic", "reason": "short question"},
        attempts=({"tier": "fast", "provider": "openai", "model": "gpt-4o-mini", "outcome": "ok"},),  # type: ignore[arg-type]
        timestamp=T0 + timedelta(minutes=i),
    ).model_dump(mode="json")
    base.update(fields)
    return base


def write(path: Path, records: list[dict[str, object]], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + extra)


def fixture_records() -> list[dict[str, object]]:
    fell_back = [
        {"tier": "smart", "provider": "anthropic", "model": "claude-sonnet-4", "outcome": "error",
         "error_type": "RateLimitError", "error": "429 slow down", "latency_ms": 120.0},
        {"tier": "fast", "provider": "openai", "model": "gpt-4o-mini", "outcome": "ok", "latency_ms": 900.0},
    ]
    return [
        rec(0),
        rec(1, persona_id="bob", tier="smart", provider="anthropic", model="claude-sonnet-4", cost_cents=None,
            latency_ms=3000.0),
        rec(2, attempts=fell_back, latency_ms=1500.0),
        rec(3, status="error", error="provider exploded", cost_cents=None, completion_tokens=0, latency_ms=500.0),
        rec(4, persona_id="bob", kind="agent", run_id="run-bbbbbbbb", step=1, conversation_id="conv-run"),
        rec(5, persona_id="bob", kind="agent", run_id="run-bbbbbbbb", step=2, conversation_id="conv-run",
            status="interrupted"),
    ]


def indexes(output: str) -> list[int]:
    return [json.loads(line)["turn_index"] for line in output.splitlines() if line]


class Collector:
    """Runs follow() in a thread; waits on counts, never on sleeps."""

    def __init__(self, path: Path, expected: int, **kwargs: object) -> None:
        self.stop = threading.Event()
        self.done = threading.Event()
        self.records: list[dict[str, object]] = []
        self.counter = ReadCounter()
        self.expected = expected
        self.error: BaseException | None = None
        self.ready = threading.Event()
        self.progress = threading.Condition()
        self.thread = threading.Thread(target=self._run, args=(path, kwargs), daemon=True)
        self.thread.start()
        assert self.ready.wait(10)

    def _run(self, path: Path, kwargs: dict[str, object]) -> None:
        try:
            gen = follow(path, stop=self.stop, poll=0.01, counter=self.counter, **kwargs)  # type: ignore[arg-type]
            self.ready.set()  # follow() has taken its starting point: later writes are "new"
            for record in gen:
                with self.progress:
                    self.records.append(record)
                    self.progress.notify_all()
                if len(self.records) >= self.expected:
                    self.done.set()
        except BaseException as exc:  # surfaced by finish()
            self.error = exc
            self.ready.set()
            self.done.set()

    def wait_for(self, count: int, timeout: float = 30) -> None:
        with self.progress:
            assert self.progress.wait_for(lambda: len(self.records) >= count or self.error, timeout)

    def finish(self, timeout: float = 120) -> list[dict[str, object]]:
        reached = self.done.wait(timeout)
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "follow() did not stop on the stop event"
        if self.error:
            raise self.error
        assert reached, f"saw {len(self.records)} of {self.expected} records"
        return self.records
