"""What a person can see and change in a persona's memory: list, search, show, forget, add,
edit, history, rollback, pins. Used by ``persona memory`` and the REPL's memory commands.

Every entry comes back as a :class:`MemoryEntry`. Entries the persona YAML defines (ids
``{persona}::{store}::{0000}``, persona-core's registry numbering) are marked ``origin="yaml"``;
what chats, agent runs or the person added is ``"runtime"``. Ids may be given as a unique
prefix (the ``{persona}::`` part may be left out) or a unique part of at least 4 characters.
Faults a person can fix are :class:`MemoryAdminError`, one line.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from persona_runtime.memory_pins import Pin, text_hash
from persona_runtime.secrets import redact

if TYPE_CHECKING:
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.settings import Settings

__all__ = [
    "EDITABLE_STORES", "STORES", "ForgetResult", "MemoryAdmin", "MemoryAdminError", "MemoryEntry", "MemoryStoreError",
    "format_age", "open_admin",
]

STORES = ("identity", "self_facts", "worldview", "episodic")
EDITABLE_STORES = ("self_facts", "worldview", "episodic")
_PREFIXES = {"self_facts": "self_fact: ", "worldview": "worldview: "}
_YAML_REASON = "initial persona load"


class MemoryAdminError(ValueError):
    """A one-line problem the person can fix (unknown id, ambiguous prefix, read-only store)."""

    def __init__(self, message: str, *, usage: bool = False) -> None:
        super().__init__(message)
        #: True for a usage problem (exit 2), False for "not found" and the like (exit 1).
        self.usage = usage


class MemoryStoreError(RuntimeError):
    """The store could not be opened or read: one line naming the file and the fix."""


def open_admin(persona_path: str | os.PathLike[str], *, settings: Settings | None = None) -> MemoryAdmin:
    """The memory a chat with this persona uses: the same settings, data dir, embedder and store,
    opened by the same function (:func:`persona_runtime.session.open_memory`), with the YAML
    indexed and without any chat model. Set-up faults are :class:`~persona_runtime.errors.SetupError`;
    a store that cannot be used, :class:`MemoryStoreError`. ``notices`` on the result: a broken
    store set aside, say."""
    from persona_runtime import _offline
    from persona_runtime.memory_open import MEMORY_OFF, open_memory
    from persona_runtime.session import open_session

    session = open_session(persona_path, settings=settings, start=False)
    _offline.configure_core_logging(session.paths.core_log, verbose=session.settings.verbose)
    memory, notices = open_memory(session)
    if memory is None:
        raise MemoryStoreError(notices[-1].removeprefix(MEMORY_OFF) if notices else "memory cannot be opened")
    admin = MemoryAdmin(memory)
    admin.notices = notices
    return admin


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    store: str
    id: str
    text: str
    created_at: datetime | None
    origin: Literal["yaml", "runtime"]
    logical_id: str
    version: int = 1
    metadata: dict[str, str] = field(default_factory=dict)
    #: Similarity to the search (1 - cosine distance), only from a search.
    score: float | None = None
    written_by: str | None = None
    reason: str | None = None

    @property
    def first_line(self) -> str:
        lines = self.text.strip().splitlines()
        return lines[0] if lines else ""

    def age(self, now: datetime | None = None) -> str:
        return format_age(self.created_at, now)

    def to_dict(self, now: datetime | None = None) -> dict[str, Any]:
        return {
            "store": self.store, "id": self.id, "logical_id": self.logical_id, "version": self.version,
            "origin": self.origin, "text": self.text, "first_line": self.first_line,
            "created_at": self.created_at.isoformat() if self.created_at else None, "age": self.age(now),
            "score": None if self.score is None else round(self.score, 4), "metadata": dict(self.metadata),
            "written_by": self.written_by, "reason": self.reason,
        }


@dataclass(frozen=True, slots=True)
class ForgetResult:
    forgotten: tuple[MemoryEntry, ...]
    #: YAML entries forgotten without a pin: they come back at the next load.
    returning: tuple[MemoryEntry, ...] = ()
    pinned: tuple[MemoryEntry, ...] = ()


def format_age(created_at: datetime | None, now: datetime | None = None) -> str:
    if created_at is None:
        return "?"
    seconds = max(0.0, ((now or datetime.now(UTC)) - created_at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


class MemoryAdmin:
    """Reads and changes one persona's four stores (a :class:`PersonaMemory`)."""

    def __init__(self, memory: PersonaMemory) -> None:
        self.memory = memory
        self.pid = memory.persona_id
        #: One-line notes from opening the store (a broken store set aside).
        self.notices: list[str] = []
        self._yaml_id = re.compile(rf"^{re.escape(self.pid)}::(identity|self_facts|worldview|episodic)::\d{{4}}$")

    def close(self) -> None:
        """Close the store (:meth:`PersonaMemory.close`); idempotent."""
        self.memory.close()

    def __enter__(self) -> MemoryAdmin:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def entry(self, store: str, chunk: Any, score: float | None = None) -> MemoryEntry:
        prov = getattr(chunk, "provenance", None)
        logical = prov.logical_id if prov is not None else chunk.id
        return MemoryEntry(
            store=store, id=chunk.id, text=chunk.text, created_at=chunk.created_at,
            origin="yaml" if self._yaml_id.match(logical) else "runtime", logical_id=logical,
            version=prov.version if prov is not None else 1, metadata=dict(chunk.metadata), score=score,
            written_by=prov.written_by if prov is not None else None, reason=prov.reason if prov is not None else None,
        )

    def list_entries(self, stores: tuple[str, ...] = STORES) -> list[MemoryEntry]:
        """Current entries; per store in ``STORES`` order, newest first."""
        entries: list[MemoryEntry] = []
        for store in stores:
            chunks = self.memory.stores[store].get_all(self.pid)
            chunks.sort(key=lambda c: c.id)
            chunks.sort(key=lambda c: c.created_at, reverse=True)  # stable: same time keeps id order
            entries += [self.entry(store, c) for c in chunks]
        return entries

    def recent(self, limit: int = 10) -> list[MemoryEntry]:
        """The newest episodic entries, newest first."""
        return [self.entry("episodic", c) for c in self.memory.stores["episodic"].recent(self.pid, limit)]

    def search(self, query: str, *, stores: tuple[str, ...] = EDITABLE_STORES, top_k: int = 5) -> list[MemoryEntry]:
        """The ``top_k`` entries most similar to ``query`` across ``stores``, best first."""
        hits: list[MemoryEntry] = []
        for store in stores:
            for chunk in self.memory.stores[store].query(self.pid, query, top_k):
                score = None if chunk.distance is None else 1.0 - float(chunk.distance)
                hits.append(self.entry(store, chunk, score))
        hits.sort(key=lambda e: -1.0 if e.score is None else e.score, reverse=True)
        return hits[:top_k]

    def find(self, ref: str) -> MemoryEntry:
        """The one current entry ``ref`` names: an id, a unique prefix, or a unique part."""
        ref = ref.strip()
        if not ref:
            raise MemoryAdminError("an entry id is empty", usage=True)
        entries = self.list_entries()
        for test in (
            lambda e: ref in (e.id, e.logical_id),
            lambda e: e.id.startswith(ref) or e.id.startswith(f"{self.pid}::{ref}"),
            lambda e: len(ref) >= 4 and ref in e.id,
        ):
            found = [e for e in entries if test(e)]
            if len(found) == 1:
                return found[0]
            if len(found) > 1:
                sample = ", ".join(e.id for e in found[:3])
                raise MemoryAdminError(f"{ref!r} matches {len(found)} entries ({sample}{', …' if len(found) > 3 else ''}); give more of the id", usage=True)
        raise MemoryAdminError(f"no memory entry {ref!r} for {self.pid}; `persona memory list` shows the ids")

    def history(self, ref: str) -> list[MemoryEntry]:
        """Every version of the entry's fact, oldest first (identity has none)."""
        entry = self.find(ref)
        self._versioned(entry, "history")
        return [self.entry(entry.store, c) for c in self.memory.stores[entry.store].history(self.pid, entry.logical_id)]

    # -- changing ------------------------------------------------------------------------

    def add(self, store: str, text: str) -> MemoryEntry:
        """A new entry written as the person's (``WriteSource.USER``), secrets redacted."""
        from persona.schema.chunks import ChunkProvenance, PersonaChunk, WriteSource, mint_chunk_id

        self._writable(store)
        text = self._stored_text(store, text)
        chunk_id = mint_chunk_id(self.pid, store)
        now = datetime.now(UTC)
        metadata = {"epistemic": "belief", "domain": ""} if store == "worldview" else {"source": "person"}
        chunk = PersonaChunk(
            id=chunk_id, text=text, metadata=metadata, created_at=now,
            provenance=ChunkProvenance(source=WriteSource.USER, logical_id=chunk_id, version=1, written_at=now, written_by="person"),
        )
        self.memory.stores[store].write(self.pid, [chunk], source=WriteSource.USER, written_by="person", reason="added by the person")
        self.memory.changed()
        return self.find(chunk_id)

    def edit(self, ref: str, text: str) -> MemoryEntry:
        """A new version of the entry with ``text`` (history keeps the old one)."""
        from persona.schema.chunks import ChunkProvenance, PersonaChunk, WriteSource

        entry = self.find(ref)
        self._writable(entry.store)
        now = datetime.now(UTC)
        chunk = PersonaChunk(
            id=entry.id, text=self._stored_text(entry.store, text), metadata=dict(entry.metadata), created_at=now,
            provenance=ChunkProvenance(source=WriteSource.USER, logical_id=entry.logical_id, version=1, written_at=now, written_by="person"),
        )
        self.memory.stores[entry.store].write(self.pid, [chunk], source=WriteSource.USER, written_by="person", reason="edited by the person")
        self.memory.changed()
        return self.find(entry.logical_id)

    def rollback(self, ref: str, version: int) -> MemoryEntry:
        """A new head holding version ``version``'s text."""
        from persona.errors import PersonaError
        from persona.schema.chunks import WriteSource

        entry = self.find(ref)
        self._versioned(entry, "rollback")
        versions = [e.version for e in self.history(entry.logical_id)]
        if version not in versions:
            raise MemoryAdminError(f"{entry.id} has no version {version} (it has {', '.join(map(str, versions))})", usage=True)
        try:
            self.memory.stores[entry.store].rollback(self.pid, entry.logical_id, version, source=WriteSource.USER, written_by="person")
        except PersonaError as exc:
            raise MemoryAdminError(f"cannot roll {entry.id} back: {exc}") from None
        self.memory.changed()
        return self.find(entry.logical_id)

    def forget(self, refs: list[str], *, pin: bool = False) -> ForgetResult:
        """Delete the entries (every version). All ids are checked before anything is deleted.
        YAML entries come back at the next load unless ``pin``: then they stay out."""
        entries: list[MemoryEntry] = []
        for ref in refs:
            entry = self.find(ref)
            if entry.store == "identity":
                raise MemoryAdminError(
                    f"{entry.id} is part of the persona's identity, which is always sent and cannot be forgotten; "
                    "change the identity section of the persona YAML instead", usage=True,
                )
            if entry.id not in {e.id for e in entries}:
                entries.append(entry)
        yaml = [e for e in entries if e.origin == "yaml"]
        if yaml and pin:
            self._pin(yaml)
        for store in EDITABLE_STORES:
            ids = [e.id for e in entries if e.store == store]
            if ids:
                self.memory.stores[store].remove_documents(self.pid, ids)
        self.memory.changed()
        if yaml and not pin:
            self._forget_marker()  # "comes back at the next load" must be true, not "at the next YAML change"
        return ForgetResult(tuple(entries), returning=() if pin else tuple(yaml), pinned=tuple(yaml) if pin else ())

    def pins(self) -> list[Pin]:
        return self.memory.pins.read() if self.memory.pins is not None else []

    def unpin(self, prefixes: list[str]) -> list[Pin]:
        """Take pins back (by hash prefix, at least 4 characters) and index the YAML again, so the
        entries are back at once."""
        if self.memory.pins is None:
            return []
        short = [p for p in prefixes if len(p) < 4]
        if short:
            raise MemoryAdminError(f"give at least 4 characters of a pin ({short[0]!r}); `persona memory pins` lists them", usage=True)
        gone = self.memory.pins.remove(prefixes)
        if not gone:
            raise MemoryAdminError(f"no pin starts with {', '.join(prefixes)}; `persona memory pins` lists them")
        self.memory.load()
        return gone

    # -- helpers -------------------------------------------------------------------------

    def _pin(self, entries: list[MemoryEntry]) -> None:
        pins: list[Pin] = []
        for entry in entries:
            texts = {entry.text}
            try:  # the YAML's own text, when the entry was edited since
                texts |= {v.text for v in self.history(entry.logical_id) if v.reason == _YAML_REASON}
            except Exception:  # noqa: BLE001, S110 - a broken chain: pin the text we can see
                pass
            pins += [Pin(entry.store, text_hash(t), t.strip().splitlines()[0][:80] if t.strip() else "") for t in sorted(texts)]
        assert self.memory.pins is not None
        self.memory.pins.add(pins)

    def _forget_marker(self) -> None:
        marker = self.memory.marker
        if marker is not None:
            marker.unlink(missing_ok=True)

    def _writable(self, store: str) -> None:
        if store == "identity":
            raise MemoryAdminError(
                "the identity store cannot be written at runtime; change the identity section of the persona YAML", usage=True
            )
        if store not in EDITABLE_STORES:
            raise MemoryAdminError(f"unknown store {store!r}; choose {', '.join(EDITABLE_STORES)}", usage=True)

    def _versioned(self, entry: MemoryEntry, what: str) -> None:
        if entry.store == "identity":
            raise MemoryAdminError(f"identity entries have no versions, so no {what}; they come from the persona YAML", usage=True)

    @staticmethod
    def _stored_text(store: str, text: str) -> str:
        text = redact(text.strip())
        if not text:
            raise MemoryAdminError("the text is empty", usage=True)
        prefix = _PREFIXES.get(store, "")
        return text if text.startswith(prefix) else prefix + text
