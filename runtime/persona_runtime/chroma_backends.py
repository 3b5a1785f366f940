"""persona-core's ``ChromaBackend``, embedded or on a server, with collections that name their embedder.

* :class:`LocalChroma`: the embedded store under PERSONA_HOME (a ``PersistentClient``), writing
  in batches Chroma accepts.
* :class:`ServerChroma`: the same transport over an HTTP client with bounded timeouts
  (:func:`persona_runtime.chroma_server.make_client`), made on first use and made again after
  the server was unreachable; collections are looked up once.

Both create each collection with the embedder's name and dimension in its metadata and check
them when they open one: vectors of another embedder make an :class:`EmbedderMismatch`, never
mixed vectors. (A local collection from before this metadata has none and is accepted: its
folder is already keyed by the embedder.)
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from persona.stores import ChromaBackend
from persona.stores.chroma import collection_name_for

from persona_runtime.chroma_server import ChromaServer, EmbedderMismatch, MemoryServerDown, make_client

if TYPE_CHECKING:
    from persona.stores.embedder import Embedder

__all__ = ["EMBEDDER_DIMENSION", "EMBEDDER_KEY", "LocalChroma", "ServerChroma", "check_embedder", "embedder_name"]

#: Held while a client is made or closed: chromadb looks up, makes and stops the System it
#: shares per path without a lock, and two sessions opening one store at once (each on its
#: loader thread) broke it for both (KeyError, "no attribute 'bindings'").
_SHARED_SYSTEMS = threading.Lock()

EMBEDDER_KEY = "persona_embedder"
EMBEDDER_DIMENSION = "persona_embedder_dimension"


def embedder_name(embedder: Any) -> str:
    """The name a collection records for ``embedder`` (its model name; known without loading it)."""
    return str(getattr(embedder, "model_name", None) or type(embedder).__name__)


def check_embedder(collection: Any, *, key: str, dimension: int, where: str) -> None:
    """Raise :class:`EmbedderMismatch` when ``collection`` was written by another embedder."""
    meta = collection.metadata or {}
    theirs = meta.get(EMBEDDER_KEY)
    if theirs is None:
        return
    their_dim = meta.get(EMBEDDER_DIMENSION)
    if theirs != key or (their_dim is not None and int(their_dim) != dimension):
        raise EmbedderMismatch(
            f"the memory collection {collection.name} on {where} holds vectors of the embedder {theirs!r} "
            f"({their_dim} dimensions), not {key!r} ({dimension}); set PERSONA_EMBEDDER to the one that "
            "wrote it, or use another server or database"
        )


class LocalChroma(ChromaBackend):
    """The embedded store; Chroma refuses more than ``get_max_batch_size()`` (5,461) records in
    one call (a persona with 10,000 self facts never started), so larger writes go in batches."""

    def __init__(self, *, persist_path: Path, embedder: Embedder) -> None:
        with _SHARED_SYSTEMS:
            super().__init__(persist_path=persist_path, embedder=embedder)
        self.embedder_key = embedder_name(embedder)

    @property
    def where(self) -> str:
        return str(self.persist_path)

    def _collection(self, persona_id: str, store_kind: str) -> Any:
        collection = self._client.get_or_create_collection(
            name=collection_name_for(persona_id, store_kind),
            configuration={"hnsw": {"space": "cosine"}},
            metadata={EMBEDDER_KEY: self.embedder_key, EMBEDDER_DIMENSION: int(self.embedder.dimension)},
            embedding_function=None,
        )
        check_embedder(collection, key=self.embedder_key, dimension=int(self.embedder.dimension), where=self.where)
        return collection

    def collection(self, persona_id: str, store_kind: str) -> Any:
        """The collection (created if new, with our embedder's name), after the embedder check."""
        return self._collection(persona_id, store_kind)

    def existing_collection(self, persona_id: str, store_kind: str) -> Any | None:
        """The collection if it exists (nothing is created), unchecked; None otherwise."""
        try:
            return self._client.get_collection(name=collection_name_for(persona_id, store_kind), embedding_function=None)
        except Exception as exc:
            if type(exc).__name__ in ("NotFoundError", "InvalidCollectionException") or "does not exist" in str(exc).lower():
                return None
            raise

    def batch_size(self) -> int:
        """The most records Chroma takes in one call."""
        return int(self._client.get_max_batch_size())

    def upsert(self, *, persona_id: str, store_kind: str, chunks: list[Any]) -> None:
        size = self.batch_size()
        for start in range(0, len(chunks), size):
            super().upsert(persona_id=persona_id, store_kind=store_kind, chunks=chunks[start : start + size])

    def close(self) -> None:
        """Let go of the store; idempotent. chromadb shares one System per path among its clients
        (SQLite connections, the HNSW files, a Rust runtime: ~17 descriptors) and stops it when
        the last of them closes, so another store still open on the same path keeps working."""
        with _SHARED_SYSTEMS:
            client = self.__dict__.get("_client")
            if client is not None and not isinstance(client, _Closed):
                self._client = _Closed(self.where)
                client.close()


class ServerChroma(LocalChroma):
    """The transport on a Chroma server. Construction makes no request."""

    def __init__(self, *, server: ChromaServer, embedder: Embedder) -> None:
        # ChromaBackend.__init__ would open a PersistentClient: not called on purpose.
        self.persist_path = None  # type: ignore[assignment]
        self.embedder = embedder
        self.embedder_key = embedder_name(embedder)
        self.server = server
        self._http: Any = None
        self._collections: dict[str, Any] = {}

    @property
    def where(self) -> str:
        return self.server.label

    @property
    def _client(self) -> Any:  # ChromaBackend uses self._client; here it is made on first use
        if self._http is None:
            self._http = make_client(self.server)
        return self._http

    def close(self) -> None:
        """Close the HTTP client (its connection pool), if one was made; idempotent."""
        http, self._http = self._http, _Closed(self.where)
        self._collections.clear()
        if http is not None and not isinstance(http, _Closed):
            session = getattr(getattr(http, "_server", None), "_session", None)
            http.close()
            if session is not None:
                session.close()  # chromadb's HTTP client leaves its httpx session open on close()

    def _collection(self, persona_id: str, store_kind: str) -> Any:
        name = collection_name_for(persona_id, store_kind)
        if name not in self._collections:
            self._collections[name] = super()._collection(persona_id, store_kind)
        return self._collections[name]

    def delete_persona(self, persona_id: str, store_kind: str) -> None:
        self._collections.pop(collection_name_for(persona_id, store_kind), None)
        super().delete_persona(persona_id, store_kind)

    def forget_collections(self) -> None:
        """Look collections up again next time (after a fault: one may have been deleted)."""
        self._collections.clear()

    def heartbeat(self) -> None:
        """One cheap request; :class:`MemoryServerDown` when the server does not answer."""
        from persona_runtime.chroma_http import is_unreachable
        from persona_runtime.chroma_server import unreachable_message

        try:
            self._client.heartbeat()
        except MemoryServerDown:
            raise
        except Exception as exc:
            if is_unreachable(exc):
                raise MemoryServerDown(unreachable_message(self.server, exc)) from None
            raise


class _Closed:
    """What a closed store's client becomes: any use says so, rather than opening it again."""

    def __init__(self, where: str) -> None:
        self._where = where

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise RuntimeError(f"the memory store at {self._where} is closed")
