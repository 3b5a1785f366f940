"""Copy a persona's memory between the embedded store and a Chroma server, idempotently.

All four stores (identity, self facts, worldview, episodic) are copied record by record with
their ids, documents, embeddings and metadata (superseded versions too, so version chains stay
whole). A record whose id the destination already holds is left alone: running it twice copies
nothing the second time. Both ends must hold vectors of the same embedder (collection metadata);
otherwise nothing is copied and the error says so in one line.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from persona_runtime.chroma_server import ChromaServer

__all__ = ["MigrationResult", "migrate_memory"]

_KINDS = ("identity", "self_facts", "worldview", "episodic")


@dataclass(frozen=True)
class MigrationResult:
    copied: int
    already: int
    source: str
    destination: str

    def summary(self) -> str:
        return f"copied {self.copied}, already there {self.already} ({self.source} → {self.destination})"


class _NamedEmbedder:
    """Only the embedder's name and width: migration copies vectors, it never makes any."""

    def __init__(self, model_name: str, dimension: int) -> None:
        self.model_name = model_name
        self.dimension = dimension

    def encode(self, texts: list[str]) -> list[list[float]]:
        raise RuntimeError("migration copies stored vectors; it does not embed")


def migrate_memory(
    persona_id: str, *, local_root: Path, server: ChromaServer, to_server: bool, embedder: Any
) -> MigrationResult:
    """Copy ``persona_id``'s memory from ``local_root`` to ``server`` (``to_server``) or back.
    ``embedder`` is only asked for its name and dimension. Raises ``MemoryServerDown`` when the
    server cannot be reached and ``EmbedderMismatch`` when either end holds another embedder's vectors."""
    from persona_runtime.chroma_backends import LocalChroma, ServerChroma, embedder_name
    from persona_runtime.paths import ensure_private_dir

    named = _NamedEmbedder(embedder_name(embedder), int(embedder.dimension))
    ensure_private_dir(local_root)
    local = LocalChroma(persist_path=local_root, embedder=named)  # type: ignore[arg-type]
    remote = ServerChroma(server=server, embedder=named)  # type: ignore[arg-type]
    try:
        return _copy(persona_id, named, (local, remote) if to_server else (remote, local))
    finally:
        local.close()
        remote.close()


def _copy(persona_id: str, named: _NamedEmbedder, ends: tuple[Any, Any]) -> MigrationResult:
    from persona_runtime.chroma_backends import check_embedder

    source, destination = ends
    copied = already = 0
    for kind in _KINDS:
        from_collection = source.existing_collection(persona_id, kind)
        if from_collection is None:
            continue  # nothing of this kind to copy
        check_embedder(from_collection, key=named.model_name, dimension=named.dimension, where=source.where)
        records = from_collection.get(include=["documents", "embeddings", "metadatas"])
        ids = [str(i) for i in records.get("ids") or []]
        if not ids:
            continue
        to_collection = destination.collection(persona_id, kind)  # creates it, or checks its embedder
        there = set(to_collection.get(ids=ids, include=[]).get("ids") or [])
        rows = [i for i, chunk_id in enumerate(ids) if chunk_id not in there]
        already += len(ids) - len(rows)
        size = destination.batch_size()
        for start in range(0, len(rows), size):
            part = rows[start : start + size]
            to_collection.upsert(
                ids=[ids[i] for i in part],
                documents=[records["documents"][i] for i in part],
                embeddings=[records["embeddings"][i] for i in part],
                metadatas=[records["metadatas"][i] for i in part],
            )
        copied += len(rows)
    return MigrationResult(copied=copied, already=already, source=source.where, destination=destination.where)

