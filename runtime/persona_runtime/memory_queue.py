"""Memory writes that could not reach the memory server, kept on disk until it is back.

One JSONL file per persona and server (``PERSONA_HOME/memory-queue/<server key>/<persona>.jsonl``,
0600): one line per chunk, with its store, id, text, metadata, created_at and provenance. The
ids were minted before the first try, so a replay is idempotent: a chunk whose id the server
already holds (the write landed, the answer was lost) is not written again. What landed is
removed from the file; what did not stays, in order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["MemoryQueue", "QueuedChunk"]

QueuedChunk = tuple[str, Any]  # (store kind, PersonaChunk)


class MemoryQueue:
    """An append-only file of pending chunks for one persona."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, store_kind: str, chunk: Any) -> None:
        from persona_runtime.paths import ensure_private_dir

        ensure_private_dir(self.path.parent)
        line = json.dumps({"store": store_kind, "chunk": json.loads(chunk.model_dump_json())}, ensure_ascii=False)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (line + "\n").encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)

    def pending(self) -> list[QueuedChunk]:
        """The queued chunks, oldest first; a line that cannot be read is skipped (and kept)."""
        from persona.schema.chunks import PersonaChunk

        out: list[QueuedChunk] = []
        for line in self._lines():
            try:
                record = json.loads(line)
                out.append((str(record["store"]), PersonaChunk.model_validate(record["chunk"])))
            except (ValueError, KeyError, TypeError):
                continue
        return out

    def __len__(self) -> int:
        return len(self._lines())

    def replay(self, write: Callable[[str, list[Any]], None], exists: Callable[[str, list[str]], set[str]]) -> int:
        """Write every queued chunk the server does not hold yet (``exists(store, ids)`` says which
        it does), store by store, and drop from the file each store's chunks once they landed.
        Returns how many were written. A fault propagates, leaving what did not land queued."""
        queued = self.pending()
        if not queued:
            return 0
        written = 0
        landed: set[str] = set()
        try:
            for store in dict.fromkeys(kind for kind, _ in queued):
                chunks = [c for kind, c in queued if kind == store]
                there = exists(store, [c.id for c in chunks])
                todo = [c for c in chunks if c.id not in there]
                if todo:
                    write(store, todo)
                    written += len(todo)
                landed.update(c.id for c in chunks)
        finally:
            self._drop(landed)
        return written

    def _lines(self) -> list[str]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if line.strip()]

    def _drop(self, ids: set[str]) -> None:
        if not ids:
            return
        keep = []
        for line in self._lines():
            try:
                chunk_id = json.loads(line)["chunk"]["id"]
            except (ValueError, KeyError, TypeError):
                chunk_id = None
            if chunk_id not in ids:
                keep.append(line)
        if not keep:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(keep) + "\n")
        os.replace(tmp, self.path)
