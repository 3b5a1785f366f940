"""The SQLite index beside the turn log answers exactly what a full scan of the JSONL answers:
after appends, rotation, pruning, a torn last line, a rewritten file, a deleted or corrupt
index, and records it cannot represent (it then declines, and the scan answers)."""

from __future__ import annotations

import json
import os
import random
import sqlite3
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from persona_runtime.turnlog.files import rotated_files
from persona_runtime.turnlog.index import index_path, open_index
from persona_runtime.turnlog.index_query import indexed_records, indexed_stats
from persona_runtime.turnlog.query import LogFilter, ReadCounter, iter_records
from persona_runtime.turnlog.record import TurnLog
from persona_runtime.turnlog.stats import stats
from persona_runtime.turnlog.writer import JSONLTurnLogWriter
from tests.support.turnlogs import T0, fixture_records, rec

BYS = ("tier", "model", "persona", "day", "all")
FILTERS = [
    LogFilter(),
    LogFilter(persona="bob"),
    LogFilter(tier="smart"),
    LogFilter(model="gpt-4o-mini"),
    LogFilter(model="anthropic/claude-sonnet-4"),
    LogFilter(errors_only=True),
    LogFilter(fallbacks_only=True),
    LogFilter(conversation_id="conv-run"),
    LogFilter(run_id="run-bbbbbbbb", persona="bob"),
    LogFilter(conversation_id="conv-ru"),  # a unique prefix, as `show` takes it
    LogFilter(conversation_id="20261130-ab"),  # a chat id's prefix without `chat-`
    LogFilter(run_id="run-bbbb"),
    LogFilter(since=T0 + timedelta(minutes=3)),
    LogFilter(since=T0 + timedelta(days=3650)),
]


def varied(n: int, seed: int = 7, start: int = 0) -> list[dict[str, object]]:
    """Records with every shape the indexed fields take: missing values, None, fallbacks,
    errors, unpriced and estimated turns, undo records, integer and float costs and latencies."""
    rng = random.Random(seed)
    out = []
    for i in range(start, start + n):
        r = rec(i, persona_id=rng.choice(["ada", "bob", "-"]),
                conversation_id=rng.choice(["conv-a", "conv-run", "chat-20261130-abcdef"]))
        r["tier"] = rng.choice(["fast", "smart", None])
        r["model"] = rng.choice(["gpt-4o-mini", "claude-sonnet-4", None])
        r["provider"] = rng.choice(["openai", "anthropic", None])
        r["run_id"] = rng.choice([None, "run-bbbbbbbb"])
        r["status"] = rng.choice(["ok", "ok", "error", "interrupted"])
        r["cost_cents"] = rng.choice([None, 0.1, 1, rng.random()])
        r["latency_ms"] = rng.choice([rng.random() * 5000, 250, None])
        r["prompt_tokens"] = rng.randint(0, 5000)
        r["attempts"] = [{"tier": "x"}] * rng.randint(0, 3)
        estimated = rng.choice([True, False, None])
        if estimated is not None:
            r["usage_estimated"] = estimated  # the provider sent no usage: our own count
        if rng.random() < 0.05:
            r["kind"] = "undo"  # chat /undo: listed, but left out of stats
        if rng.random() < 0.05:
            del r["timestamp"]
        out.append(r)
    return out


def append(log: Path, records: list[dict[str, object]], extra: str = "") -> None:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as f:
        f.write("".join(json.dumps(r) + "\n" for r in records) + extra)


def scan_stats(log: Path, flt: LogFilter, by: str) -> tuple[list[dict[str, object]], int]:
    counter = ReadCounter()
    rows = stats(iter_records(log, flt, counter), by, total=True)
    return [comparable(r) for r in rows], counter.skipped


def comparable(row: object) -> dict[str, object]:
    """Every field exactly, but cost: the index adds up costs per cell first, so the float sum
    can differ from the scan's in the last bits (the table shows cents)."""
    fields = dict(vars(row))
    fields["cost_cents"] = pytest.approx(fields["cost_cents"], rel=1e-12, abs=1e-12)
    return fields


def assert_agrees(log: Path, filters: list[LogFilter] = FILTERS) -> None:
    for flt in filters:
        counter = ReadCounter()
        scanned = list(iter_records(log, flt, counter))
        answer = indexed_records(log, flt)
        assert answer is not None, flt
        assert answer == (scanned, counter.skipped), flt
        for limit in (1, 3):
            assert indexed_records(log, flt, limit) == (scanned[-limit:], counter.skipped), (flt, limit)
        for by in BYS:
            got = indexed_stats(log, flt, by)
            if flt.conversation_id is not None or flt.run_id is not None:
                assert got is None  # not a `logs stats` filter, not in the roll-ups: the scan answers
                continue
            assert got is not None, (flt, by)
            assert ([comparable(r) for r in got[0]], got[1]) == scan_stats(log, flt, by), (flt, by)


def indexed_rows(log: Path) -> int:
    with sqlite3.connect(index_path(log)) as conn:
        return conn.execute("SELECT COUNT(*) FROM records").fetchone()[0]


def test_index_answers_as_the_scan_over_varied_records(log: Path) -> None:
    append(log, fixture_records() + varied(300))
    assert_agrees(log)
    assert stat.S_IMODE(index_path(log).stat().st_mode) == 0o600


def test_day_groups_are_local_dates_or_the_index_declines(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    append(log, [rec(i, timestamp=(T0 + timedelta(hours=5 * i)).isoformat()) for i in range(20)])
    for tz in ("UTC", "America/Los_Angeles", "Asia/Kolkata"):
        monkeypatch.setenv("TZ", tz)
        time.tzset()
        got = indexed_stats(log, LogFilter(), "day")
        if tz != "UTC":
            assert got is None  # a UTC day of cells spans two local dates: the scan groups
            continue
        assert got is not None and [comparable(r) for r in got[0]] == scan_stats(log, LogFilter(), "day")[0], tz
    monkeypatch.undo()
    time.tzset()


def test_appends_are_indexed_incrementally(log: Path) -> None:
    append(log, varied(50))
    assert_agrees(log)
    assert indexed_rows(log) == 50
    with sqlite3.connect(index_path(log)) as conn:  # a marker row only an incremental sync keeps
        conn.execute("CREATE TABLE marker(x)")
    append(log, varied(20, seed=8, start=50))
    assert_agrees(log)
    assert indexed_rows(log) == 70
    with sqlite3.connect(index_path(log)) as conn:
        assert conn.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'marker'").fetchone()[0] == 1


def test_rotation_and_pruning(log: Path) -> None:
    writer = JSONLTurnLogWriter(log, max_bytes=1500, keep=2)
    for i in range(10):
        writer.write(TurnLog.model_validate(rec(i)))
        if i % 3 == 0:
            assert_agrees(log, FILTERS[:3])  # the live file rotates between syncs
    assert len(rotated_files(log)) == 2  # older ones were pruned
    for i in range(10, 14):
        writer.write(TurnLog.model_validate(rec(i, persona_id="bob")))
    assert_agrees(log)
    total = sum(1 for _ in iter_records(log))
    assert indexed_rows(log) == total  # the pruned files' rows are gone


def test_a_torn_last_line_is_skipped_then_indexed_once_complete(log: Path) -> None:
    line = json.dumps(rec(99, persona_id="bob"))
    append(log, varied(30), extra=line[:40])
    assert_agrees(log)
    assert indexed_records(log, LogFilter(persona="bob"))[1] == 1  # type: ignore[index]
    with open(log, "a", encoding="utf-8") as f:
        f.write(line[40:] + "\n")
    assert_agrees(log)
    records, skipped = indexed_records(log, LogFilter(persona="bob"))  # type: ignore[misc]
    assert records[-1]["turn_index"] == 99 and skipped == 0


def test_corrupt_lines_are_counted_like_the_scan(log: Path) -> None:
    append(log, varied(10), extra='{"broken\n[1, 2]\n\n   \n')
    append(log, varied(10, seed=3, start=10), extra="\xff\xfe garbage\n")
    assert_agrees(log)
    assert indexed_stats(log, LogFilter(), "tier")[1] == 3  # type: ignore[index]


def test_a_rewritten_file_is_indexed_again(log: Path) -> None:
    append(log, varied(40))
    assert_agrees(log)
    ino = log.stat().st_ino
    with open(log, "r+", encoding="utf-8") as f:  # same inode, same size or more, other records
        f.truncate(0)
        f.write("".join(json.dumps(r) + "\n" for r in varied(60, seed=99)))
    assert log.stat().st_ino == ino
    assert_agrees(log)
    assert indexed_rows(log) == 60


def test_a_shorter_rewrite_is_indexed_again(log: Path) -> None:
    append(log, varied(40))
    assert_agrees(log)
    with open(log, "r+", encoding="utf-8") as f:
        f.truncate(0)
        f.write("".join(json.dumps(r) + "\n" for r in varied(5, seed=5)))
    assert_agrees(log)


@pytest.mark.parametrize("damage", ["delete", "garbage", "truncate", "wrong-schema"])
def test_a_deleted_or_corrupt_index_is_rebuilt(log: Path, damage: str) -> None:
    append(log, varied(80))
    assert_agrees(log)
    target = index_path(log)
    if damage == "delete":
        target.unlink()
    elif damage == "garbage":
        target.write_bytes(b"not a database at all " * 200)
    elif damage == "truncate":
        with open(target, "r+b") as f:
            f.truncate(target.stat().st_size // 2)
    else:
        with sqlite3.connect(target) as conn:
            conn.execute("DROP TABLE records")
            conn.execute("CREATE TABLE records(x)")
    append(log, varied(5, seed=11, start=80))
    assert_agrees(log)
    assert indexed_rows(log) == 85


def test_an_unusable_index_declines_and_the_scan_answers(log: Path) -> None:
    append(log, varied(10))
    index_path(log).mkdir()  # neither a database nor removable as a file
    assert open_index(log) is None
    assert indexed_stats(log, LogFilter(), "tier") is None
    assert indexed_records(log, LogFilter(persona="ada")) is None


@pytest.mark.parametrize("field,value", [("persona_id", 5), ("prompt_tokens", 1.5), ("cost_cents", "1"),
                                         ("attempts", "ab"), ("latency_ms", True), ("timestamp", 12)])  # fmt: skip
def test_records_the_index_cannot_represent_make_it_decline(log: Path, field: str, value: object) -> None:
    odd = rec(50)
    odd[field] = value
    append(log, [*varied(10), odd])
    assert indexed_stats(log, LogFilter(), "tier") is None
    assert indexed_records(log, LogFilter(persona="ada")) is None


def test_a_filter_field_it_does_not_know_makes_it_decline(log: Path) -> None:
    import dataclasses

    append(log, varied(10))
    extended = dataclasses.make_dataclass("Ext", [("preview", str | None, None)], bases=(LogFilter,), frozen=True)
    assert indexed_stats(log, extended(preview="x"), "tier") is None
    assert indexed_stats(log, extended(), "tier") is not None


def test_since_skips_files_last_written_before_it_as_the_scan_does(log: Path) -> None:
    append(log, [rec(i, timestamp=(datetime.now(UTC) + timedelta(days=1)).isoformat()) for i in range(5)])
    old = (datetime.now(UTC) - timedelta(days=2)).timestamp()
    os.utime(log, (old, old))  # a file untouched for two days whose records claim tomorrow
    assert_agrees(log, [LogFilter(since=datetime.now(UTC) - timedelta(hours=1))])


def test_the_records_are_the_stored_lines_with_unknown_fields(log: Path) -> None:
    append(log, [rec(0, preview="hello", usage_estimated=True, recalled=["m1"])])
    records, _ = indexed_records(log, LogFilter(persona="ada"))  # type: ignore[misc]
    assert records[0]["preview"] == "hello" and records[0]["recalled"] == ["m1"]


def test_the_cli_prints_the_same_with_the_index_on_and_off(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from persona_cli.commands.logs import logs_app

    app = typer.Typer()
    app.add_typer(logs_app, name="logs")
    append(log, fixture_records() + varied(120), extra="torn")
    commands = [["stats", "--json"], ["stats", "--by", "persona"], ["stats", "--by", "model", "--errors"],
                ["list", "--persona", "bob", "--json"], ["list", "--errors", "-n", "3"], ["list", "--fallbacks"]]  # fmt: skip
    printed = {}
    for flag in ("1", "0"):
        monkeypatch.setenv("PERSONA_LOG_INDEX", flag)
        printed[flag] = [CliRunner().invoke(app, ["logs", *argv]).output for argv in commands]
    assert printed["1"] == printed["0"]
    assert index_path(log).exists() and "1 corrupt line skipped" in printed["1"][1]
    monkeypatch.setenv("PERSONA_LOG_INDEX", "maybe")
    result = CliRunner().invoke(app, ["logs", "stats"])
    assert result.exit_code == 2 and "PERSONA_LOG_INDEX must be 0 or 1" in result.output


def test_a_query_with_nothing_new_takes_no_write_lock(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from persona_runtime.turnlog import index

    append(log, varied(30))
    assert_agrees(log, FILTERS[:2])
    writes: list[Path] = []
    sync = index._sync_locked
    monkeypatch.setattr(index, "_sync_locked", lambda conn, path: writes.append(path) or sync(conn, path))
    with open(log, "a", encoding="utf-8") as f:
        f.write('{"torn": ')  # not a complete line: nothing to index yet
    assert_agrees(log, FILTERS[:2])
    assert writes == []
    with open(log, "a", encoding="utf-8") as f:
        f.write("1}\n")
    assert_agrees(log, FILTERS[:2])
    assert writes == [log]  # the first query indexes the new line; the others find nothing new
