"""persona-core's typed memory stores on a real Chroma store, keyed by embedder.

One ``PersonaMemory`` per persona: it loads the persona's identity, self facts and
worldview into the stores (idempotent), retrieves typed context for a message,
and writes finished turns back to the episodic store.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from persona_runtime.chroma_server import MemoryServerDown
from persona_runtime.memory_pins import PinList, text_hash
from persona_runtime.memory_queue import MemoryQueue
from persona_runtime.prompt import RetrievedContext
from persona_runtime.standing import (
    STANDING_MAX_ENTRIES, Standing, predict_standing, snapshot_path, standing_from_chunks, write_snapshot,
)

if TYPE_CHECKING:
    from persona.schema.persona import Persona

    from persona_runtime.chroma_server import ChromaServer
    from persona_runtime.events import MemoryRecalled
    from persona_runtime.recall_cache import RecallCache

T = TypeVar("T")

__all__ = ["MemoryOff", "PersonaMemory", "StoreKind", "content_hash", "recalled_event"]

StoreKind = ("identity", "self_facts", "worldview", "episodic")


class MemoryOff(RuntimeError):
    """The store a session started on could not be opened after all (see :meth:`PersonaMemory.early`)."""


class PersonaMemory:
    """The four typed stores for one persona, plus retrieval and write-back."""

    def __init__(
        self,
        persona: Persona,
        stores: dict[str, Any],
        *,
        registry: Any = None,
        root: Path | None = None,
        backend: Any = None,
        queue: MemoryQueue | None = None,
        marker_dir: Path | None = None,
    ) -> None:
        missing = [k for k in StoreKind if k not in stores]
        if missing:
            raise ValueError(f"missing stores: {', '.join(missing)}")
        self.persona = persona
        self.persona_id = persona.persona_id or "persona"
        self._stores = stores
        self._registry = registry
        #: The store's folder (for messages about it), when it is on disk.
        self.root = root
        self.backend = backend
        #: The memory server (None: the embedded store), and writes waiting for it.
        self.server = getattr(backend, "server", None)
        self.queue = queue
        self._marker_dir = marker_dir if marker_dir is not None else root
        self._identity_cache: tuple[Any, ...] | None = None
        self._standing: Standing | None = None
        self._standing_key: tuple[int, ...] | None = None  # the record counts it was read at
        self._outage = False  # the server did not answer the last request
        self._outage_told = False  # ... and the person has heard about it (one notice per outage)
        self._loaded = False
        self._digest: str | None = None  # the persona content indexed
        # An early memory (see early()) recalls from a snapshot until the store is attached.
        self._attached = threading.Event()
        self._attached.set()
        self._early: RecallCache | None = None
        self._embedder: Any = None
        self._off: str | None = None
        self._held: list[Any] = []  # what an early memory was asked to remember before its store opened
        self._held_lock = threading.Lock()

    @classmethod
    def early(cls, persona: Persona, cache: RecallCache, *, embedder: Any, root: Path) -> PersonaMemory:
        """Memory for a session whose store is still opening: recall comes from ``cache`` (what
        the store held at the last close, unchanged since: :mod:`persona_runtime.recall_cache`);
        anything else waits for :meth:`attach`."""
        memory = cls(persona, dict.fromkeys(StoreKind), root=root)
        memory._attached.clear()
        memory._early, memory._embedder = cache, embedder
        return memory

    def attach(self, opened: PersonaMemory | None, *, off: str = "memory is off for this session") -> None:
        """Give an early memory its opened, loaded store and write what it held meanwhile (raises
        what that raised); or, ``opened`` None, turn it off: it recalls and remembers nothing."""
        with self._held_lock:
            held, self._held = self._held, []
            try:
                if opened is not None:
                    self._stores, self._registry, self.backend = opened._stores, opened._registry, opened.backend
                    self._loaded, self._digest = opened._loaded, opened._digest
                    if held:
                        self._write("episodic", held)  # raises for the caller to tell
                else:
                    self._off = off
            finally:
                self._attached.set()

    @property
    def stores(self) -> dict[str, Any]:
        """The typed stores (an early memory waits for its store to open)."""
        self._attached.wait()
        if self._off is not None:
            raise MemoryOff(self._off)
        return self._stores

    @classmethod
    def open(
        cls,
        persona: Persona,
        *,
        root: Path,
        embedder: Any,
        audit_root: Path,
        server: ChromaServer | None = None,
        queue_dir: Path | None = None,
    ) -> PersonaMemory:
        """Chroma under ``root``, or on ``server`` (then ``root`` keeps only the indexing marker,
        and writes the server misses wait in ``queue_dir``); audit JSONL under ``audit_root``.
        Opening a server store makes no request."""
        from persona.audit import JSONLAuditLogger
        from persona.registry import PersonaRegistry
        from persona.stores import EpisodicStore, IdentityStore, SelfFactsStore, WorldviewStore

        from persona_runtime.chroma_backends import LocalChroma, ServerChroma
        from persona_runtime.paths import ensure_private_dir

        ensure_private_dir(root)
        ensure_private_dir(audit_root)
        queue = None
        if server is not None:
            chroma: Any = ServerChroma(server=server, embedder=embedder)
            pid = "".join(c if c.isalnum() or c in "_-" else "_" for c in (persona.persona_id or "persona"))
            queue = MemoryQueue((queue_dir if queue_dir is not None else root / "queue") / f"{pid}.jsonl")
        else:
            chroma = LocalChroma(persist_path=root, embedder=embedder)
        try:
            audit = JSONLAuditLogger(audit_root)
            stores = {
                "identity": IdentityStore(backend=chroma, audit_logger=audit),
                "self_facts": SelfFactsStore(backend=chroma, audit_logger=audit),
                "worldview": WorldviewStore(backend=chroma, audit_logger=audit),
                "episodic": EpisodicStore(backend=chroma, audit_logger=audit),
            }
            registry = PersonaRegistry(stores=stores, audit_logger=audit)
        except BaseException:
            chroma.close()
            raise
        if server is not None:
            return cls(persona, stores, registry=registry, backend=chroma, queue=queue, marker_dir=root)
        return cls(persona, stores, registry=registry, root=root, backend=chroma)

    def close(self, *, save_recall: bool = False) -> None:
        """Let go of the Chroma store (embedded: its SQLite and HNSW files; on a server: the
        HTTP client); idempotent. Using the memory afterwards raises. ``save_recall``: first
        leave the snapshot the next launch recalls from while its store opens (embedded only)."""
        self._attached.wait()
        if save_recall and self.server is None and self.root is not None and self._digest is not None:
            from persona_runtime.recall_cache import save_recall_cache

            try:
                save_recall_cache(self.backend, self.root, self.persona_id, self._digest)
            except Exception:  # noqa: BLE001, S110 - only a head start for the next launch
                pass
        closer = getattr(self.backend, "close", None)
        if closer is not None:
            closer()

    def __enter__(self) -> PersonaMemory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self) -> None:
        """Index the persona's YAML content into the stores, unless this very content was
        indexed before (a marker holds its hash): a big persona is embedded once, not at
        every start. Idempotent either way. On a server, the marker is kept per server
        (URL, tenant, database) and trusted only while the server holds the identity; then
        the writes queued while it was away are replayed."""
        if self._registry is None:
            return
        try:
            self._guarded(self._load)
        except MemoryServerDown:
            self._outage_told = True  # the caller tells the person (HeavyParts.notices)
            raise

    def _load(self) -> None:
        # Entries the person pinned out (memory_pins) are removed again after indexing; the pin
        # list is part of the hash, so a new pin (or one taken back) forces indexing again.
        marker = self.marker
        pinned = self.pins.hashes() if self.pins is not None else set()
        self._digest = digest = content_hash(self.persona, pinned)
        try:
            fresh = marker is not None and marker.read_text(encoding="ascii").strip() == digest
        except OSError:
            fresh = False
        if fresh and self.server is not None:
            fresh = self.backend.count(persona_id=self.persona_id, store_kind="identity", include_superseded=True) > 0
        if not fresh:
            self._registry.load_persona(self.persona)
            if pinned:
                self._remove_pinned(pinned)
            if marker is not None:
                try:
                    marker.write_text(digest + "\n", encoding="ascii")
                except OSError:
                    pass  # indexing again next time is slower, not wrong
        self._loaded = True
        self.changed()
        self._replay()

    @property
    def marker(self) -> Path | None:
        """The "already indexed" marker; removing it makes the next :meth:`load` index again."""
        return self._marker_dir / f"indexed-{self.persona_id}.sha256" if self._marker_dir is not None else None

    @property
    def pins(self) -> PinList | None:
        return PinList(self._marker_dir, self.persona_id) if self._marker_dir is not None else None

    def _remove_pinned(self, pinned: set[str]) -> None:
        for kind in ("self_facts", "worldview", "episodic"):
            store = self.stores[kind]
            doomed = [c.id for c in store.get_all(self.persona_id) if text_hash(c.text) in pinned]
            if doomed:
                store.remove_documents(self.persona_id, doomed)

    def retrieve(self, message: str, *, top_k: int = 3) -> RetrievedContext:
        """Typed context for ``message``. With memory on a server that cannot be reached, the
        first fault of an outage raises :class:`MemoryServerDown` (one notice); later turns of
        the same outage recall nothing, quietly, until the server answers again."""
        if not self._attached.is_set() and self._early is not None:
            return self._early.retrieve(message.strip() or self.persona.identity.role, self._embedder, top_k)
        if self._off is not None:
            return RetrievedContext()
        try:
            return self._guarded(lambda: self._retrieve(message, top_k))
        except MemoryServerDown as exc:
            if self._outage_told:
                standing = self._standing if self._standing_key else predict_standing(self._marker_dir, self.persona)
                return RetrievedContext(identity=self._identity_cache or (), standing=standing)
            self._outage_told = True
            raise MemoryServerDown(f"{exc}; the chat goes on without memory until it is back") from None

    def _retrieve(self, message: str, top_k: int) -> RetrievedContext:
        if self.server is not None and not self._loaded and self._registry is not None:
            self._load()  # the server was down at start: index the persona now it is back
        if self._identity_cache is None:
            self._identity_cache = tuple(self.stores["identity"].get_all(self.persona_id))
        query = message.strip() or self.persona.identity.role
        standing = self.standing()
        recalled = () if standing is not None else ("self_facts", "worldview")
        found = {kind: tuple(self.stores[kind].query(self.persona_id, query, top_k)) for kind in (*recalled, "episodic")}
        return RetrievedContext(identity=self._identity_cache, standing=standing, **found)

    def standing(self) -> Standing | None:
        """All the persona's self facts and views while they are few (:mod:`persona_runtime.standing`),
        else None. Read again only when the stores changed: their record counts (old versions
        included) move with every add, edit, rollback and forget; this process's own changes
        also call :meth:`changed`."""
        if not self._attached.is_set() and self._early is not None:
            return self._early.standing()
        if self._off is not None:
            return None
        key = tuple(
            self.backend.count(persona_id=self.persona_id, store_kind=kind, include_superseded=True)
            for kind in ("self_facts", "worldview")
        )
        if key != self._standing_key:
            self._standing = None
            if sum(key) <= STANDING_MAX_ENTRIES * 4:  # a large store is not read whole each turn
                self._standing = standing_from_chunks(
                    self.stores["self_facts"].get_all(self.persona_id), self.stores["worldview"].get_all(self.persona_id)
                )
            self._standing_key = key
            if self._marker_dir is not None:
                write_snapshot(snapshot_path(self._marker_dir, self.persona_id), self._standing)
        return self._standing

    def changed(self) -> None:
        """The self facts or views were changed here: read the standing memory again next turn."""
        self._standing_key = None

    def remember(self, text: str, *, metadata: dict[str, str], written_by: str) -> str | None:
        """Write one episodic chunk; returns its id. Secrets (a key the person typed, the model
        echoed or a tool read) are redacted first: memory is resent on later turns. With memory
        on a server that cannot be reached, the chunk (its id already minted) is queued on disk
        and written at the next write or the next start; the first such fault of an outage
        raises :class:`MemoryServerDown` (one notice), later ones are quiet."""
        from persona.schema.chunks import ChunkProvenance, PersonaChunk, WriteSource, mint_chunk_id

        from persona_runtime.secrets import redact

        if self._attached.is_set() and self._off is not None:
            return None  # memory is off for this session (the person was told once)
        extra = self.server.secrets if self.server is not None else ()
        chunk_id = mint_chunk_id(self.persona_id, "episodic")
        now = datetime.now(UTC)
        chunk = PersonaChunk(
            id=chunk_id,
            text=redact(text, extra),
            metadata={k: redact(str(v), extra) for k, v in metadata.items()},
            created_at=now,
            provenance=ChunkProvenance(
                source=WriteSource.SYSTEM, logical_id=chunk_id, version=1, written_at=now, written_by=written_by
            ),
        )
        if self.queue is None:
            with self._held_lock:
                if not self._attached.is_set():
                    self._held.append(chunk)  # written when the store is attached (the reply is not held up)
                    return chunk_id
            self._write("episodic", [chunk])
            return chunk_id
        self.queue.append("episodic", chunk)  # first on disk: a crash mid-write loses nothing
        if self._outage and self._outage_told:
            return chunk_id  # this turn's recall found the server down: no second wait for it
        try:
            self._guarded(self._replay)
        except MemoryServerDown as exc:
            if self._outage_told:
                return chunk_id
            self._outage_told = True
            raise MemoryServerDown(f"{exc}; it is queued in {self.queue.path} until the server is back") from None
        return chunk_id

    # -- the server's faults -------------------------------------------------------------

    @property
    def pending_writes(self) -> int:
        """Chunks queued for the memory server (0 for the embedded store)."""
        return len(self.queue) if self.queue is not None else 0

    def _write(self, store_kind: str, chunks: list[Any]) -> None:
        written_by = chunks[0].provenance.written_by if chunks and chunks[0].provenance else None
        self._stores[store_kind].write(self.persona_id, chunks, written_by=written_by)  # attached (see remember)

    def _exists(self, store_kind: str, ids: list[str]) -> set[str]:
        found = self.backend.get_by_ids(persona_id=self.persona_id, store_kind=store_kind, ids=ids)
        return {c.id for c in found}

    def _replay(self) -> int:
        """Write what the queue holds (idempotent: ids the server has are skipped)."""
        if self.queue is None:
            return 0
        return self.queue.replay(self._write, self._exists)

    def _guarded(self, work: Callable[[], T]) -> T:
        """Run ``work``; on a server, an unreachable server becomes :class:`MemoryServerDown`
        (raised once per outage by the callers that tell the person) and a success ends the outage."""
        if self.server is None:
            return work()
        from persona_runtime.chroma_http import is_unreachable
        from persona_runtime.chroma_server import unreachable_message

        try:
            result = work()
        except MemoryServerDown:
            self._outage = True
            self.backend.forget_collections()
            raise
        except Exception as exc:
            self.backend.forget_collections()  # one may have been deleted: look them up again
            if not is_unreachable(exc):
                raise
            self._outage = True
            raise MemoryServerDown(unreachable_message(self.server, exc)) from None
        if self._outage:
            self._outage = self._outage_told = False
        return result

    def remember_turn(self, user_text: str, assistant_text: str, *, conversation_id: str) -> str | None:
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
    standing = (len(context.standing.facts), len(context.standing.views)) if context.standing is not None else None
    return MemoryRecalled(tuple(entries), standing=standing)


def content_hash(persona: Persona, pinned: set[str] | frozenset[str] = frozenset()) -> str:
    """What indexing depends on: the persona's content and the pins (the store folder already
    names the embedder). A new pin, or one taken back, forces indexing again."""
    import hashlib

    text = persona.model_dump_json() + "".join(f"\npin:{h}" for h in sorted(pinned))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
