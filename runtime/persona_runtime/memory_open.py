"""Which memory store a session uses, opened and indexed: the embedded Chroma store under
PERSONA_HOME, or a Chroma server (``PERSONA_CHROMA_URL``). Chat, agent and ``persona memory``
all open it here. Blocking: the session's loader thread (or a command) calls it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from persona_runtime.memory import PersonaMemory
    from persona_runtime.session import Session

__all__ = [
    "ATTACH_GRACE_S", "MEMORY_OFF", "TURN_WAIT_S", "attach_memory", "memory_folder", "open_memory", "open_memory_early",
    "open_server_memory", "turn_watch",
]


MEMORY_OFF = "memory is off for this session: "


def memory_folder(session: Session) -> Path:
    """The folder of the session's store (on a server: what is kept here about it, e.g. markers)."""
    server = session.settings.chroma
    return session.paths.server_memory(server.key) if server is not None else session.paths.memory(session.embedder.key)


def open_memory_early(session: Session) -> PersonaMemory | None:
    """Memory that recalls at once, from the snapshot the last session left beside its embedded
    store, while :func:`attach_memory` opens the store; None when there is no usable snapshot
    (the store changed since, the persona file changed, memory is on a server). Never raises."""
    if session.settings.chroma is not None:
        return None
    try:
        from persona_runtime.memory import PersonaMemory, content_hash
        from persona_runtime.memory_pins import PinList
        from persona_runtime.recall_cache import load_recall_cache

        root, persona_id = memory_folder(session), session.persona.persona_id or "persona"  # as PersonaMemory names it
        cache = load_recall_cache(root, persona_id, content_hash(session.persona, PinList(root, persona_id).hashes()))
        if cache is None:
            return None
        return PersonaMemory.early(session.persona, cache, embedder=session.embedder.embedder, root=root)
    except Exception:  # noqa: BLE001 - then memory opens the usual way
        return None


#: How long an early memory's store waits for a turn to start, and then for it to finish.
TURN_WAIT_S = 0.25
ATTACH_GRACE_S = 5.0


def attach_memory(
    session: Session, early: PersonaMemory, notices: list[str], *, started: threading.Event, finished: threading.Event
) -> None:
    """Open the store (as :func:`open_memory`) and hand it to ``early`` (which then writes the
    turns it was asked to remember meanwhile); if it cannot be used, memory is off for the rest
    of the session and ``notices`` say why. Blocking; never raises.

    A turn that has ``started`` (asked for before the session had loaded: piped, or typed fast)
    is ``finished`` first (or :data:`ATTACH_GRACE_S` passes): importing chromadb takes the
    interpreter's lock for ~0.8 s, and beside it llama.cpp read the prompt at half speed (two
    threads: 68 tokens/s against 165 alone, measured) and generated slower. Otherwise (the
    person is still typing) the store opens at once."""
    if started.wait(TURN_WAIT_S):
        finished.wait(ATTACH_GRACE_S)
    memory, more = None, [MEMORY_OFF + "the store could not be opened"]
    try:
        memory, more = open_memory(session)
    except Exception:  # noqa: BLE001, S110 - memory off, as the default notice says
        pass
    notices.extend(more)
    try:
        early.attach(memory, off=more[-1] if more else MEMORY_OFF.rstrip(": "))
    except Exception as exc:  # noqa: BLE001 - the turns held meanwhile could not be written
        notices.append(f"could not remember the turns of this session's first moments: {type(exc).__name__}: {exc}")


def turn_watch(started: threading.Event, finished: threading.Event) -> Callable[[Any], None]:
    """An EventBus subscriber that sets ``started`` at a turn's first event and ``finished`` at its end."""
    from persona_runtime.events import TurnFinished

    def seen(event: Any) -> None:  # on every event, tokens included: no lock taken once set
        if not started.is_set():
            started.set()
        if isinstance(event, TurnFinished) and not finished.is_set():
            finished.set()

    return seen


def open_memory(session: Session) -> tuple[PersonaMemory | None, list[str]]:
    """The persona's memory store, opened and indexed: the one place that decides which store a
    session uses (chat, agent and `persona memory` alike). None when it cannot be used; the
    notices say why (the last one starts with :data:`MEMORY_OFF`), or that a broken store was
    set aside. Blocking."""
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.memory_guard import describe_fault, set_aside_if_broken

    choice = session.embedder
    if session.settings.chroma is not None:
        return open_server_memory(session)
    store = memory_folder(session)
    notices = [notice] if (notice := set_aside_if_broken(store)) else []
    memory: PersonaMemory | None = None
    try:
        memory = PersonaMemory.open(session.persona, root=store, embedder=choice.embedder, audit_root=session.paths.audit)
        memory.load()
    except Exception as exc:  # noqa: BLE001 - a broken store turns memory off, never the chat
        if memory is not None:
            memory.close()  # nobody else will: its SQLite and HNSW files would stay open
        memory = None
        notices.append(MEMORY_OFF + describe_fault(exc, store))
    return memory, notices


def open_server_memory(session: Session) -> tuple[PersonaMemory | None, list[str]]:
    """Memory on the Chroma server of ``PERSONA_CHROMA_URL``. Unreachable: memory waits for it
    (writes queued, one notice); another embedder's collection or any other fault: memory off."""
    from persona_runtime.chroma_server import MemoryServerDown
    from persona_runtime.memory import PersonaMemory
    from persona_runtime.secrets import redact

    server = session.settings.chroma
    assert server is not None
    local = memory_folder(session)
    try:
        memory = PersonaMemory.open(
            session.persona, root=local, embedder=session.embedder.embedder, audit_root=session.paths.audit,
            server=server, queue_dir=session.paths.memory_queue(server.key),
        )
    except Exception as exc:  # noqa: BLE001 - memory is help, not a precondition
        return None, [redact(f"{MEMORY_OFF}{type(exc).__name__}: {exc}", server.secrets)]
    try:
        memory.load()
    except MemoryServerDown as exc:
        waiting = f"; {memory.pending_writes} earlier memories wait on disk" if memory.pending_writes else ""
        return memory, [redact(f"memory is off until the server is back: {exc}; what this chat should remember is queued{waiting}", server.secrets)]
    except Exception as exc:  # noqa: BLE001 - another embedder's vectors, a missing database ...
        memory.close()
        return None, [redact(MEMORY_OFF + " ".join(str(exc).split())[:300], server.secrets)]
    return memory, []
