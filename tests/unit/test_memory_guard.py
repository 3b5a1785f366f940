"""A broken memory store is set aside (never overwritten silently); faults are one line."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

import pytest

from persona_runtime.memory_guard import DATABASE_FILE, describe_fault, set_aside_if_broken


def store_with(tmp_path: Path, content: bytes | None) -> Path:
    store = tmp_path / "memory" / "minilm-l6-v2"
    store.mkdir(parents=True)
    if content is not None:
        (store / DATABASE_FILE).write_bytes(content)
    return store


@pytest.mark.parametrize(("content", "what"), [(b"", "was empty"), (b"this is not a database" * 10, "not a SQLite database")])
def test_an_empty_or_foreign_database_is_moved_aside_and_said_where(tmp_path: Path, content: bytes, what: str) -> None:
    store = store_with(tmp_path, content)
    notice = set_aside_if_broken(store)
    assert notice is not None and what in notice
    [aside] = [p for p in store.parent.iterdir() if p.name.startswith("minilm-l6-v2.broken-")]
    assert str(aside) in notice and (aside / DATABASE_FILE).read_bytes() == content  # nothing lost
    assert not store.exists()


def test_a_real_database_or_none_yet_is_left_alone(tmp_path: Path) -> None:
    store = store_with(tmp_path, None)
    assert set_aside_if_broken(store) is None
    sqlite3.connect(store / DATABASE_FILE).execute("create table t (x)").connection.close()
    assert set_aside_if_broken(store) is None and (store / DATABASE_FILE).exists()


def test_faults_are_one_line_naming_the_file_and_the_fix(tmp_path: Path) -> None:
    store = tmp_path / "memory" / "minilm-l6-v2"
    full = describe_fault(OSError(errno.ENOSPC, "No space left on device"), store)
    compaction = describe_fault(RuntimeError("Error in compaction: database or disk is full"), store)
    denied = describe_fault(PermissionError(13, "Permission denied"), store)
    other = describe_fault(ValueError("file is not a database\nmore detail"), store)
    assert "disk" in full and "full" in full and "disk" in compaction and "full" in compaction
    assert "permission denied" in denied
    assert "move" in other and str(store) in other
    assert all(str(store / DATABASE_FILE) in m and "\n" not in m for m in (full, compaction, denied, other))
