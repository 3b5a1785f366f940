"""persona_runtime.turnlog readers (query, follow, stats) and the writer's pruning: the log backwards, forwards and live."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_runtime.errors import ConfigError
from persona_runtime.turnlog.files import log_files, rotated_files
from persona_runtime.turnlog.query import LogFilter, ReadCounter, iter_records, iter_reverse_lines, parse_since, tail
from persona_runtime.turnlog.record import AttemptRecord, TurnLog
from persona_runtime.turnlog.stats import percentile, stats
from persona_runtime.turnlog.writer import JSONLTurnLogWriter
from tests.support.paths import REPO
from tests.support import turnlogs
from tests.support.turnlogs import T0, Collector

RUNTIME = REPO / "runtime"


def rec(i: int, **fields: object) -> dict[str, object]:
    """A stored record as TurnLog.model_dump(mode="json") writes it: no routing, no attempts."""
    defaults: dict[str, object] = {"turn_id": f"turn{i:04d}", "conversation_id": "conv-a", "routing": None, "attempts": []}
    return turnlogs.rec(i, **(defaults | fields))


def line(record: dict[str, object]) -> str:
    return json.dumps(record, separators=(",", ":")) + "\n"


def write(path: Path, records: list[dict[str, object]], extra: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line(r) for r in records) + extra)
    return path


def rotated(path: Path, n: int) -> Path:
    return path.with_name(f"turns-20261101T0000{n:02d}000000Z.jsonl")


# --- parse_since ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "delta"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        (" 2H ", timedelta(hours=2)),
        ("0m", timedelta(0)),
    ],
)
def test_parse_since_relative(text: str, delta: timedelta) -> None:
    assert parse_since(text, now=T0) == T0 - delta


def test_parse_since_absolute() -> None:
    assert parse_since("2026-11-01") == datetime(2026, 11, 1).astimezone()
    assert parse_since("2026-11-01T14:30") == datetime(2026, 11, 1, 14, 30).astimezone()
    assert parse_since("2026-11-01T14:30:00Z") == datetime(2026, 11, 1, 14, 30, tzinfo=UTC)
    assert parse_since("2026-11-01T14:30+02:00") == datetime(2026, 11, 1, 12, 30, tzinfo=UTC)
    assert parse_since("2026-11-01").tzinfo is not None


@pytest.mark.parametrize("text", ["", "yesterday", "2 hours", "-2h", "2y", "h", "2026-13-01", "12:00:00x"])
def test_parse_since_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="90s, 15m, 2h"):
        parse_since(text)


# --- filters -------------------------------------------------------------------------------


def test_filter_fields() -> None:
    fell_back = rec(1, attempts=[{"tier": "smart"}, {"tier": "fast"}])
    failed = rec(2, status="error", error="boom")
    agent = rec(3, persona_id="bob", run_id="run-1", step=2, kind="agent", tier="smart", model="claude-sonnet-4")
    plain = rec(4)
    assert LogFilter().matches(plain)
    assert LogFilter(fallbacks_only=True).matches(fell_back) and not LogFilter(fallbacks_only=True).matches(plain)
    assert LogFilter(errors_only=True).matches(failed) and not LogFilter(errors_only=True).matches(plain)
    assert LogFilter(persona="bob").matches(agent) and not LogFilter(persona="bob").matches(plain)
    assert LogFilter(tier="smart").matches(agent) and not LogFilter(tier="smart").matches(plain)
    assert LogFilter(model="gpt-4o-mini").matches(plain)
    assert LogFilter(model="openai/gpt-4o-mini").matches(plain)
    assert not LogFilter(model="gpt-4o").matches(plain)
    assert LogFilter(run_id="run-1").matches(agent) and not LogFilter(run_id="run-1").matches(plain)
    assert LogFilter(conversation_id="conv-a").matches(plain)
    assert not LogFilter(conversation_id="conv-b").matches(plain)
    assert LogFilter(since=T0 + timedelta(minutes=4)).matches(plain)
    assert not LogFilter(since=T0 + timedelta(minutes=5)).matches(plain)
    assert not LogFilter(since=T0).matches({"timestamp": "not a time"})
    assert LogFilter(persona="bob", tier="smart", since=T0).matches(agent)
    assert not LogFilter(persona="bob", tier="fast").matches(agent)


# --- files and reading backwards --------------------------------------------------------------


def test_log_files_order(tmp_path: Path) -> None:
    live = write(tmp_path / "turns.jsonl", [rec(9)])
    for n in (3, 1, 2):
        write(rotated(live, n), [rec(n)])
    (tmp_path / "turns-backup.jsonl").write_text("{}\n")  # not a rotation: ignored
    (tmp_path / "persona-core.log").write_text("x\n")
    assert log_files(live) == [rotated(live, 1), rotated(live, 2), rotated(live, 3), live]
    live.unlink()
    assert log_files(live)[-1] == rotated(live, 3)
    assert log_files(tmp_path / "nowhere" / "turns.jsonl") == []


@pytest.mark.parametrize("chunk", [1, 7, 64, 64 * 1024])
def test_iter_reverse_lines_across_blocks(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\n\nthree\nfour\n")
    counter = ReadCounter()
    assert list(iter_reverse_lines(path, chunk, counter)) == [b"four", b"three", b"", b"two", b"one"]
    assert counter.skipped == 0


@pytest.mark.parametrize("chunk", [1, 3, 64 * 1024])
def test_iter_reverse_lines_skips_partial_last_line(tmp_path: Path, chunk: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"one\ntwo\n{\"torn")
    counter = ReadCounter()
    assert list(iter_reverse_lines(path, chunk, counter)) == [b"two", b"one"]
    assert counter.skipped == 1
    path.write_bytes(b"")
    assert list(iter_reverse_lines(path, chunk, counter)) == []


def test_tail_order_and_n(tmp_path: Path) -> None:
    path = write(tmp_path / "turns.jsonl", [rec(i) for i in range(10)])
    result = tail(path, 3)
    assert [r["turn_index"] for r in result.records] == [7, 8, 9]
    assert result.skipped == 0
    assert result.position == (path.stat().st_ino, path.stat().st_size)
    assert [r["turn_index"] for r in tail(path, 50).records] == list(range(10))
    assert tail(path, 0).records == []
    assert tail(tmp_path / "none.jsonl", 5).records == []


def test_tail_filters(tmp_path: Path) -> None:
    records = [rec(i, persona_id="bob" if i % 3 == 0 else "ada") for i in range(12)]
    records[4]["status"] = "error"
    records[7]["attempts"] = [{"tier": "smart"}, {"tier": "fast"}]
    path = write(tmp_path / "turns.jsonl", records)
    assert [r["turn_index"] for r in tail(path, 2, LogFilter(persona="bob")).records] == [6, 9]
    assert [r["turn_index"] for r in tail(path, 5, LogFilter(errors_only=True)).records] == [4]
    assert [r["turn_index"] for r in tail(path, 5, LogFilter(fallbacks_only=True)).records] == [7]
    assert tail(path, 5, LogFilter(tier="smart")).records == []


def test_tail_spans_rotated_files(tmp_path: Path) -> None:
    live = write(tmp_path / "turns.jsonl", [rec(8), rec(9)])
    write(rotated(live, 1), [rec(0), rec(1), rec(2)])
    write(rotated(live, 2), [rec(3), rec(4), rec(5), rec(6), rec(7)])
    assert [r["turn_index"] for r in tail(live, 6).records] == [4, 5, 6, 7, 8, 9]
    assert [r["turn_index"] for r in tail(live, 100).records] == list(range(10))
    assert [r["turn_index"] for r in iter_records(live)] == list(range(10))


def test_tail_never_reads_older_than_needed(tmp_path: Path) -> None:
    # Garbage at the start of the file would be counted if tail scanned the whole log.
    path = tmp_path / "turns.jsonl"
    path.write_text("garbage\n" * 1000 + "".join(line(rec(i)) for i in range(100)))
    result = tail(path, 5, chunk=4096)
    assert [r["turn_index"] for r in result.records] == [95, 96, 97, 98, 99]
    assert result.skipped == 0


def test_tail_since_stops_at_old_records(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    old = [rec(i) for i in range(100)]
    recent = [rec(i) for i in range(200, 205)]
    path.write_text("garbage\n" + "".join(line(r) for r in old + recent))
    result = tail(path, 1000, LogFilter(since=T0 + timedelta(minutes=150)))
    assert [r["turn_index"] for r in result.records] == [200, 201, 202, 203, 204]
    assert result.skipped == 0  # stopped well before the garbage line


def test_torn_last_line_and_corrupt_middle_line(tmp_path: Path) -> None:
    body = line(rec(0)) + line(rec(1)) + '{"turn_id": "x", "trunc\n' + "[1, 2]\n" + line(rec(2))
    path = tmp_path / "turns.jsonl"
    path.write_text(body + line(rec(3))[:40])
    result = tail(path, 10)
    assert [r["turn_index"] for r in result.records] == [0, 1, 2]
    assert result.skipped == 3  # torn tail, bad JSON, not an object
    assert result.position == (path.stat().st_ino, len(body.encode()))
    counter = ReadCounter()
    assert [r["turn_index"] for r in iter_records(path, counter=counter)] == [0, 1, 2]
    assert counter.skipped == 3


def test_non_utf8_line_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_bytes(line(rec(0)).encode() + b"\xff\xfe{\n" + line(rec(1)).encode())
    counter = ReadCounter()
    assert [r["turn_index"] for r in iter_records(path, counter=counter)] == [0, 1]
    assert counter.skipped == 1
    assert tail(path, 5).skipped == 1


def test_unknown_fields_are_read(tmp_path: Path) -> None:
    newer = rec(0, schema_version=7, sentiment="happy", cache={"read": 5})
    path = write(tmp_path / "turns.jsonl", [newer])
    assert tail(path, 1).records[0]["sentiment"] == "happy"
    assert next(iter_records(path))["cache"] == {"read": 5}
    assert TurnLog.model_validate(newer).turn_index == 0  # the model ignores them too


def test_iter_records_needle_and_filter(tmp_path: Path) -> None:
    path = write(tmp_path / "turns.jsonl", [rec(i, conversation_id=f"conv-{i % 2}") for i in range(6)])
    got = list(iter_records(path, LogFilter(conversation_id="conv-1"), needle=b"conv-1"))
    assert [r["turn_index"] for r in got] == [1, 3, 5]


# --- stats ---------------------------------------------------------------------------------


def test_stats_exact() -> None:
    records = [
        rec(0, tier="fast", latency_ms=100.0, prompt_tokens=10, completion_tokens=1, cost_cents=1.25),
        rec(1, tier="fast", latency_ms=300.0, prompt_tokens=20, completion_tokens=2, cost_cents=None),
        rec(2, tier="fast", latency_ms=200.0, prompt_tokens=30, completion_tokens=3, cost_cents=0.75,
            attempts=[{"tier": "smart"}, {"tier": "fast"}]),
        rec(3, tier="fast", latency_ms=400.0, prompt_tokens=40, completion_tokens=4, cost_cents=2.0, status="error"),
        rec(4, tier="smart", latency_ms=50.0, prompt_tokens=5, completion_tokens=5, cost_cents=None,
            status="interrupted"),
        rec(5, tier=None, latency_ms=10.0),
    ]
    rows = stats(records, "tier", total=True)
    assert [r.key for r in rows] == ["fast", "-", "smart", "total"]
    fast, none, smart, total = rows
    assert (fast.turns, fast.prompt_tokens, fast.completion_tokens) == (4, 100, 10)
    assert fast.cost_cents == pytest.approx(4.0) and fast.unpriced == 1
    assert (fast.latency_p50_ms, fast.latency_p95_ms) == (200.0, 400.0)
    assert (fast.fallbacks, fast.fallback_rate, fast.errors, fast.error_rate) == (1, 0.25, 1, 0.25)
    assert (smart.turns, smart.unpriced, smart.interrupted, smart.errors) == (1, 1, 1, 0)
    assert (smart.latency_p50_ms, smart.latency_p95_ms) == (50.0, 50.0)
    assert none.turns == 1
    assert (total.turns, total.prompt_tokens, total.unpriced, total.fallbacks, total.errors) == (6, 205, 2, 1, 1)
    assert total.cost_cents == pytest.approx(4.5)
    assert (total.latency_p50_ms, total.latency_p95_ms) == (100.0, 400.0)


def test_stats_groupings() -> None:
    records = [rec(0, persona_id="bob"), rec(1), rec(2), rec(3, timestamp="2026-11-03T12:00:00Z")]
    assert [(r.key, r.turns) for r in stats(records, "persona")] == [("ada", 3), ("bob", 1)]
    assert [(r.key, r.turns) for r in stats(records, "model")] == [("gpt-4o-mini", 4)]
    days = stats(records, "day")
    assert [r.turns for r in days] == [3, 1] and days[0].key < days[1].key
    assert stats([], "tier", total=True)[-1].turns == 0
    with pytest.raises(ValueError, match="group by"):
        stats(records, "color")


def test_percentile_nearest_rank() -> None:
    values = [float(v) for v in range(1, 21)]
    assert percentile(values, 50) == 10.0
    assert percentile(values, 95) == 19.0
    assert percentile([], 50) is None


# --- the writer: pruning and torn tails --------------------------------------------------------


def turn(i: int, tag: str = "w") -> TurnLog:
    return TurnLog(
        conversation_id=tag,
        turn_index=i,
        persona_id="ada",
        tier="fast",
        provider="openai",
        model="gpt-4o-mini",
        attempts=(AttemptRecord(tier="fast", provider="openai", model="gpt-4o-mini", outcome="ok"),),
    )


def test_writer_keeps_at_most_keep_rotated_files(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "turns.jsonl"
    writer = JSONLTurnLogWriter(path, max_bytes=1, keep=2)
    for i in range(6):
        writer.write(turn(i))
    rotated_now = rotated_files(path)
    assert len(rotated_now) == 2
    # The newest are kept: records 3 and 4 rotated, 5 is live.
    assert [r["turn_index"] for r in iter_records(path)] == [3, 4, 5]
    assert oct(path.stat().st_mode & 0o777) == "0o600"


def test_writer_keep_zero_and_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "turns.jsonl"
    monkeypatch.setenv("PERSONA_LOG_KEEP", "0")
    writer = JSONLTurnLogWriter(path, max_bytes=1)
    assert writer.keep == 0
    for i in range(3):
        writer.write(turn(i))
    assert log_files(path) == [path]
    monkeypatch.delenv("PERSONA_LOG_KEEP")
    assert JSONLTurnLogWriter(path).keep == 10
    monkeypatch.setenv("PERSONA_LOG_KEEP", "many")
    with pytest.raises(ConfigError) as info:
        JSONLTurnLogWriter(path)
    assert info.value.variable == "PERSONA_LOG_KEEP"


def test_writer_ends_a_torn_line_before_appending(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    writer = JSONLTurnLogWriter(path)
    writer.write(turn(0))
    with open(path, "a") as f:
        f.write('{"schema_version":1,"turn_id":"dead')  # a writer killed mid-line
    writer.write(turn(1))
    counter = ReadCounter()
    assert [r["turn_index"] for r in iter_records(path, counter=counter)] == [0, 1]
    assert counter.skipped == 1


# --- follow --------------------------------------------------------------------------------


def test_follow_yields_new_records_only(tmp_path: Path) -> None:
    path = write(tmp_path / "turns.jsonl", [rec(0), rec(1)])
    start = tail(path, 2).position
    collector = Collector(path, 3, start=start)
    writer = JSONLTurnLogWriter(path)
    for i in range(2, 5):
        writer.write(turn(i))
    assert [r["turn_index"] for r in collector.finish()] == [2, 3, 4]


def test_follow_buffers_partial_lines(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_text("")
    collector = Collector(path, 2, start=(path.stat().st_ino, 0))
    data = line(rec(0)) + line(rec(1))
    with open(path, "a") as f:
        for i in range(0, len(data), 13):  # dribble it out in pieces
            f.write(data[i : i + 13])
            f.flush()
    records = collector.finish()
    assert [r["turn_index"] for r in records] == [0, 1]
    assert collector.counter.skipped == 0


def test_follow_survives_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_text("")
    collector = Collector(path, 5, start=(path.stat().st_ino, 0))
    with open(path, "a") as f:
        f.write(line(rec(0)) + line(rec(1)))
    os.rename(path, rotated(path, 1))  # rotation, as the writer does it
    write(path, [rec(2), rec(3)])
    collector.wait_for(4)  # the reader is in the new file before we truncate it
    path.write_text(line(rec(4)))  # truncated in place, rewritten shorter
    records = collector.finish()
    assert [r["turn_index"] for r in records] == [0, 1, 2, 3, 4]


def test_follow_waits_for_the_log_to_exist(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "turns.jsonl"
    collector = Collector(path, 3)
    writer = JSONLTurnLogWriter(path, max_bytes=1, keep=100)  # rotates on every write
    for i in range(3):
        writer.write(turn(i))
    assert [r["turn_index"] for r in collector.finish()] == [0, 1, 2]


def test_follow_filters(tmp_path: Path) -> None:
    path = tmp_path / "turns.jsonl"
    path.write_text("")
    collector = Collector(path, 2, flt=LogFilter(persona="bob"), start=(path.stat().st_ino, 0))
    with open(path, "a") as f:
        f.write("".join(line(rec(i, persona_id="bob" if i % 2 else "ada")) for i in range(4)))
    assert [r["turn_index"] for r in collector.finish()] == [1, 3]






def test_iter_records_since_skips_files_last_written_before(tmp_path: Path) -> None:
    live = write(tmp_path / "turns.jsonl", [rec(i) for i in range(3)])
    old = write(rotated(live, 1), [rec(i) for i in range(3)])
    old.write_text("garbage\n")  # counted if it were read
    os.utime(old, (0, 0))
    counter = ReadCounter()
    got = list(iter_records(live, LogFilter(since=T0), counter))
    assert [r["turn_index"] for r in got] == [0, 1, 2]
    assert counter.skipped == 0
