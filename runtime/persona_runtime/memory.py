"""persona-core's typed memory stores on a real Chroma store, keyed by embedder.

One ``PersonaMemory`` per persona: it loads the persona's identity, self facts and
worldview into the stores (idempotent), retrieves typed context for a message,
and writes finished turns back to the episodic store.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona_runtime.memory_pins import PinList, text_hash
from persona_runtime.prompt import RetrievedContext

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.events import MemoryRecalled

__all__ = ["PersonaMemory", "StoreKind", "recalled_event"]

StoreKind = ("identity", "self_facts", "worldview", "episodic")


class PersonaMemory:
    """The four typed stores for one persona, plus retrieval and write-back."""

    def __init__(self, persona: Persona, stores: dict[str, Any], *, registry: Any = None, root: Path | None = None) -> None:
        missing = [k for k in StoreKind if k not in stores]
        if missing:
            raise ValueError(f"missing stores: {', '.join(missing)}")
        self.persona = persona
        self.persona_id = persona.persona_id or "persona"
        self.stores = stores
        self._registry = registry
        #: The store's folder (for messages about it), when it is on disk.
        self.root = root
        self._identity_cache: tuple[Any, ...] | None = None

    @classmethod
    def open(cls, persona: Persona, *, root: Path, embedder: Any, audit_root: Path) -> PersonaMemory:
        """Chroma under ``root`` (one directory per embedder), audit JSONL under ``audit_root``."""
        from persona.audit import JSONLAuditLogger
        from persona.registry import PersonaRegistry
        from persona.stores import ChromaBackend, EpisodicStore, IdentityStore, SelfFactsStore, WorldviewStore

        from persona_runtime.paths import ensure_private_dir

        ensure_private_dir(root)
        ensure_private_dir(audit_root)

        class BatchedChroma(ChromaBackend):
            """Chroma refuses more than ``get_max_batch_size()`` (5,461) records in one call:
            a persona with 10,000 self facts never started. Larger writes go in batches."""

            def upsert(self, *, persona_id: str, store_kind: str, chunks: list[Any]) -> None:
                size = self._client.get_max_batch_size()
                for start in range(0, len(chunks), size):
                    super().upsert(persona_id=persona_id, store_kind=store_kind, chunks=chunks[start : start + size])

        chroma = BatchedChroma(persist_path=root, embedder=embedder)
        audit = JSONLAuditLogger(audit_root)
        stores = {
            "identity": IdentityStore(backend=chroma, audit_logger=audit),
            "self_facts": SelfFactsStore(backend=chroma, audit_logger=audit),
            "worldview": WorldviewStore(backend=chroma, audit_logger=audit),
            "episodic": EpisodicStore(backend=chroma, audit_logger=audit),
        }
        registry = PersonaRegistry(stores=stores, audit_logger=audit)
        return cls(persona, stores, registry=registry, root=root)

    def load(self) -> None:
        """Index the persona's YAML content into the stores, unless this very content was
        indexed before (a marker holds its hash, and the pin list's): a big persona is embedded
        once, not at every start. Idempotent either way. Entries the person pinned out
        (:mod:`persona_runtime.memory_pins`) are removed again after indexing."""
        if self._registry is None:
            return
        marker = self.marker
        pinned = self.pins.hashes() if self.pins is not None else set()
        digest = _content_hash(self.persona, pinned)
        try:
            if marker is not None and marker.read_text(encoding="ascii").strip() == digest:
                return
        except OSError:
            pass
        self._registry.load_persona(self.persona)
        if pinned:
            self._remove_pinned(pinned)
        if marker is not None:
            try:
                marker.write_text(digest + "\n", encoding="ascii")
            except OSError:
                pass  # indexing again next time is slower, not wrong

    @property
    def marker(self) -> Path | None:
        """The "already indexed" marker; removing it makes the next :meth:`load` index again."""
        return self.root / f"indexed-{self.persona_id}.sha256" if self.root is not None else None

    @property
    def pins(self) -> PinList | None:
        return PinList(self.root, self.persona_id) if self.root is not None else None

    def _remove_pinned(self, pinned: set[str]) -> None:
        for kind in ("self_facts", "worldview", "episodic"):
            store = self.stores[kind]
            doomed = [c.id for c in store.get_all(self.persona_id) if text_hash(c.text) in pinned]
            if doomed:
                store.remove_documents(self.persona_id, doomed)

    def retrieve(self, message: str, *, top_k: int = 3) -> RetrievedContext:
        if self._identity_cache is None:
            self._identity_cache = tuple(self.stores["identity"].get_all(self.persona_id))
        query = message.strip() or self.persona.identity.role
        return RetrievedContext(
            identity=self._identity_cache,
            self_facts=tuple(self.stores["self_facts"].query(self.persona_id, query, top_k)),
            worldview=tuple(self.stores["worldview"].query(self.persona_id, query, top_k)),
            episodic=tuple(self.stores["episodic"].query(self.persona_id, query, top_k)),
        )

    def remember(self, text: str, *, metadata: dict[str, str], written_by: str) -> str:
        """Write one episodic chunk; returns its id. Secrets (a key the person typed, the model
        echoed or a tool read) are redacted first: memory is resent on later turns."""
        from persona.schema.chunks import ChunkProvenance, PersonaChunk, WriteSource, mint_chunk_id

        from persona_runtime.secrets import redact

        chunk_id = mint_chunk_id(self.persona_id, "episodic")
        now = datetime.now(UTC)
        chunk = PersonaChunk(
            id=chunk_id,
            text=redact(text),
            metadata={k: redact(str(v)) for k, v in metadata.items()},
            created_at=now,
            provenance=ChunkProvenance(
                source=WriteSource.SYSTEM, logical_id=chunk_id, version=1, written_at=now, written_by=written_by
            ),
        )
        self.stores["episodic"].write(self.persona_id, [chunk], source=WriteSource.SYSTEM, written_by=written_by)
        return chunk_id

    def remember_turn(self, user_text: str, assistant_text: str, *, conversation_id: str) -> str:
        return self.remember(
            f"USER: {user_text}\nASSISTANT: {assistant_text}",
            metadata={"importance": "0.5", "conversation_id": conversation_id, "source": "chat"},
            written_by="persona_runtime.loop",
        )


def recalled_event(context: RetrievedContext) -> MemoryRecalled:
    """The entries a context holds, as an event (identity, always sent, left out)."""
    from persona_runtime.events import MemoryRecalled, RecalledEntry
    from persona_runtime.secrets import redact

    entries = []
    for store in ("self_facts", "worldview", "episodic"):
        for chunk in getattr(context, store):
            distance = getattr(chunk, "distance", None)
            lines = chunk.text.strip().splitlines()
            entries.append(RecalledEntry(
                store=store, id=chunk.id, score=None if distance is None else round(1.0 - float(distance), 4),
                created_at=getattr(chunk, "created_at", None), first_line=redact(lines[0][:200]) if lines else "",
            ))
    return MemoryRecalled(tuple(entries))


def _content_hash(persona: Persona, pinned: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """What indexing depends on: the persona's content and the pins (the store folder already
    names the embedder). A new pin, or one taken back, forces indexing again."""
    import hashlib

    text = persona.model_dump_json() + "".join(f"\npin:{h}" for h in sorted(pinned))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
