"""The first recall of a launch without waiting for Chroma: the embedded store as it was left.

Importing chromadb and opening the store take ~0.9 s of the interpreter's lock, which every
loading thread shares, so the first reply waited on them. When a session closes its embedded
store, it writes ``recall-<persona>.npz`` beside it: every entry (all versions, as persona-core
materialises them), its vector, and a fingerprint of the store's files (path, size, mtime).
The next launch compares the fingerprint before it opens the store. Any change since, by any
process (opening the store is enough), makes the snapshot unusable, and recall waits for Chroma
as before; so a snapshot that is used holds exactly what the store holds. It answers as a store
query does: the ``top_k`` nearest current entries by cosine distance (exact, where Chroma's
index is approximate), and the standing memory of :mod:`persona_runtime.standing`.

Only the first turns use it, while the store opens; a store on a Chroma server never has one.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.prompt import RetrievedContext
from persona_runtime.standing import Standing, standing_from_chunks

if TYPE_CHECKING:
    import numpy as np

__all__ = ["CACHE_MAX_ENTRIES", "RecallCache", "cache_path", "fingerprint", "load_recall_cache", "save_recall_cache"]

KINDS = ("identity", "self_facts", "worldview", "episodic")
CACHE_MAX_ENTRIES = 4096  # ~6 MB of MiniLM vectors; a larger store waits for Chroma
_FORMAT = 1
_OURS = ("recall-", "standing-", "indexed-", "pinned-")  # our files beside the store, not Chroma's


def cache_path(root: Path, persona_id: str) -> Path:
    return root / f"recall-{persona_id}.npz"


def fingerprint(root: Path) -> str:
    """What the store's files are now: any write to the store (or opening it) changes it."""
    lines = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(_OURS) or name.endswith(".tmp"):
                continue
            path = os.path.join(folder, name)
            st = os.stat(path)
            lines.append(f"{os.path.relpath(path, root)}\t{st.st_size}\t{st.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()


class RecallCache:
    """The store's entries and vectors as they were at the last clean close."""

    def __init__(self, chunks: dict[str, list[Any]], vectors: dict[str, np.ndarray]) -> None:
        self.chunks = chunks
        self.vectors = vectors

    def current(self, kind: str) -> list[Any]:
        return [c for c in self.chunks.get(kind, []) if _current(c)]

    def standing(self) -> Standing | None:
        return standing_from_chunks(self.current("self_facts"), self.current("worldview"))

    def retrieve(self, message: str, embedder: Any, top_k: int = 3) -> RetrievedContext:
        """What :meth:`PersonaMemory.retrieve` returns for ``message`` (the same query text)."""
        standing = self.standing()
        kinds = ("episodic",) if standing is not None else ("self_facts", "worldview", "episodic")
        query = embedder.encode([message])[0]
        found = {kind: tuple(self._nearest(kind, query, top_k)) for kind in kinds}
        return RetrievedContext(identity=tuple(self.current("identity")), standing=standing, **found)

    def _nearest(self, kind: str, query: Sequence[float], top_k: int) -> list[Any]:
        from persona_runtime.shared_imports import import_numpy

        np = import_numpy()
        chunks, vectors = self.chunks.get(kind, []), self.vectors.get(kind)
        if not chunks or vectors is None:
            return []
        q = np.asarray(query, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1) * (np.linalg.norm(q) or 1.0)
        distances = 1.0 - (vectors @ q) / np.where(norms == 0, 1.0, norms)
        live = [i for i in np.argsort(distances, kind="stable") if _current(chunks[i])]
        return [chunks[i].model_copy(update={"distance": float(distances[i])}) for i in live[:top_k]]


def _current(chunk: Any) -> bool:
    return chunk.provenance is None or chunk.provenance.superseded_by is None


def save_recall_cache(backend: Any, root: Path, persona_id: str, digest: str) -> bool:
    """Write the snapshot of ``backend`` (a :class:`LocalChroma` under ``root``), taken while no
    write happened (the fingerprint before and after reading agree). ``digest``: the persona
    content indexed (:func:`persona_runtime.memory.content_hash`). Returns whether it was written."""
    from persona_runtime.paths import write_private_npz

    path = cache_path(root, persona_id)
    for _attempt in range(3):  # the first read may flush Chroma's log into its files
        before = fingerprint(root)
        meta: dict[str, Any] = {"format": _FORMAT, "digest": digest, "chunks": {}}
        arrays: dict[str, Any] = {}
        total = 0
        for kind in KINDS:
            chunks = backend.get_all(persona_id=persona_id, store_kind=kind)
            total += len(chunks)
            if total > CACHE_MAX_ENTRIES:
                path.unlink(missing_ok=True)
                return False
            raw = backend.collection(persona_id, kind).get(include=["embeddings"])
            by_id = dict(zip(raw["ids"], raw["embeddings"], strict=True))
            meta["chunks"][kind] = [c.model_dump(mode="json") for c in chunks]
            arrays[kind] = [by_id[c.id] for c in chunks]
        if fingerprint(root) == before:
            meta["fingerprint"] = before
            write_private_npz(path, meta, arrays)
            return True
    path.unlink(missing_ok=True)
    return False


def load_recall_cache(root: Path, persona_id: str, digest: str) -> RecallCache | None:
    """The snapshot, if it holds exactly what the store under ``root`` holds for this persona
    content; else None (recall waits for Chroma). Never raises."""
    path = cache_path(root, persona_id)
    try:
        from persona.schema.chunks import PersonaChunk

        from persona_runtime.shared_imports import import_numpy

        np = import_numpy()
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            if meta.get("format") != _FORMAT or meta.get("digest") != digest or meta.get("fingerprint") != fingerprint(root):
                return None
            chunks = {kind: [PersonaChunk.model_validate(c) for c in meta["chunks"][kind]] for kind in KINDS}
            vectors = {kind: np.asarray(data[kind], dtype=np.float32) for kind in KINDS if f"{kind}" in data.files}
        if any(len(vectors.get(k, ())) != len(chunks[k]) for k in KINDS if chunks[k]):
            return None
        return RecallCache(chunks, vectors)
    except Exception:  # noqa: BLE001 - no usable snapshot: recall waits for the store
        return None
