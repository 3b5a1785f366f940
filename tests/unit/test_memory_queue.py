"""The on-disk queue of memory writes that missed the server."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pytest
from persona.schema.chunks import PersonaChunk

from persona_runtime.memory_queue import MemoryQueue


def chunk(n: int) -> PersonaChunk:
    return PersonaChunk(id=f"astrid::episodic::{n:04d}", text=f"USER: turn {n} ÆØÅ", metadata={"k": "v"}, created_at=datetime.now(UTC))


def test_appended_chunks_round_trip_in_order_in_a_private_file(tmp_path) -> None:
    queue = MemoryQueue(tmp_path / "queue" / "astrid.jsonl")
    assert queue.pending() == [] and len(queue) == 0
    queue.append("episodic", chunk(1))
    queue.append("episodic", chunk(2))
    assert [(k, c.id, c.text, c.metadata) for k, c in queue.pending()] == [
        ("episodic", "astrid::episodic::0001", "USER: turn 1 ÆØÅ", {"k": "v"}),
        ("episodic", "astrid::episodic::0002", "USER: turn 2 ÆØÅ", {"k": "v"}),
    ]
    assert stat.S_IMODE(queue.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(queue.path.parent.stat().st_mode) == 0o700


def test_replay_writes_only_what_the_server_lacks_and_empties_the_queue(tmp_path) -> None:
    queue = MemoryQueue(tmp_path / "q.jsonl")
    for n in (1, 2, 3):
        queue.append("episodic", chunk(n))
    written: list[str] = []
    count = queue.replay(
        write=lambda store, chunks: written.extend(c.id for c in chunks),
        exists=lambda store, ids: {"astrid::episodic::0002"},  # landed before; its answer was lost
    )
    assert count == 2 and written == ["astrid::episodic::0001", "astrid::episodic::0003"]
    assert not queue.path.exists()
    assert queue.replay(write=lambda s, c: pytest.fail("nothing to write"), exists=lambda s, i: set()) == 0


def test_a_failed_replay_keeps_everything_queued(tmp_path) -> None:
    queue = MemoryQueue(tmp_path / "q.jsonl")
    queue.append("episodic", chunk(1))
    queue.append("episodic", chunk(2))

    def down(store: str, chunks: list) -> None:
        raise ConnectionError("server down")

    with pytest.raises(ConnectionError):
        queue.replay(write=down, exists=lambda s, i: set())
    assert [c.id for _, c in queue.pending()] == ["astrid::episodic::0001", "astrid::episodic::0002"]


def test_a_damaged_line_is_skipped_and_kept(tmp_path) -> None:
    queue = MemoryQueue(tmp_path / "q.jsonl")
    queue.append("episodic", chunk(1))
    with queue.path.open("a") as handle:
        handle.write("{not json\n")
    assert [c.id for _, c in queue.pending()] == ["astrid::episodic::0001"]
    queue.replay(write=lambda s, c: None, exists=lambda s, i: set())
    assert queue.path.read_text() == "{not json\n"  # never silently dropped


def test_a_line_appended_during_a_replay_is_kept(tmp_path) -> None:
    queue = MemoryQueue(tmp_path / "q.jsonl")
    other_session = MemoryQueue(tmp_path / "q.jsonl")  # another session of the persona, same home
    queue.append("episodic", chunk(1))

    def write(store: str, chunks: list) -> None:
        other_session.append("episodic", chunk(2))  # lands in the file while the replay is on the network

    assert queue.replay(write=write, exists=lambda s, i: set()) == 1
    assert [c.id for _, c in queue.pending()] == ["astrid::episodic::0002"]
